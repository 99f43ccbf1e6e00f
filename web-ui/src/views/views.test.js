import { describe, it, expect, afterEach, vi, beforeEach } from 'vitest'
import { mount, flushPromises } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import { createRouter, createMemoryHistory } from 'vue-router'
import { mockApi, apiError } from '../test/mockApi.js'
import LoginView from './LoginView.vue'
import SetupView from './SetupView.vue'
import CallsView from './CallsView.vue'
import VoicemailView from './VoicemailView.vue'
import DashboardView from './DashboardView.vue'
import SystemBanner from '../components/SystemBanner.vue'
import App from '../App.vue'
import { validateSetupStep, setupPayload } from './setup.js'
import { browserCountry, timeZones } from '../countries.js'
import { useAuth } from '../stores/auth.js'

let pinia
beforeEach(() => { pinia = createPinia(); setActivePinia(pinia) })
afterEach(() => vi.restoreAllMocks())

function withRouter(component) {
  const router = createRouter({ history: createMemoryHistory(), routes: [{ path: '/', component: { template: '<p>home</p>' } }, { path: '/login', component }, { path: '/:p(.*)*', component: { template: '<p>x</p>' } }] })
  return router
}
async function mountView(component, path = '/login') {
  const router = withRouter(component)
  router.push(path)
  await router.isReady()
  const w = mount(component, { global: { plugins: [pinia, router] } })
  await flushPromises()
  return { w, router }
}

describe('LoginView', () => {
  it('shows the lockout message the API gives after too many failures', async () => {
    mockApi({ 'POST /api/auth/login': apiError(429, 'RATE_LIMITED', 'Too many failed logins; try again in 15 minutes') })
    const { w } = await mountView(LoginView)
    await w.find('input[type=email]').setValue('a@b.co')
    await w.find('input[type=password]').setValue('wrongwrong')
    await w.find('form').trigger('submit')
    await flushPromises()
    expect(w.find('[data-lockout]').text()).toBe('Too many failed logins; try again in 15 minutes')
  })
  it('says wrong email or password on 401 and goes home on success', async () => {
    let ok = false
    mockApi({ 'POST /api/auth/login': () => (ok ? { user: { id: 1, email: 'a@b.co', role: 'user' } } : apiError(401, 'UNAUTHORIZED', 'Wrong email or password')) })
    const { w, router } = await mountView(LoginView)
    await w.find('input[type=email]').setValue('a@b.co')
    await w.find('input[type=password]').setValue('secret123')
    await w.find('form').trigger('submit')
    await flushPromises()
    expect(w.find('[role=alert]').text()).toContain('Wrong email or password')
    ok = true
    await w.find('form').trigger('submit')
    await flushPromises()
    expect(router.currentRoute.value.path).toBe('/')
  })
})

