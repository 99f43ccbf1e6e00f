import { describe, it, expect, vi, afterEach } from 'vitest'
import { mount, flushPromises } from '@vue/test-utils'
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

  it('says when the API cannot be reached', async () => {
    vi.spyOn(globalThis, 'fetch').mockRejectedValue(new TypeError('Failed to fetch'))
    const w = mount(StatusView)
    await flushPromises()
    expect(w.find('[role=alert]').text()).toContain('Cannot reach GoSIP')
  })
})
