import { describe, it, expect, afterEach, vi, beforeEach } from 'vitest'
import { mount, flushPromises } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import { mockApi, apiError } from '../../test/mockApi.js'
import TestCall from './TestCall.vue'
import ScheduleEditor from './ScheduleEditor.vue'
import SystemView from './SystemView.vue'
import MessagesView from '../MessagesView.vue'

beforeEach(() => setActivePinia(createPinia()))
afterEach(() => vi.restoreAllMocks())

describe('TestCall', () => {
  it('asks the rules engine for the chosen number and time and names the rule that matched', async () => {
    const { calls } = mockApi({ 'POST /api/routes/test': { action: 'voicemail', rule: 'route:7:Weekend voicemail', reason: 'time rule matched', twiml: '<Response/>' } })
    const w = mount(TestCall, { props: { dids: [{ id: 1, number: '+15551230000' }] } })
    await w.find('#f-test-from').setValue('+15557654321')
    await w.find('#f-test-at').setValue('2026-11-28T11:00')
    await w.find('form').trigger('submit')
    await flushPromises()
    const body = calls[0].body
    expect(body.did).toBe('+15551230000')
    expect(body.from_number).toBe('+15557654321')
    expect(new Date(body.at).getTime()).toBe(new Date('2026-11-28T11:00').getTime())
    expect(w.find('[data-matched-rule]').text()).toBe('Weekend voicemail')
    expect(w.find('[data-decision]').text()).toBe('voicemail')
  })
  it('shows the field error next to the caller number', async () => {
    mockApi({ 'POST /api/routes/test': apiError(422, 'VALIDATION_ERROR', 'Some fields are invalid', [{ field: 'from_number', message: 'must be an E.164 number' }]) })
    const w = mount(TestCall, { props: { dids: [{ id: 1, number: '+15551230000' }] } })
    await w.find('form').trigger('submit')
    await flushPromises()
    expect(w.find('#f-test-from-err').text()).toBe('must be an E.164 number')
  })
})

describe('ScheduleEditor', () => {
  it('saves weekly hours and holidays as the JSON settings', async () => {
    const { calls } = mockApi({ 'PUT /api/system/config': {} })
    const w = mount(ScheduleEditor, { props: { config: { 'routing.business_hours': '{"mon":["09:00","17:00"]}', 'routing.holidays': '[]' } } })
    await w.find('input[aria-label="Open on Saturday"]').setValue(true)
    await w.find('input[aria-label="Saturday closes at"]').setValue('12:00')
    await w.find('#f-holiday-date').setValue('2026-12-25')
    await w.findAll('button').find((b) => b.text() === 'Add').trigger('click')
    await w.find('form').trigger('submit')
    await flushPromises()
    expect(JSON.parse(calls[0].body['routing.business_hours'])).toEqual({ mon: ['09:00', '17:00'], sat: ['09:00', '12:00'] })
    expect(JSON.parse(calls[0].body['routing.holidays'])).toEqual(['2026-12-25'])
    expect(w.text()).toContain('Schedule saved.')
  })
})

