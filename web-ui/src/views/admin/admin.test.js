import { describe, it, expect, afterEach, vi, beforeEach } from 'vitest'
import { mount, flushPromises } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import { mockApi, apiError } from '../../test/mockApi.js'
import RuleList from './RuleList.vue'
import RuleBuilder from './RuleBuilder.vue'
import DevicesView from './DevicesView.vue'
import { blankRule, ruleToPayload, routeToRule, move, hoursToRows, rowsToHours, describeRule } from './rules.js'
import { configValues, settingGroups } from './config.js'

beforeEach(() => setActivePinia(createPinia()))
afterEach(() => vi.restoreAllMocks())

describe('rules', () => {
  it('turns a custom time rule into route JSON and back', () => {
    const r = { ...blankRule(), name: 'Weekend', did_id: '2', time_when: 'custom', days: ['sun', 'sat'], start: '10:00', end: '14:00', action_type: 'voicemail' }
    const p = ruleToPayload(r)
    expect(p).toEqual({ name: 'Weekend', did_id: 2, enabled: true, condition_type: 'time', condition_data: { when: 'custom', days: ['sat', 'sun'], start: '10:00', end: '14:00' }, action_type: 'voicemail', action_data: {} })
    const back = routeToRule({ id: 9, ...p, condition_data: JSON.stringify(p.condition_data) })
    expect(back).toMatchObject({ id: 9, name: 'Weekend', did_id: '2', time_when: 'custom', days: ['sat', 'sun'], start: '10:00', end: '14:00' })
    expect(describeRule({ ...p })).toBe('sat, sun 10:00–14:00 → Send to voicemail')
  })
  it('maps caller-ID and forward rules', () => {
    const p = ruleToPayload({ ...blankRule(), name: 'Mum', condition_type: 'callerid', caller_match: 'numbers', numbers: '+15550001, +15550002', action_type: 'forward', forward_number: ' +15559999 ' })
    expect(p.condition_data).toEqual({ match: 'numbers', numbers: ['+15550001', '+15550002'] })
    expect(p.action_data).toEqual({ number: '+15559999' })
  })
  it('moves items and ignores moves off the ends', () => {
    expect(move([1, 2, 3], 2, 0)).toEqual([3, 1, 2])
    expect(move([1, 2, 3], 0, -1)).toEqual([1, 2, 3])
  })
  it('edits the weekly hours setting', () => {
    const rows = hoursToRows('{"mon":["09:00","17:00"],"sat":[["10:00","12:00"]]}')
    expect(rows.find((r) => r.day === 'sat')).toMatchObject({ open: true, start: '10:00', end: '12:00' })
    expect(rows.find((r) => r.day === 'sun').open).toBe(false)
    rows.find((r) => r.day === 'sun').open = true
    expect(rowsToHours(rows)).toEqual({ mon: ['09:00', '17:00'], sat: ['10:00', '12:00'], sun: ['09:00', '17:00'] })
  })
  it('reads config values and groups the settings in the API order', () => {
    const r = {
      groups: [{ id: 'general', title: 'General' }, { id: 'empty', title: 'Empty' }, { id: 'calls', title: 'Calls' }],
      settings: [{ key: 'calls.ring_timeout', group: 'calls' }, { key: 'system.timezone', group: 'general' }],
      values: { 'routing.dnd': 'true' },
    }
    expect(configValues(r)).toEqual({ 'routing.dnd': 'true' })
    expect(settingGroups(r).map((g) => [g.id, g.settings.map((s) => s.key)])).toEqual([['general', ['system.timezone']], ['calls', ['calls.ring_timeout']]])
  })
})

describe('RuleList', () => {
  const rows = [
    { id: 1, name: 'A', condition_type: 'default', condition_data: {}, action_type: 'ring', action_data: {} },
    { id: 2, name: 'B', condition_type: 'default', condition_data: {}, action_type: 'voicemail', action_data: {} },
  ]
  it('reorders with the keyboard buttons', async () => {
    const w = mount(RuleList, { props: { rows } })
    await w.find('button[aria-label="Move up: B"]').trigger('click')
    expect(w.emitted('reorder')[0][0].map((r) => r.id)).toEqual([2, 1])
    expect(w.find('button[aria-label="Move up: A"]').attributes('disabled')).toBeDefined()
  })
  it('reorders by drag and drop', async () => {
    const w = mount(RuleList, { props: { rows } })
    const items = w.findAll('li')
    await items[0].trigger('dragstart', { dataTransfer: { setData() {} } })
    await items[1].trigger('drop')
    expect(w.emitted('reorder')[0][0].map((r) => r.id)).toEqual([2, 1])
  })
})

describe('RuleBuilder', () => {
  it('shows controls for the chosen condition and action and their errors', async () => {
    const r = blankRule()
    const w = mount(RuleBuilder, { props: { r, devices: [{ id: 4, name: 'Desk' }], errors: { 'action_data.number': 'Not an E.164 number' } } })
    expect(w.find('#f-rule-when').exists()).toBe(true)
    await w.find('#f-rule-when').setValue('custom')
    expect(w.text()).toContain('Saturday')
    expect(w.text()).toContain('Desk')
    await w.find('#f-rule-action').setValue('forward')
    expect(w.find('#f-rule-forward-err').text()).toBe('Not an E.164 number')
  })
})

