import { describe, it, expect, afterEach, vi } from 'vitest'
import { mount, flushPromises } from '@vue/test-utils'
import { mockApi, apiError } from '../test/mockApi.js'
import NotifyPrefsPanel from './NotifyPrefsPanel.vue'
import { fromApi, toApi, testMessage } from './notifyPrefs.js'

afterEach(() => vi.restoreAllMocks())

const KINDS = { voicemail: true, sms: true, missed_call: false, call_started: false, call_ended: false, admin_alert: true }
function settings(over = {}) {
  return {
    name: 'Dana', email: 'dana@home.test', dnd: false, system_gotify: false,
    notify_prefs: {
      email: { enabled: true, address: '', ...KINDS, ...over.email },
      gotify: { enabled: true, url: '', token: '', ...KINDS, missed_call: true, ...over.gotify },
    },
    ...over.top,
  }
}
async function mountPanel(table, props = {}) {
  const api = mockApi(table)
  const w = mount(NotifyPrefsPanel, { props, attachTo: document.body })
  await flushPromises()
  return { w, ...api }
}
const field = (w, name) => w.find(`#f-${name}`)
// The error shown for a field, found through its aria-describedby.
function errorOf(w, name) {
  const input = field(w, name)
  const ids = (input.attributes('aria-describedby') || '').split(' ')
  const err = ids.find((id) => id.endsWith('-err'))
  return err ? w.find(`#${err}`).text() : ''
}

