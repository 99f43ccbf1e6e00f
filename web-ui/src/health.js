// What the admin's banner says for a /api/system/health answer: the
// daemons' warnings, then every part of GoSIP that is not ok, in plain words.
const PARTS = {
  sipd: 'The phone service (sipd) is not working: phones cannot register or make calls',
  mediad: 'The audio relay (mediad) is not working: calls connect without sound',
  twiliod: 'The Twilio bridge (twiliod) is not working: calls and texts from outside numbers do not arrive',
  notifyd: 'Notifications (notifyd) are not working: emails and push messages wait until it is back',
  webd: 'The web service (webd) is not working',
}

export function bannerLines(h) {
  const out = [...(h?.warnings ?? [])]
  if (h?.database && h.database.status !== 'ok') out.push(`The database is not healthy${h.database.detail ? `: ${h.database.detail}` : ''}.`)
  for (const [name, part] of Object.entries(h?.daemons ?? {})) {
    if (part?.status && part.status !== 'ok') out.push(`${PARTS[name] ?? `${name} is not working`}${part.detail ? ` (${part.detail})` : ''}.`)
  }
  return out
}