describe('SetupView', () => {
  it('checks each step before moving on', () => {
    expect(validateSetupStep(0, { admin_email: 'nope', admin_password: 'short', admin_password2: '' })).toMatchObject({ admin_email: expect.any(String), admin_password: expect.any(String) })
    expect(validateSetupStep(0, { setup_token: '', admin_email: 'a@b.co', admin_password: 'long enough', admin_password2: 'long enough' })).toEqual({ setup_token: expect.stringContaining('setup token') })
    expect(validateSetupStep(0, { setup_token: 't', admin_email: 'a@b.co', admin_password: 'long enough', admin_password2: 'long enough' })).toEqual({})
    expect(validateSetupStep(1, { timezone: 'Mars/Base', country: 'US' }, ['UTC', 'Europe/London'])).toHaveProperty('timezone')
    expect(validateSetupStep(1, { timezone: 'Europe/London', country: '' }, ['UTC', 'Europe/London'])).toHaveProperty('country')
    expect(validateSetupStep(1, { timezone: 'Europe/London', country: 'GB' }, ['UTC', 'Europe/London'])).toEqual({})
    expect(validateSetupStep(2, { twilio_account_sid: 'AC123', twilio_auth_token: '' })).toHaveProperty('twilio_account_sid')
    expect(validateSetupStep(2, { twilio_account_sid: '', twilio_auth_token: '' })).toEqual({})
    // Numbers as people type them: the server reads them in the country.
    for (const ok of ['+15551234567', '(555) 867-5309', '020 7946 0018', '555.867.5309']) expect(validateSetupStep(4, { did_number: ok })).toEqual({})
    expect(validateSetupStep(4, { did_number: 'call me' })).toHaveProperty('did_number')
  })
  it('leaves skipped parts out of the payload and sends the country as its calling code', () => {
    const p = setupPayload({ setup_token: ' tok ', admin_email: ' a@b.co ', admin_name: '', admin_password: 'pw', twilio_account_sid: '', twilio_auth_token: '', public_url: '', did_number: '', did_name: '' })
    expect(p).toEqual({ setup_token: 'tok', admin: { email: 'a@b.co', name: '', password: 'pw' } })
    const q = setupPayload({ setup_token: 't', admin_email: 'a@b.co', admin_name: '', admin_password: 'pw', twilio_account_sid: '', twilio_auth_token: '', public_url: '', timezone: 'Europe/London', country: 'GB', did_number: '020 7946 0018', did_name: '' })
    expect([q.timezone, q.country_code, q.did.number]).toEqual(['Europe/London', '44', '020 7946 0018'])
  })
  it('sends an address only when the admin changed what sipd detected', () => {
    const base = { setup_token: 't', admin_email: 'a@b.co', admin_name: '', admin_password: 'pw', twilio_account_sid: '', twilio_auth_token: '', public_url: '', did_number: '', did_name: '' }
    const detected = { lan_address: '192.168.1.10', public_address: '203.0.113.5' }
    const kept = setupPayload({ ...base, lan_address: '192.168.1.10', public_address: '203.0.113.5' }, detected)
    expect(kept).not.toHaveProperty('local_address')
    expect(kept).not.toHaveProperty('public_address')
    const typed = setupPayload({ ...base, lan_address: ' 192.168.1.20 ', public_address: 'pbx.example.org' }, detected)
    expect([typed.local_address, typed.public_address]).toEqual(['192.168.1.20', 'pbx.example.org'])
  })
  it('takes the time zone and country from the browser', () => {
    expect(browserCountry('en-GB')).toBe('GB')
    expect(browserCountry('de')).toBe('DE')
    expect(browserCountry('xx-QQ')).toBe('US')
    expect(timeZones()).toContain('Europe/London')
  })
  it('shows the API field errors beside the field on the step that has it', async () => {
    const { calls } = mockApi({
      'POST /api/setup': apiError(422, 'VALIDATION_ERROR', 'Some fields are invalid', [{ field: 'did.number', message: 'Not an E.164 number' }]),
      'POST /api/setup/twilio-check': apiError(422, 'VALIDATION_ERROR', 'Twilio refused these credentials', [{ field: 'auth_token', message: 'Authentication failed (20003)' }]),
    })
    const { w } = await mountView(SetupView)
    const fill = async (name, v) => w.find(`#f-${name}`).setValue(v)
    const next = async () => { await w.find('form').trigger('submit'); await flushPromises() }
    await next()
    expect(w.text()).toContain('Enter an email address')
    expect(w.find('#f-setup_token-err').text()).toContain('setup token')
    await fill('setup_token', 'the-token')
    await fill('admin_email', 'boss@home.test')
    await fill('admin_password', 'correct horse')
    await fill('admin_password2', 'correct horse')
    await next()
    // Where you are: prefilled from the browser.
    expect(w.find('#f-timezone').element.value).not.toBe('')
    await fill('timezone', 'Europe/London')
    await next()
    await fill('twilio_account_sid', `AC${'a'.repeat(32)}`)
    await fill('twilio_auth_token', 'bad')
    await w.findAll('button').find((b) => b.text() === 'Check credentials').trigger('click')
    await flushPromises()
    expect(w.find('#f-twilio_auth_token-err').text()).toBe('Authentication failed (20003)')
    await w.findAll('button').find((b) => b.text() === 'Skip Twilio for now').trigger('click')
    await next()
    await fill('did_number', '+15551234567')
    await next()
    const sent = calls.find((c) => c.path === '/api/setup')
    expect(sent.body.admin.email).toBe('boss@home.test')
    expect(sent.body.setup_token).toBe('the-token')
    expect(calls.find((c) => c.path === '/api/setup/twilio-check').body.setup_token).toBe('the-token')
    expect(sent.body.twilio).toBeUndefined()
    expect(sent.body.timezone).toBe('Europe/London')
    expect(w.find('#f-did_number-err').text()).toBe('Not an E.164 number')
  })
})

describe('SetupView token', () => {
  it('takes the token from the link GoSIP prints and shows a refused token beside its field', async () => {
    const { calls } = mockApi({
      'POST /api/setup': apiError(403, 'SETUP_TOKEN_INVALID', 'The setup token is missing or wrong', []),
    })
    const { w } = await mountView(SetupView, '/setup?token=from-the-log')
    expect(w.find('#f-setup_token').element.value).toBe('from-the-log')
    const fill = async (name, v) => w.find(`#f-${name}`).setValue(v)
    const next = async () => { await w.find('form').trigger('submit'); await flushPromises() }
    await fill('admin_email', 'boss@home.test')
    await fill('admin_password', 'correct horse')
    await fill('admin_password2', 'correct horse')
    await next()
    await next()
    await w.findAll('button').find((b) => b.text() === 'Skip Twilio for now').trigger('click')
    await next()
    await next()
    expect(calls.find((c) => c.path === '/api/setup').body.setup_token).toBe('from-the-log')
    expect(w.find('#f-setup_token-err').text()).toContain('setup token')
  })
})