describe('SystemView', () => {
  const settings = [
    { key: 'system.timezone', value: 'UTC', default: 'UTC', secret: false, group: 'general', kind: 'text', label: 'Time zone', help: 'Business hours follow it' },
    { key: 'calls.ring_timeout', value: '30', default: '30', secret: false, group: 'calls', kind: 'int', min: 5, max: 300, unit: 'seconds', label: 'Ring for', help: 'How long phones ring' },
    { key: 'smtp.security', value: 'starttls', default: 'starttls', secret: false, group: 'calls', kind: 'choice', options: [{ value: 'starttls', label: 'STARTTLS' }, { value: 'tls', label: 'TLS' }], label: 'SMTP encryption', help: 'How the connection is protected' },
    { key: 'routing.holidays', value: '[]', default: '[]', secret: false, group: 'calls', kind: 'json', page: '/admin/routing', label: 'Holidays', help: 'Days treated as closed' },
    { key: 'twilio.account_sid', value: 'AC1', default: '', secret: false, group: 'twilio', kind: 'text', label: 'Account SID', help: 'Starts with AC' },
    { key: 'twilio.auth_token', value: '********', default: '', secret: true, group: 'twilio', kind: 'secret', label: 'Auth token', help: 'Next to the SID' },
    { key: 'twilio.api_base', value: 'https://api.twilio.com', default: 'https://api.twilio.com', secret: false, group: 'advanced', kind: 'url', label: 'Twilio API address', help: 'Change only for a test server' },
  ]
  const config = {
    groups: [{ id: 'general', title: 'General' }, { id: 'calls', title: 'Calls' }, { id: 'twilio', title: 'Twilio' }, { id: 'advanced', title: 'Advanced' }],
    settings,
    values: Object.fromEntries(settings.map((s) => [s.key, s.value])),
  }
  const api = (put) => mockApi({
    'GET /api/system/config': config,
    'GET /api/webhook-endpoints': [],
    'GET /api/alerts': { items: [], total: 0 },
    'GET /api/system/hold-music': { custom: false, seconds: 0, sample_rate: 0, channels: 0 },
    'PUT /api/system/config': put,
  })
  it('never shows a secret, sends it only when retyped, and shows field errors beside the field', async () => {
    const { calls } = api(({ body }) => (body['system.timezone'] === 'Mars/Base' ? apiError(422, 'VALIDATION_ERROR', 'Some fields are invalid', [{ field: 'system.timezone', message: 'must be a time zone such as America/New_York' }]) : config))
    const w = mount(SystemView, { global: { stubs: { RouterLink: true } } })
    await flushPromises()
    const token = w.find('#f-twilio-auth_token')
    expect(token.element.value).toBe('')
    expect(token.attributes('placeholder')).toContain('set')
    const forms = w.findAll('form')
    const twilio = forms.find((f) => f.attributes('aria-label') === 'Twilio settings')
    await twilio.trigger('submit')
    await flushPromises()
    expect(calls.filter((c) => c.method === 'PUT')).toHaveLength(0)
    await token.setValue('new-token')
    await twilio.trigger('submit')
    await flushPromises()
    expect(calls.find((c) => c.method === 'PUT').body).toEqual({ 'twilio.auth_token': 'new-token' })
    await w.find('#f-system-timezone').setValue('Mars/Base')
    await forms.find((f) => f.attributes('aria-label') === 'General settings').trigger('submit')
    await flushPromises()
    expect(w.find('#f-system-timezone-err').text()).toBe('must be a time zone such as America/New_York')
    expect(w.text()).toContain('Nothing was saved: one field needs a change')
  })
  it('shows every setting with its label, help and limits, links JSON settings to their page, and tucks advanced ones away', async () => {
    api(config)
    const w = mount(SystemView, { global: { stubs: { RouterLink: { props: ['to'], template: '<a :href="to"><slot /></a>' } } } })
    await flushPromises()
    for (const s of settings) expect(w.find(`[data-setting="${s.key}"]`).exists(), s.key).toBe(true)
    const ring = w.find('#f-calls-ring_timeout')
    expect([ring.attributes('type'), ring.attributes('min'), ring.attributes('max')]).toEqual(['number', '5', '300'])
    expect(w.find('#f-calls-ring_timeout-hint').text()).toBe('How long phones ring. From 5 to 300 seconds. Default: 30.')
    expect(w.find('#f-smtp-security').findAll('option').map((o) => o.text())).toEqual(['STARTTLS', 'TLS'])
    expect(w.find('[data-setting="routing.holidays"] a').attributes('href')).toBe('/admin/routing')
    expect(w.find('[data-advanced] [data-setting="twilio.api_base"]').exists()).toBe(true)
    // No key names on screen: only labels and help.
    expect(w.text()).not.toContain('calls.ring_timeout')
  })
})

