// The setup wizard's checks and payload, pure so they are unit-tested.
import { COUNTRIES } from '../countries.js'

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/

// What a person may type as a phone number: digits with spaces, dashes,
// dots and brackets, maybe a leading +; the server reads it in the chosen
// country and answers beside the field if it is not a number there.
const PHONE = /^\+?[\d\s().-]{4,}$/

// `zones`: the time zones to accept (the browser's list), or null to skip.
export function validateSetupStep(step, v, zones = null) {
  const e = {}
  if (step === 0) {
    if (!(v.setup_token ?? '').trim()) e.setup_token = 'Enter the setup token: GoSIP printed it in its log at start and wrote it to the file setup-token in its data folder.'
    if (!EMAIL.test(v.admin_email.trim())) e.admin_email = 'Enter an email address like you@example.org.'
    if (v.admin_password.length < 8) e.admin_password = 'Use at least 8 characters.'
    else if (v.admin_password !== v.admin_password2) e.admin_password2 = 'The two passwords differ.'
  } else if (step === 1) {
    if (!(v.timezone ?? '').trim()) e.timezone = 'Choose your time zone, such as America/New_York.'
    else if (zones && !zones.includes(v.timezone.trim())) e.timezone = 'Choose a time zone from the list, such as America/New_York or Europe/London.'
    if (!v.country) e.country = 'Choose your country.'
  } else if (step === 2) {
    const sid = v.twilio_account_sid.trim()
    if (sid && !/^AC[0-9a-fA-F]{32}$/.test(sid)) e.twilio_account_sid = 'An Account SID is "AC" followed by 32 hex characters.'
    if (sid && !v.twilio_auth_token.trim()) e.twilio_auth_token = 'Enter the auth token too, or skip this step.'
  } else if (step === 3) {
    const u = v.public_url.trim()
    if (u && !/^https?:\/\/[^\s/]+/.test(u)) e.public_url = 'Enter a full URL starting with https://.'
  } else if (step === 4) {
    const n = v.did_number.trim()
    if (n && !PHONE.test(n)) e.did_number = 'Type the number as you dial it, such as (555) 867-5309, or with + and the country code.'
  }
  return e
}

export function stepOfField(f) {
  if (f.startsWith('admin') || f.startsWith('setup')) return 0
  if (f.startsWith('timezone') || f.startsWith('country')) return 1
  if (f.startsWith('twilio')) return 2
  if (f.startsWith('public') || f.startsWith('local')) return 3
  if (f.startsWith('did')) return 4
  return 0
}

// `detected`: the addresses sipd found ({ lan_address, public_address });
// an address is sent only when the admin changed it (left as detected, sipd
// keeps following the network).
export function setupPayload(v, detected = {}) {
  const p = {
    setup_token: (v.setup_token ?? '').trim(),
    admin: { email: v.admin_email.trim(), name: v.admin_name.trim(), password: v.admin_password },
  }
  if (v.twilio_account_sid.trim()) p.twilio = { account_sid: v.twilio_account_sid.trim(), auth_token: v.twilio_auth_token.trim() }
  if (v.public_url.trim()) p.public_url = v.public_url.trim()
  if ((v.timezone ?? '').trim()) p.timezone = v.timezone.trim()
  const country = COUNTRIES.find((c) => c.iso === v.country)
  if (country) p.country_code = country.dial
  if (v.did_number.trim()) p.did = { number: v.did_number.trim(), name: v.did_name.trim() }
  const lan = (v.lan_address ?? '').trim()
  if (lan && lan !== (detected.lan_address ?? '')) p.local_address = lan
  const pub = (v.public_address ?? '').trim()
  if (pub && pub !== (detected.public_address ?? '')) p.public_address = pub
  return p
}
