// The notification preferences form <-> the API's `notify_prefs` (see
// docs/API.md "Notification preferences").

/** Event kinds, in the order the form lists them. */
export const KIND_LABELS = [
  { key: 'voicemail', label: 'New voicemail' },
  { key: 'sms', label: 'Text messages (SMS/MMS)' },
  { key: 'missed_call', label: 'Missed calls' },
  { key: 'call_started', label: 'Calls starting' },
  { key: 'call_ended', label: 'Calls ending' },
  { key: 'admin_alert', label: 'System alerts' },
]
const KINDS = KIND_LABELS.map((k) => k.key)

// notifyd's defaults, shown until the API answers.
const DEFAULT_ON = {
  email: ['voicemail', 'sms', 'admin_alert'],
  gotify: ['voicemail', 'sms', 'missed_call', 'admin_alert'],
}

export function channelDefaults(channel) {
  const v = { enabled: true }
  for (const k of KINDS) v[k] = DEFAULT_ON[channel].includes(k)
  if (channel === 'email') v.address = ''
  else { v.url = ''; v.token = '' }
  return v
}

/** Form values from a GET/PUT /api/settings answer; the email address
 *  shows the login address when no other one is set. */
export function fromApi(settings) {
  const p = settings?.notify_prefs ?? {}
  const email = { ...channelDefaults('email'), ...pick(p.email, ['enabled', 'address', ...KINDS]) }
  const gotify = { ...channelDefaults('gotify'), ...pick(p.gotify, ['enabled', 'url', 'token', ...KINDS]) }
  if (!email.address) email.address = settings?.email ?? ''
  return { email, gotify }
}

/** The `notify_prefs` body for PUT /api/settings. The login address is sent
 *  as "" (= follow the login address if an admin changes it); the masked
 *  token goes back as is, which keeps the stored one. Admin alerts are left
 *  out for users, who never get them. */
export function toApi(values, accountEmail, isAdmin) {
  const kinds = KINDS.filter((k) => k !== 'admin_alert' || isAdmin)
  const address = String(values.email.address ?? '').trim()
  return {
    email: {
      enabled: !!values.email.enabled,
      address: address.toLowerCase() === String(accountEmail ?? '').toLowerCase() ? '' : address,
      ...Object.fromEntries(kinds.map((k) => [k, !!values.email[k]])),
    },
    gotify: {
      enabled: !!values.gotify.enabled,
      url: String(values.gotify.url ?? '').trim(),
      token: String(values.gotify.token ?? '').trim(),
      ...Object.fromEntries(kinds.map((k) => [k, !!values.gotify[k]])),
    },
  }
}

/** What to say after POST /api/settings/notify-test. */
export function testMessage(channel, r) {
  if (r?.ok) {
    const where = r.target ? ` to ${r.target}` : ''
    return { ok: true, text: channel === 'email' ? `Test email sent${where}.` : `Test push sent${where}.` }
  }
  return { ok: false, text: `Not sent: ${r?.error || 'unknown error'}` }
}

function pick(o, keys) {
  if (!o || typeof o !== 'object') return {}
  return Object.fromEntries(keys.filter((k) => o[k] !== undefined && o[k] !== null).map((k) => [k, o[k]]))
}
