// The setup wizard's checks and payload, pure so they are unit-tested.
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/
export const E164 = /^\+[1-9]\d{6,14}$/

export function validateSetupStep(step, v) {
  const e = {}
  if (step === 0) {
    if (!EMAIL.test(v.admin_email.trim())) e.admin_email = 'Enter an email address like you@example.org.'
    if (v.admin_password.length < 8) e.admin_password = 'Use at least 8 characters.'
    else if (v.admin_password !== v.admin_password2) e.admin_password2 = 'The two passwords differ.'
  } else if (step === 1) {
    const sid = v.twilio_account_sid.trim()
    if (sid && !/^AC[0-9a-fA-F]{32}$/.test(sid)) e.twilio_account_sid = 'An Account SID is "AC" followed by 32 hex characters.'
    if (sid && !v.twilio_auth_token.trim()) e.twilio_auth_token = 'Enter the auth token too, or skip this step.'
  } else if (step === 2) {
    const u = v.public_url.trim()
    if (u && !/^https?:\/\/[^\s/]+/.test(u)) e.public_url = 'Enter a full URL starting with https://.'
  } else if (step === 3) {
    const n = v.did_number.trim()
    if (n && !E164.test(n)) e.did_number = 'Use E.164 format: + then country code and number, e.g. +15551234567.'
  }
  return e
}

export function stepOfField(f) {
  if (f.startsWith('admin')) return 0
  if (f.startsWith('twilio')) return 1
  if (f.startsWith('public')) return 2
  if (f.startsWith('did')) return 3
  return 0
}

export function setupPayload(v) {
  const p = {
    admin: { email: v.admin_email.trim(), name: v.admin_name.trim(), password: v.admin_password },
  }
  if (v.twilio_account_sid.trim()) p.twilio = { account_sid: v.twilio_account_sid.trim(), auth_token: v.twilio_auth_token.trim() }
  if (v.public_url.trim()) p.public_url = v.public_url.trim()
  if (v.did_number.trim()) p.did = { number: v.did_number.trim(), name: v.did_name.trim() }
  return p
}
