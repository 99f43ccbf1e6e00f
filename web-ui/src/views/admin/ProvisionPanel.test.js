import { describe, it, expect, afterEach, vi, beforeEach } from 'vitest'
import { mount, flushPromises } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import { mockApi, apiError } from '../../test/mockApi.js'
import ProvisionPanel from './ProvisionPanel.vue'

beforeEach(() => setActivePinia(createPinia()))
afterEach(() => vi.restoreAllMocks())

describe('ProvisionPanel', () => {
  const device = { id: 7, name: 'Front desk', username: 'desk200', device_type: 'grandstream' }
  const state = { mac: 'c074ad123456', family: 'grandstream', server_url: 'http://192.168.1.10:8080/provision', file: 'cfgc074ad123456.xml', fetched_at: null, done: false }
  it('sends the MAC and brand, shows the address to type with a copy button, and names a bad MAC beside its field', async () => {
    let n = 0
    const { calls } = mockApi({
      'PUT /api/devices/7/provisioning': () => (++n === 1
        ? apiError(422, 'VALIDATION_ERROR', 'Some fields are invalid', [{ field: 'mac', message: "must be the phone's MAC address" }])
        : state),
    })
    const w = mount(ProvisionPanel, { props: { device } })
    await flushPromises()
    expect(w.find('[data-provision-steps]').exists()).toBe(false)
    await w.find('#f-prov-mac').setValue('C0:74')
    await w.find('form').trigger('submit')
    await flushPromises()
    expect(w.find('#f-prov-mac-err').text()).toContain('MAC address')
    await w.find('#f-prov-mac').setValue('C0:74:AD:12:34:56')
    await w.find('form').trigger('submit')
    await flushPromises()
    expect(calls.filter((c) => c.method === 'PUT')[1].body).toEqual({ mac: 'C0:74:AD:12:34:56', family: 'grandstream' })
    expect(w.find('[data-provision-url]').text()).toBe('http://192.168.1.10:8080/provision')
    expect(w.find('button[aria-label="Copy configuration server address"]').exists()).toBe(true)
    expect(w.text()).toContain('Config Server Path')
    expect(w.find('[data-provision-status]').text()).toContain('Waiting for the phone')
  })
  it('tells the admin to set TLS and SRTP on a phone set to TLS, which its file does not do', async () => {
    mockApi({ 'GET /api/devices/7/provisioning': state })
    const w = mount(ProvisionPanel, { props: { device: { ...device, transport: 'tls', srtp: 'required' } } })
    await flushPromises()
    expect(w.find('[data-provision-tls]').text()).toContain('set SIP Transport to TLS')
    expect(w.find('[data-provision-tls]').text()).toContain('SRTP Mode: Enabled and Forced')
    const plain = mount(ProvisionPanel, { props: { device } })
    await flushPromises()
    expect(plain.find('[data-provision-tls]').exists()).toBe(false)
  })
  it('says when the phone fetched its settings and when it registered', async () => {
    mockApi({ 'GET /api/devices/7/provisioning': { ...state, family: 'yealink', file: 'c074ad123456.cfg', fetched_at: '2026-12-03T10:00:00Z', done: true } })
    const w = mount(ProvisionPanel, { props: { device } })
    await flushPromises()
    expect(w.find('[data-provision-status]').text()).toContain('Done: the phone registered')
    expect(w.text()).toContain('Auto Provision')
  })
})