describe('CallsView', () => {
  it('sends the filters as query parameters and offers the same filters as CSV', async () => {
    const { calls } = mockApi({ 'GET /api/cdrs': { items: [{ id: 1, direction: 'inbound', from_number: '+15550001', to_number: '+15550002', started_at: '2026-01-01T10:00:00Z', duration: 65, disposition: 'answered', recording_url: 'recordings/1.wav' }], total: 41, page: 1, per_page: 20 } })
    const { w } = await mountView(CallsView)
    expect(w.text()).toContain('+15550001')
    expect(w.text()).toContain('1:05')
    expect(w.find('audio').attributes('src')).toBe('/api/cdrs/1/recording')
    expect(w.text()).toContain('Page 1 of 3')
    await w.find('#f-flt-direction').setValue('inbound')
    await w.find('#f-flt-from').setValue('2026-01-01')
    await w.find('form').trigger('submit')
    await flushPromises()
    const last = calls.at(-1)
    expect(last.query).toMatchObject({ direction: 'inbound', from: '2026-01-01T00:00:00Z', page: '1', per_page: '20' })
    expect(w.find('[data-csv]').attributes('href')).toBe('/api/cdrs/export?from=2026-01-01T00%3A00%3A00Z&direction=inbound')
  })
  it('says a recording expired instead of offering a player for a deleted file', async () => {
    mockApi({ 'GET /api/cdrs': { items: [
      { id: 1, direction: 'inbound', from_number: '+15550001', to_number: '+15550002', started_at: '2026-01-01T10:00:00Z', duration: 65, disposition: 'answered', recording_url: null, recording_expired: true },
      { id: 2, direction: 'inbound', from_number: '+15550003', to_number: '+15550002', started_at: '2026-01-01T09:00:00Z', duration: 5, disposition: 'answered', recording_url: null, recording_expired: false },
    ], total: 2 } })
    const { w } = await mountView(CallsView)
    expect(w.find('audio').exists()).toBe(false)
    const rows = w.findAll('tbody tr')
    expect(rows[0].find('[data-recording-expired]').text()).toBe('Recording expired')
    expect(rows[1].find('[data-recording-expired]').exists()).toBe(false)
  })
  it('shows a lock only on calls encrypted on every leg', async () => {
    mockApi({ 'GET /api/cdrs': { items: [
      { id: 1, direction: 'internal', from_number: '101', to_number: '102', started_at: '2026-01-01T10:00:00Z', duration: 9, disposition: 'answered', encrypted: true },
      { id: 2, direction: 'internal', from_number: '103', to_number: '101', started_at: '2026-01-01T09:00:00Z', duration: 9, disposition: 'answered', encrypted: false },
    ], total: 2 } })
    const { w } = await mountView(CallsView)
    const rows = w.findAll('tbody tr')
    expect(rows[0].find('[data-encrypted]').attributes('aria-label')).toBe('Encrypted')
    expect(rows[1].find('[data-encrypted]').exists()).toBe(false)
  })
  it('says so when no call matches', async () => {
    mockApi({ 'GET /api/cdrs': { items: [], total: 0 } })
    const { w } = await mountView(CallsView)
    expect(w.find('[data-empty]').text()).toContain('No calls')
  })
})

describe('VoicemailView', () => {
  it('marks a voicemail read when played and deletes after confirmation', async () => {
    const { calls } = mockApi({
      'GET /api/voicemails': { items: [{ id: 5, from_number: '+15550009', transcript: 'Call me back', duration: 12, is_read: false, created_at: '2026-01-01T10:00:00Z' }], total: 1 },
      'PUT /api/voicemails/5/read': { id: 5, is_read: true },
      'DELETE /api/voicemails/5': undefined,
    })
    const { w } = await mountView(VoicemailView)
    expect(w.text()).toContain('Call me back')
    expect(w.text()).toContain('New')
    await w.find('audio').trigger('play')
    await flushPromises()
    expect(calls.find((c) => c.method === 'PUT').body).toEqual({ is_read: true })
    expect(w.text()).not.toContain('New')
    await w.find('button.btn-danger').trigger('click')
    await w.findAll('button.btn-danger')[0].trigger('click')
    await flushPromises()
    expect(calls.some((c) => c.method === 'DELETE' && c.path === '/api/voicemails/5')).toBe(true)
  })
})