describe('MessagesView', () => {
  it('sends a text as JSON and an image as multipart, and shows field errors', async () => {
    let n = 0
    const { calls } = mockApi({
      'GET /api/messages/conversations': { items: [], total: 0 },
      'GET /api/messages': { items: [], total: 0 },
      'PUT /api/messages/conversations/read': { marked: 0 },
      'GET /api/dids': { items: [{ id: 1, number: '+15551230000', name: 'Main' }], total: 1 },
      'POST /api/messages': ({ body }) => (++n === 1 ? apiError(422, 'VALIDATION_ERROR', 'Some fields are invalid', [{ field: 'to', message: 'must be an E.164 number' }]) : { __status: 201, body: { id: n, status: 'queued', ...(body instanceof FormData ? {} : body) } }),
    })
    globalThis.URL.createObjectURL = () => 'blob:preview'
    globalThis.URL.revokeObjectURL = () => {}
    const w = mount(MessagesView)
    await flushPromises()
    await w.find('#f-msg-to').setValue('555')
    await w.find('#f-msg-body').setValue('hi')
    await w.find('form').trigger('submit')
    await flushPromises()
    expect(w.find('#f-msg-to-err').text()).toBe('must be an E.164 number')
    await w.find('#f-msg-to').setValue('+15557770000')
    await w.find('form').trigger('submit')
    await flushPromises()
    expect(calls.filter((c) => c.method === 'POST')[1].body).toEqual({ to: '+15557770000', body: 'hi', from: '+15551230000' })
    const input = w.find('#msg-media')
    Object.defineProperty(input.element, 'files', { value: [new File(['x'], 'a.png', { type: 'image/png' })] })
    await input.trigger('change')
    expect(w.find('img[alt="Preview of the attached image"]').exists()).toBe(true)
    await w.find('#f-msg-body').setValue('pic')
    await w.find('form').trigger('submit')
    await flushPromises()
    const mms = calls.filter((c) => c.method === 'POST')[2].body
    expect(mms).toBeInstanceOf(FormData)
    expect(mms.get('media').name).toBe('a.png')
    expect(mms.get('body')).toBe('pic')
  })
})

describe('MessagesView without Twilio', () => {
  const base = {
    'GET /api/messages/conversations': { items: [], total: 0 },
    'GET /api/dids': { items: [{ id: 1, number: '+15551230000', name: 'Main' }], total: 1 },
    'POST /api/messages': ({ body }) => ({ __status: 201, body: { id: 1, status: 'queued', from_number: '+15551230000', to_number: body.to, body: body.body } }),
    'GET /api/messages': { items: [], total: 0 },
  }
  async function sendOne(health) {
    mockApi({ ...base, 'GET /api/system/health': health })
    const w = mount(MessagesView)
    await flushPromises()
    await w.find('#f-msg-to').setValue('+15557770000')
    await w.find('#f-msg-body').setValue('hi')
    await w.find('form').trigger('submit')
    await flushPromises()
    return w
  }
  it('says Twilio is not connected in the send box and after sending, instead of a bare "queued"', async () => {
    const w = await sendOne({ status: 'ok', daemons: {}, twilio_connected: false })
    expect(w.find('[data-not-connected]').text()).toContain('Twilio is not connected')
    expect(w.find('[role=status]').text()).toContain('not delivered while Twilio is not connected')
  })
  it('says nothing of it when Twilio is connected', async () => {
    const w = await sendOne({ status: 'ok', daemons: {}, twilio_connected: true })
    expect(w.find('[data-not-connected]').exists()).toBe(false)
    expect(w.find('[role=status]').text()).toBe('Message queued.')
  })
})

