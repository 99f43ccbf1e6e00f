// Which settings the System screen shows, grouped; keys are those of
// proto::settings::KEYS. kind: secret (write-only), bool, number, url.
const bool = (key, label) => ({ key, label, kind: 'bool' })
const secret = (key, label) => ({ key, label, kind: 'secret' })
const num = (key, label) => ({ key, label, kind: 'number' })
const text = (key, label, extra = {}) => ({ key, label, ...extra })

export const SETTING_GROUPS = [
  { title: 'General', keys: [
    text('system.public_url', 'Public URL', { kind: 'url' }), text('system.timezone', 'Time zone'),
    text('system.default_country', 'Default country code'), text('system.trusted_proxy', 'Trusted reverse proxy address'),
  ] },
  { title: 'Twilio', check: 'twilio', keys: [
    text('twilio.account_sid', 'Account SID'), secret('twilio.auth_token', 'Auth token'),
    text('twilio.termination_uri', 'SIP trunk termination URI'), text('twilio.trunk_username', 'Trunk username'),
    secret('twilio.trunk_password', 'Trunk password'), bool('twilio.delete_after_download', "Delete Twilio's copy of voicemail after download"),
  ] },
  { title: 'Email', check: 'email', keys: [
    text('email.transport', 'Send email with', { options: [{ value: 'smtp', label: 'SMTP server' }, { value: 'postmark', label: 'Postmark' }] }),
    text('email.from', 'From address', { kind: 'email' }), text('smtp.host', 'SMTP host'), num('smtp.port', 'SMTP port'),
    text('smtp.security', 'SMTP security', { options: ['starttls', 'tls', 'plain'] }), text('smtp.username', 'SMTP username'),
    secret('smtp.password', 'SMTP password'), secret('postmark.token', 'Postmark server token'),
  ] },
  { title: 'Push notifications', check: 'gotify', keys: [text('gotify.url', 'Gotify server URL', { kind: 'url' }), secret('gotify.token', 'Gotify application token')] },
  { title: 'SIP', keys: [
    text('sip.realm', 'Realm'), text('sip.public_address', 'Public address (towards Twilio)'), text('sip.local_address', 'LAN address (towards phones)'),
    num('sip.ban_threshold', 'Failed logins before a ban'), num('sip.ban_duration', 'Ban duration (seconds)'),
  ] },
  { title: 'Calls and voicemail', keys: [
    num('calls.ring_timeout', 'Ring timeout (seconds)'), num('recording.retention_days', 'Keep recordings (days, 0 = forever)'),
    num('voicemail.max_length', 'Longest voicemail (seconds)'), text('voicemail.greeting', 'Default greeting'),
    bool('calls.allow_international', 'Allow international calls'),
  ] },
]