describe('DashboardView live updates', () => {
  it('shows active calls and unread counts pushed over the event stream', async () => {
    const sources = []
    class FakeEventSource {
      constructor(url) { this.url = url; this.listeners = {}; sources.push(this) }
      addEventListener(t, f) { this.listeners[t] = f }
      close() { this.closed = true }
      emit(t, data) { this.listeners[t]?.({ data: JSON.stringify(data) }) }
    }
    vi.stubGlobal('EventSource', FakeEventSource)
    const { calls } = mockApi({
      'GET /api/dashboard': { unread_voicemails: 0, unread_messages: 0, dnd: false, recent_calls: [], active_calls: [] },
      'GET /api/calls': [],
      'PUT /api/calls/c-1/recording': ({ body }) => ({ enabled: body.enabled }),
    })
    const { w } = await mountView(DashboardView)
    expect(sources[0].url).toBe('/api/events')
    expect(w.text()).toContain('No calls right now.')
    sources[0].emit('calls', { calls: [{ call_id: 'c-1', from_number: '+15550000007', to_number: '+15551230000', state: 'answered', recording: false }] })
    sources[0].emit('voicemail', { latest_id: 9, unread: 4 })
    await flushPromises()
    expect(w.find('[data-active-calls]').text()).toContain('(555) 000-0007')
    expect(w.find('[data-unread-voicemails]').text()).toBe('4')
    await w.findAll('button').find((b) => b.text() === 'Record').trigger('click')
    await flushPromises()
    expect(calls.find((c) => c.method === 'PUT').body).toEqual({ enabled: true })
    expect(w.text()).toContain('Stop recording')
    w.unmount()
    expect(sources[0].closed).toBe(true)
    vi.unstubAllGlobals()
  })
})

describe('DashboardView', () => {
  const NOT_CONNECTED = 'Twilio is not connected: calls to and from outside numbers and SMS will not work; add the Twilio Account SID and Auth Token in Settings.'
  const dashboard = { unread_voicemails: 0, unread_messages: 0, dnd: false, recent_calls: [], active_calls: [] }
  it('shows admins a banner with what stops calls and which part is down, linking to the settings and the status', async () => {
    mockApi({
      'GET /api/system/health': { status: 'degraded', version: '0.1.0', database: { status: 'ok' }, daemons: { sipd: { status: 'ok' }, mediad: { status: 'down', detail: 'no answer within 1 s' } }, warnings: [NOT_CONNECTED] },
    })
    useAuth(pinia).user = { id: 1, email: 'a@b.co', role: 'admin' }
    const { w } = await mountView(SystemBanner)
    const banner = w.find('[data-warnings]')
    expect(banner.attributes('role')).toBe('alert')
    expect(banner.text()).toContain(NOT_CONNECTED)
    expect(banner.text()).toContain('The audio relay (mediad) is not working: calls connect without sound (no answer within 1 s).')
    expect(banner.text()).not.toContain('sipd')
    expect(banner.find('a[href="/admin/system"]').text()).toBe('System settings')
    expect(banner.find('a[href="/status"]').exists()).toBe(true)
  })
  it('shows no banner when nothing is wrong, and users never ask for it', async () => {
    const { calls } = mockApi({
      'GET /api/dashboard': dashboard,
      'GET /api/system/health': { status: 'ok', version: '0.1.0', database: { status: 'ok' }, daemons: { sipd: { status: 'ok' } }, warnings: [] },
    })
    useAuth(pinia).user = { id: 1, email: 'a@b.co', role: 'admin' }
    const { w } = await mountView(SystemBanner)
    expect(calls.some((c) => c.path === '/api/system/health')).toBe(true)
    expect(w.find('[data-warnings]').exists()).toBe(false)
    useAuth(pinia).user = { id: 2, email: 'u@b.co', role: 'user' }
    calls.length = 0
    const { w: w2 } = await mountView(App, '/')
    expect(calls.some((c) => c.path === '/api/system/health')).toBe(false)
    expect(w2.find('[data-warnings]').exists()).toBe(false)
  })
  it('shows unread counts and toggles DND through the API', async () => {
    const { calls } = mockApi({
      'GET /api/dashboard': { unread_voicemails: 2, unread_messages: 3, dnd: false, recent_calls: [], active_calls: [] },
      'PUT /api/dnd': ({ body }) => ({ enabled: body.enabled }),
    })
    const { w } = await mountView(DashboardView)
    expect(w.find('[data-unread-voicemails]').text()).toBe('2')
    expect(w.find('[data-unread-messages]').text()).toBe('3')
    await w.find('[role=switch]').trigger('click')
    await flushPromises()
    expect(calls.find((c) => c.path === '/api/dnd').body).toEqual({ enabled: true })
    expect(w.find('[role=switch]').attributes('aria-checked')).toBe('true')
  })
})

