// A device's transport and SRTP policy (devices.transport / devices.srtp) in
// the words of the device form, the setup guide and the MAC setup panel.

export const TRANSPORTS = [
  { value: 'udp', label: 'UDP' },
  { value: 'tcp', label: 'TCP' },
  { value: 'tls', label: 'TLS (encrypted signalling)' },
]

export const SRTP_POLICIES = [
  { value: 'required', label: 'Required' },
  { value: 'optional', label: 'Optional' },
  { value: 'off', label: 'Off' },
]

export function transportName(t) {
  return (t || 'udp').toUpperCase()
}

// What the phone's own SRTP setting should be. GoSIP sends SRTP keys only
// over TLS, so a phone on UDP or TCP is told to switch SRTP off: one that
// insists on it would never get a call through.
export function phoneSrtp(transport, srtp) {
  if (transport !== 'tls' || srtp === 'off') return 'off'
  return srtp === 'required' ? 'mandatory' : 'optional'
}

// The same setting as Grandstream and Yealink name it.
export const GRANDSTREAM_SRTP = { mandatory: 'Enabled and Forced', optional: 'Enabled but Not Forced', off: 'Disabled' }
export const YEALINK_SRTP = { mandatory: 'Compulsory', optional: 'Optional', off: 'Disabled' }

// "Set SRTP (media encryption) to mandatory", after `where` and with the
// phone's own name for it, and why when it is off only because the phone
// does not use TLS.
export function srtpSentence(transport, srtp, { where = '', label = '' } = {}) {
  const mode = phoneSrtp(transport, srtp)
  const named = label ? ` ("${label}")` : ''
  const why = mode === 'off' && srtp !== 'off' ? ': without TLS GoSIP never encrypts the call audio, so a phone that insists on it gets no calls' : ''
  return `${where ? `${where}, set` : 'Set'} SRTP (media encryption) to ${mode}${named}${why}.`
}
