import { describe, it, expect, vi, afterEach } from 'vitest'
import { mount, flushPromises } from '@vue/test-utils'
import { createRouter, createMemoryHistory } from 'vue-router'
import StatusView from './StatusView.vue'

afterEach(() => vi.restoreAllMocks())

describe('StatusView', () => {
  it('lists every daemon with its status', async () => {
    vi.spyOn(globalThis, 'fetch').mockResolvedValue(new Response(JSON.stringify({
      status: 'degraded', version: '0.1.0', database: { status: 'ok' },
      daemons: { sipd: { status: 'ok' }, mediad: { status: 'down', detail: 'no answer within 1 s' } },
    })))
    const w = mount(StatusView)
    await flushPromises()
    expect(w.text()).toContain('sipd')
    expect(w.text()).toContain('mediad')
    expect(w.text()).toContain('down')
    expect(w.text()).toContain('no answer within 1 s')
  })

  it('shows the addresses each leg gets and where they came from', async () => {
    vi.spyOn(globalThis, 'fetch').mockResolvedValue(new Response(JSON.stringify({
      status: 'ok', version: '0.1.0', database: { status: 'ok' }, daemons: {},
      addresses: [
        { scope: 'public', address: '203.0.113.2', source: 'trunk_via', updated_at: '' },
        { scope: 'phones:192.0.2.10', address: '192.0.2.10', source: 'phone_packet', updated_at: '' },
      ],
    })))
    const w = mount(StatusView)
    await flushPromises()
    expect(w.text()).toContain('203.0.113.2')
    expect(w.text()).toContain("Twilio's answer to our OPTIONS ping")
    expect(w.text()).toContain('192.0.2.10')
    expect(w.text()).toContain("phones' own packets")
  })

  it('shows what stops calls above the daemons, which stay listed, with the way to the settings', async () => {
    vi.spyOn(globalThis, 'fetch').mockResolvedValue(new Response(JSON.stringify({
      status: 'ok', version: '0.1.0', database: { status: 'ok' }, daemons: { twiliod: { status: 'ok' } },
      warnings: [
        'Twilio is not connected: calls to and from outside numbers and SMS will not work; add the Twilio Account SID and Auth Token in Settings.',
        '+15551230000 has no emergency address: 911 calls from it cannot be placed by Twilio.',
      ],
    })))
    const router = createRouter({ history: createMemoryHistory(), routes: [{ path: '/:p(.*)*', component: StatusView }] })
    const w = mount(StatusView, { global: { plugins: [router] } })
    await flushPromises()
    const items = w.findAll('[aria-label=Warnings] li')
    expect(items.map((i) => i.text())).toEqual([expect.stringContaining('Twilio is not connected'), expect.stringContaining('+15551230000 has no emergency address')])
    expect(w.find('[role=alert]').text()).toContain('Needs attention')
    expect(w.find('a[href="/admin/system"]').text()).toBe('System settings')
    // The daemons are still listed beside the warnings.
    expect(w.find('table').text()).toContain('twiliod')
  })

  it('shows no warning box when there is nothing to warn about', async () => {
    vi.spyOn(globalThis, 'fetch').mockResolvedValue(new Response(JSON.stringify({
      status: 'ok', version: '0.1.0', database: { status: 'ok' }, daemons: { sipd: { status: 'ok' } }, warnings: [],
    })))
    const w = mount(StatusView)
    await flushPromises()
    expect(w.find('[aria-label=Warnings]').exists()).toBe(false)
    expect(w.find('table').text()).toContain('sipd')
  })

  it('says when the API cannot be reached', async () => {
    vi.spyOn(globalThis, 'fetch').mockRejectedValue(new TypeError('Failed to fetch'))
    const w = mount(StatusView)
    await flushPromises()
    expect(w.find('[role=alert]').text()).toContain('Cannot reach GoSIP')
  })
})