describe('DevicesView', () => {
  it('shows the generated credentials once with the QR image after creating a device', async () => {
    mockApi({
      'GET /api/devices': { items: [{ id: 3, name: 'Desk', username: 'u3', extension: '101', device_type: 'grandstream', registrations: [{ user_agent: 'Grandstream GXP1760W', ip_address: '10.0.0.5:5060', transport: 'udp' }] }], total: 1 },
      'GET /api/users': { items: [], total: 0 },
      'POST /api/devices': ({ body }) => (body.name ? { device: { id: 4, name: body.name, username: 'kitchen7' }, password: 'S3cret-Generated', server: 'pbx.local' } : apiError(422, 'VALIDATION_ERROR', 'Some fields are invalid', [{ field: 'name', message: 'Required' }])),
    })
    const w = mount(DevicesView, { global: { stubs: { RouterLink: true } } })
    await flushPromises()
    expect(w.find('[data-device="u3"] [data-status]').text()).toBe('Registered')
    expect(w.find('[data-device="u3"] [data-ua]').text()).toBe('Grandstream GXP1760W')
    await w.find('form').trigger('submit')
    await flushPromises()
    expect(w.find('#f-dev-name-err').text()).toBe('Required')
    await w.find('#f-dev-name').setValue('Kitchen')
    await w.find('form').trigger('submit')
    await flushPromises()
    expect(w.find('[data-cred-password]').text()).toBe('S3cret-Generated')
    expect(w.find('[data-qr]').attributes('src')).toMatch(/^\/api\/devices\/4\/qr/)
    await w.findAll('button').find((b) => b.text() === 'I have saved them').trigger('click')
    expect(w.find('[data-credentials]').exists()).toBe(false)
  })
  it('sends the transport and SRTP chosen in the form, shows the server refusing them beside SRTP, and marks TLS devices', async () => {
    let n = 0
    const { calls } = mockApi({
      'GET /api/devices': { items: [
        { id: 3, name: 'Desk', username: 'u3', device_type: 'grandstream', transport: 'tls', srtp: 'required', registrations: [] },
        { id: 5, name: 'Plain', username: 'u5', device_type: 'softphone', transport: 'udp', srtp: 'optional', registrations: [] },
      ], total: 2 },
      'GET /api/users': { items: [], total: 0 },
      'POST /api/devices': ({ body }) => (++n === 1
        ? apiError(422, 'VALIDATION_ERROR', 'Some fields are invalid', [{ field: 'srtp', message: 'can be required only with transport tls: SRTP keys are only sent over TLS, so the phone must use TLS' }])
        : { id: 6, name: body.name, username: 'sec6', device_type: 'softphone', transport: body.transport, srtp: body.srtp, password: 'S3cret-Generated', server: 'pbx.local', port: 5061, tls_sha256: 'AB:CD:EF', sip_uri: 'sip:sec6:S3cret-Generated@pbx.local:5061;transport=tls' }),
    })
    const w = mount(DevicesView, { global: { stubs: { RouterLink: true } } })
    await flushPromises()
    expect(w.find('[data-device="u3"] [data-secure]').text()).toContain('TLS + SRTP')
    expect(w.find('[data-device="u5"] [data-secure]').exists()).toBe(false)
    expect(w.find('#f-dev-transport').element.value).toBe('udp')
    expect(w.find('#f-dev-srtp').element.value).toBe('optional')
    expect(w.find('#f-dev-srtp-hint').text()).toContain('needs Transport TLS')
    await w.find('#f-dev-name').setValue('Secure')
    await w.find('#f-dev-srtp').setValue('required')
    await w.find('form').trigger('submit')
    await flushPromises()
    expect(w.find('#f-dev-srtp-err').text()).toContain('only sent over TLS')
    expect(w.find('#f-dev-srtp').attributes('aria-describedby')).toContain('f-dev-srtp-err')
    await w.find('#f-dev-transport').setValue('tls')
    await w.find('form').trigger('submit')
    await flushPromises()
    const posts = calls.filter((c) => c.method === 'POST')
    expect(posts.map((c) => [c.body.transport, c.body.srtp])).toEqual([['udp', 'required'], ['tls', 'required']])
    expect(w.find('[data-cred-server]').text()).toBe('pbx.local:5061')
    expect(w.find('[data-cred-transport]').text()).toBe('TLS')
    const guide = w.find('[data-setup-guide]').text()
    expect(guide).toContain('Transport:TLS')
    expect(guide).toContain('SHA-256:AB:CD:EF')
    expect(guide).toContain('set SRTP (media encryption) to mandatory')
    // Editing loads them back into the form.
    await w.find('button[aria-label="Edit Desk"]').trigger('click')
    expect(w.find('#f-dev-transport').element.value).toBe('tls')
    expect(w.find('#f-dev-srtp').element.value).toBe('required')
  })
})