describe('NotifyPrefsPanel', () => {
  it('shows the login address as the email destination and the saved switches per channel', async () => {
    const { w } = await mountPanel({ 'GET /api/settings': settings({ gotify: { sms: false } }) })
    expect(field(w, 'n-email-address').element.value).toBe('dana@home.test')
    expect(field(w, 'n-email-voicemail').element.checked).toBe(true)
    expect(field(w, 'n-email-missed_call').element.checked).toBe(false)
    expect(field(w, 'n-gotify-missed_call').element.checked).toBe(true)
    expect(field(w, 'n-gotify-sms').element.checked).toBe(false)
    // No system server: the user is told to enter their own.
    expect(w.find('[data-channel=gotify]').text()).toContain('No system push server is set up')
    // System alerts are an admin's switch only.
    expect(field(w, 'n-email-admin_alert').exists()).toBe(false)
    // A channel switched off hides its destination and events.
    await field(w, 'n-email').setValue(false)
    expect(field(w, 'n-email-address').exists()).toBe(false)
    expect(field(w, 'n-email-voicemail').exists()).toBe(false)
    w.unmount()
  })

  it('saves another address, a Gotify server and token and per-event switches in the nested form', async () => {
    const saved = settings({ email: { address: 'pager@work.test', sms: false }, gotify: { url: 'https://push.home.test', token: '********' } })
    const { w, calls } = await mountPanel({ 'GET /api/settings': settings(), 'PUT /api/settings': saved })
    await field(w, 'n-email-address').setValue('pager@work.test')
    await field(w, 'n-email-sms').setValue(false)
    await field(w, 'n-email-call_ended').setValue(true)
    await field(w, 'n-gotify-url').setValue(' https://push.home.test ')
    await field(w, 'n-gotify-token').setValue('AbC.123')
    await w.find('form').trigger('submit')
    await flushPromises()
    const put = calls.find((c) => c.method === 'PUT')
    expect(put.path).toBe('/api/settings')
    expect(put.body).toEqual({
      notify_prefs: {
        email: { enabled: true, address: 'pager@work.test', voicemail: true, sms: false, missed_call: false, call_started: false, call_ended: true },
        gotify: { enabled: true, url: 'https://push.home.test', token: 'AbC.123', voicemail: true, sms: true, missed_call: true, call_started: false, call_ended: false },
      },
    })
    expect(w.find('[role=status]').text()).toBe('Saved.')
    // The answer shows the token masked; saving again sends the mask back.
    expect(field(w, 'n-gotify-token').element.value).toBe('********')
    await w.find('form').trigger('submit')
    await flushPromises()
    expect(calls.filter((c) => c.method === 'PUT')[1].body.notify_prefs.gotify.token).toBe('********')
    w.unmount()
  })

  it('sends the login address as empty so it follows the account, and admins their alert switches', async () => {
    const { w, calls } = await mountPanel({ 'GET /api/settings': settings(), 'PUT /api/settings': settings() }, { isAdmin: true })
    expect(field(w, 'n-gotify-admin_alert').element.checked).toBe(true)
    await field(w, 'n-gotify-admin_alert').setValue(false)
    await w.find('form').trigger('submit')
    await flushPromises()
    const body = calls.find((c) => c.method === 'PUT').body.notify_prefs
    expect(body.email.address).toBe('')
    expect(body.email.admin_alert).toBe(true)
    expect(body.gotify.admin_alert).toBe(false)
    w.unmount()
  })

  it('shows each API field error beside its field', async () => {
    const { w } = await mountPanel({
      'GET /api/settings': settings(),
      'PUT /api/settings': apiError(422, 'VALIDATION_ERROR', 'Some fields are invalid', [
        { field: 'notify_prefs.email.address', message: 'must be an email address like you@example.org' },
        { field: 'notify_prefs.gotify.url', message: 'must be an http(s) URL such as https://push.example.org' },
        { field: 'notify_prefs.gotify.sms', message: 'must be true or false' },
      ]),
    })
    await field(w, 'n-email-address').setValue('pager')
    await w.find('form').trigger('submit')
    await flushPromises()
    expect(w.find('[role=alert]').text()).toBe('Some fields are invalid')
    expect(errorOf(w, 'n-email-address')).toBe('must be an email address like you@example.org')
    expect(field(w, 'n-email-address').attributes('aria-invalid')).toBe('true')
    expect(errorOf(w, 'n-gotify-url')).toContain('must be an http(s) URL')
    expect(errorOf(w, 'n-gotify-sms')).toBe('must be true or false')
    expect(errorOf(w, 'n-gotify-token')).toBe('')
    expect(w.find('[role=status]').exists()).toBe(false)
    w.unmount()
  })

  it('saves before a test and reports where the test went or why it failed', async () => {
    let putOk = true
    const { w, calls } = await mountPanel({
      'GET /api/settings': settings(),
      'PUT /api/settings': () => (putOk ? settings({ email: { address: 'pager@work.test' } })
        : apiError(422, 'VALIDATION_ERROR', 'Some fields are invalid', [{ field: 'notify_prefs.gotify.token', message: 'is required with a server URL' }])),
      'POST /api/settings/notify-test': ({ body }) => (body.channel === 'email'
        ? { ok: true, error: '', target: 'pager@work.test' }
        : { ok: false, error: 'gotify 401 Unauthorized: invalid token', target: 'https://push.home.test' }),
    })
    await field(w, 'n-email-address').setValue('pager@work.test')
    await w.findAll('button').find((b) => b.text() === 'Send test email').trigger('click')
    await flushPromises()
    expect(calls.map((c) => `${c.method} ${c.path}`)).toEqual(['GET /api/settings', 'PUT /api/settings', 'POST /api/settings/notify-test'])
    expect(calls[2].body).toEqual({ channel: 'email' })
    expect(w.find('[data-test-result=email]').text()).toBe('Test email sent to pager@work.test.')
    await w.findAll('button').find((b) => b.text() === 'Send test push').trigger('click')
    await flushPromises()
    const push = w.find('[data-test-result=gotify]')
    expect(push.attributes('role')).toBe('alert')
    expect(push.text()).toBe('Not sent: gotify 401 Unauthorized: invalid token')
    // A refused save shows the field error and sends no test.
    putOk = false
    const before = calls.length
    await w.findAll('button').find((b) => b.text() === 'Send test push').trigger('click')
    await flushPromises()
    expect(calls.slice(before).map((c) => c.method)).toEqual(['PUT'])
    expect(errorOf(w, 'n-gotify-token')).toBe('is required with a server URL')
    w.unmount()
  })
})

describe('notify prefs mapping', () => {
  it('fills missing parts with notifyd defaults and keeps an address that is set', () => {
    const v = fromApi({ email: 'a@b.test', notify_prefs: { email: { enabled: false, address: 'x@y.test' } } })
    expect(v.email).toMatchObject({ enabled: false, address: 'x@y.test', voicemail: true, missed_call: false })
    expect(v.gotify).toMatchObject({ enabled: true, url: '', token: '', missed_call: true })
    expect(fromApi(null).email.address).toBe('')
  })
  it('trims, compares the login address without case and leaves admin alerts to admins', () => {
    const v = fromApi({ email: 'a@b.test', notify_prefs: {} })
    v.email.address = ' A@B.test '
    const body = toApi(v, 'a@b.test', false)
    expect(body.email.address).toBe('')
    expect('admin_alert' in body.email || 'admin_alert' in body.gotify).toBe(false)
    expect(toApi(v, 'a@b.test', true).gotify.admin_alert).toBe(true)
  })
  it('words the test result', () => {
    expect(testMessage('gotify', { ok: true, target: 'system Gotify server' }).text).toBe('Test push sent to system Gotify server.')
    expect(testMessage('email', { ok: false, error: '' })).toEqual({ ok: false, text: 'Not sent: unknown error' })
  })
})