describe('MessagesView conversations', () => {
  it('lists conversations, opens one thread oldest first, and marks it read', async () => {
    const { calls } = mockApi({
      'GET /api/messages/conversations': { items: [{ peer: '+15550000001', our_number: '+15551230000', last_body: 'Sure', last_direction: 'outbound', unread: 1, total: 2 }], total: 1 },
      'GET /api/messages': ({ query }) => ({ items: query.peer === '+15550000001' ? [
        { id: 2, direction: 'outbound', from_number: '+15551230000', to_number: '+15550000001', body: 'Sure', status: 'delivered', created_at: '2026-11-22T09:05:00Z', media_urls: [] },
        { id: 1, direction: 'inbound', from_number: '+15550000001', to_number: '+15551230000', body: 'Lunch?', status: 'received', created_at: '2026-11-22T09:00:00Z', media_urls: [{ url: '/api/messages/1/media/0', content_type: 'image/jpeg' }] },
      ] : [], total: 2 }),
      'PUT /api/messages/conversations/read': { marked: 1 },
      'GET /api/dids': { items: [], total: 0 },
    })
    const w = mount(MessagesView)
    await flushPromises()
    expect(w.text()).toContain('1 new')
    await w.find('ul[aria-label=Conversations] button').trigger('click')
    await flushPromises()
    expect(calls.find((c) => c.path === '/api/messages').query).toMatchObject({ peer: '+15550000001', order: 'desc' })
    expect(w.findAll('ol[aria-label=Conversation] li').map((li) => li.find('p').text())).toEqual(['Lunch?', 'Sure'])
    expect(w.find('img[alt="Image 1 in message"]').attributes('src')).toBe('/api/messages/1/media/0')
    expect(w.find('[data-status]').text()).toContain('delivered')
    expect(calls.find((c) => c.path === '/api/messages/conversations/read').body).toEqual({ peer: '+15550000001', our_number: '+15551230000' })
    expect(w.text()).not.toContain('1 new')
  })
  it('keeps one thread per number of ours and replies from the number the thread is on', async () => {
    const peer = '+15550000001'
    const msg = (id, ours, body) => ({ id, direction: 'inbound', from_number: peer, to_number: ours, body, status: 'received', created_at: `2026-11-22T09:0${id}:00Z`, media_urls: [] })
    const { calls } = mockApi({
      'GET /api/messages/conversations': { items: [
        { peer, our_number: '+15551230000', last_body: 'To main', last_direction: 'inbound', unread: 0, total: 1 },
        { peer, our_number: '+15551239999', last_body: 'To sales', last_direction: 'inbound', unread: 1, total: 1 },
      ], total: 2 },
      'GET /api/messages': ({ query }) => ({ items: [msg(1, '+15551230000', 'To main'), msg(2, '+15551239999', 'To sales')].filter((m) => m.to_number === query.our_number), total: 1 }),
      'PUT /api/messages/conversations/read': { marked: 1 },
      'GET /api/dids': { items: [{ id: 1, number: '+15551230000', name: 'Main' }, { id: 2, number: '+15551239999', name: 'Sales' }], total: 2 },
      'POST /api/messages': ({ body }) => ({ __status: 201, body: { id: 3, status: 'queued', direction: 'outbound', from_number: body.from, to_number: body.to, body: body.body } }),
    })
    const w = mount(MessagesView)
    await flushPromises()
    const threads = w.findAll('ul[aria-label=Conversations] button')
    expect(threads.length).toBe(2)
    expect(threads.map((b) => b.find('[data-our-number]').text())).toEqual(['on +15551230000', 'on +15551239999'])
    await threads[1].trigger('click')
    await flushPromises()
    expect(w.findAll('ol[aria-label=Conversation] li').map((li) => li.find('p').text())).toEqual(['To sales'])
    expect(threads[1].attributes('aria-current')).toBe('true')
    expect(threads[0].attributes('aria-current')).toBeUndefined()
    expect(calls.find((c) => c.path === '/api/messages/conversations/read').body).toEqual({ peer, our_number: '+15551239999' })
    // No "From" choice inside a thread: the reply goes from its number.
    expect(w.find('#f-msg-from').exists()).toBe(false)
    await w.find('#f-msg-body').setValue('Sales here')
    await w.find('form').trigger('submit')
    await flushPromises()
    expect(calls.find((c) => c.method === 'POST').body).toEqual({ to: peer, from: '+15551239999', body: 'Sales here' })
  })
})
