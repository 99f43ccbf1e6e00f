// Display helpers.
import { parsePhoneNumberFromString } from 'libphonenumber-js/min'

import { homeCode, setHomeCode } from './home.js'

export { setHomeCode }

/** A phone number for people: "+15558675309" -> "(555) 867-5309" at home,
 * "+44 20 7946 0958" abroad; extensions and names are left as they are. */
export function fmtNumber(n) {
  if (typeof n !== 'string' || !/^\+\d{4,}$/.test(n)) return n ?? ''
  const p = parsePhoneNumberFromString(n)
  if (!p?.isPossible()) return n
  return p.countryCallingCode === homeCode() ? p.formatNational() : p.formatInternational()
}
export function fmtDate(iso) {
  if (!iso) return ''
  const d = new Date(iso)
  if (Number.isNaN(d.getTime())) return iso
  return d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' })
}
export function fmtDuration(s) {
  s = Number(s) || 0
  const m = Math.floor(s / 60)
  return `${m}:${String(s % 60).padStart(2, '0')}`
}
export const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun']
export const DAY_NAMES = { mon: 'Monday', tue: 'Tuesday', wed: 'Wednesday', thu: 'Thursday', fri: 'Friday', sat: 'Saturday', sun: 'Sunday' }
