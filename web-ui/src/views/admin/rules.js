// Routing rules as edited in the rule builder <-> the API's route rows
// (condition_type/condition_data, action_type/action_data). Pure, so the
// mapping is unit-tested and lives in one place.
import { DAYS } from '../../format.js'

export const CONDITIONS = [
  { value: 'time', label: 'Time of day / week' },
  { value: 'callerid', label: 'Caller ID' },
  { value: 'default', label: 'Always (default)' },
]
export const TIME_PRESETS = [
  { value: 'business_hours', label: 'During business hours' },
  { value: 'after_hours', label: 'Outside business hours' },
  { value: 'weekends', label: 'Weekends' },
  { value: 'holidays', label: 'Holidays' },
  { value: 'custom', label: 'Custom days and hours' },
]
export const CALLER_MATCHES = [
  { value: 'vip', label: 'Caller is on the VIP list' },
  { value: 'known', label: 'Caller is a known caller' },
  { value: 'unknown', label: 'Caller is on neither list' },
  { value: 'numbers', label: 'Caller is one of these numbers' },
  { value: 'prefix', label: 'Caller number starts with' },
  { value: 'anonymous', label: 'Caller ID is hidden' },
]
export const ACTIONS = [
  { value: 'ring', label: 'Ring devices' },
  { value: 'forward', label: 'Forward to a number' },
  { value: 'voicemail', label: 'Send to voicemail' },
  { value: 'announcement', label: 'Play an announcement and hang up' },
  { value: 'reject', label: 'Reject the call' },
  { value: 'menu', label: 'Menu: "press 1 for ..."' },
]
/** What a key in a menu (or no key) can do: every action but reject. */
export const MENU_ACTIONS = ACTIONS.filter((a) => a.value !== 'reject')
/** How deep menus nest (proto::routing::MAX_MENU_DEPTH). */
export const MAX_MENU_DEPTH = 3
export const KEYS = ['1', '2', '3', '4', '5', '6', '7', '8', '9', '0']
export const REJECT_REASONS = [
  { value: 'busy', label: 'Busy signal' },
  { value: 'rejected', label: 'Call not accepted' },
]

export function blankRule() {
  return {
    id: null, name: '', did_id: '', enabled: true,
    condition_type: 'time', time_when: 'business_hours', days: ['mon', 'tue', 'wed', 'thu', 'fri'], start: '09:00', end: '17:00',
    hours: null, holidays: null,
    caller_match: 'vip', numbers: '', prefix: '', negate: false,
    action_type: 'ring', device_ids: [], ring_owner: false, forward_number: '', announcement: '', audio: '', ring_timeout: 30,
    greeting: '', reject_reason: 'busy', menu: blankMenu(),
  }
}

/** A menu as the menu editor edits it. */
export function blankMenu() {
  return { greeting: '', audio: '', timeout: 5, options: [blankChoice('1')], no_input: blankChoice('') }
}

/** One key of a menu (key '' = when nobody presses), any action but reject. */
export function blankChoice(key) {
  return { key, action_type: key ? 'ring' : 'voicemail', device_ids: [], ring_owner: true, number: '', text: '', greeting: '', menu: null }
}

/** A key's editor state -> its `{action_type, action_data}`. */
function choiceToAction(c) {
  let action_data = {}
  if (c.action_type === 'ring') {
    action_data = { device_ids: c.device_ids.map(Number) }
    if (c.ring_owner) action_data.owner = true
  }
  if (c.action_type === 'forward') action_data = { number: c.number.trim() }
  if (c.action_type === 'voicemail' && c.greeting.trim()) action_data = { greeting: c.greeting.trim() }
  if (c.action_type === 'announcement') action_data = { text: c.text }
  if (c.action_type === 'menu') action_data = menuToData(c.menu ?? blankMenu())
  return { action_type: c.action_type, action_data }
}

/** Menu editor state -> `action_data` of a menu (proto::routing::MenuAction). */
export function menuToData(m) {
  const options = {}
  for (const c of m.options) if (c.key) options[c.key] = choiceToAction(c)
  const out = { greeting: m.greeting, options }
  if (m.audio) out.audio = m.audio
  if (Number(m.timeout) && Number(m.timeout) !== 5) out.timeout = Number(m.timeout)
  if (m.no_input && m.no_input.action_type !== 'voicemail') out.no_input = choiceToAction(m.no_input)
  else if (m.no_input?.greeting?.trim()) out.no_input = choiceToAction(m.no_input)
  return out
}

function actionToChoice(key, a) {
  const c = blankChoice(key)
  const d = parse(a?.action_data)
  c.action_type = a?.action_type ?? c.action_type
  c.device_ids = (d.device_ids ?? []).map(String)
  c.ring_owner = !!d.owner
  c.number = d.number ?? ''
  c.text = d.text ?? ''
  c.greeting = c.action_type === 'voicemail' ? d.greeting ?? '' : ''
  c.menu = c.action_type === 'menu' ? dataToMenu(d) : null
  return c
}

/** `action_data` of a menu -> menu editor state. */
export function dataToMenu(d) {
  const data = parse(d)
  return {
    greeting: data.greeting ?? '',
    audio: data.audio ?? '',
    timeout: data.timeout ?? 5,
    options: Object.entries(data.options ?? {}).map(([k, a]) => actionToChoice(k, a)),
    no_input: data.no_input ? actionToChoice('', data.no_input) : blankChoice(''),
  }
}

/**
 * Builder state -> API body, exactly the RouteBody schema of
 * /api/openapi.json (proto::routing): only the fields of the chosen kinds.
 */
export function ruleToPayload(r) {
  let condition_data = {}
  if (r.condition_type === 'time') {
    condition_data = { when: r.time_when }
    if (r.time_when === 'custom') {
      condition_data.days = DAYS.filter((d) => r.days.includes(d))
      condition_data.start = r.start
      condition_data.end = r.end
    }
    // Per-rule hours and holidays are kept when a rule made through the API is edited here.
    if (r.hours && (r.time_when === 'business_hours' || r.time_when === 'after_hours')) condition_data.hours = r.hours
    if (r.holidays && r.time_when !== 'custom') condition_data.holidays = r.holidays
  } else if (r.condition_type === 'callerid') {
    condition_data = { match: r.caller_match }
    if (r.caller_match === 'numbers') condition_data.numbers = r.numbers.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean)
    if (r.caller_match === 'prefix') condition_data.prefix = r.prefix.trim()
    if (r.negate) condition_data.negate = true
  }
  let action_data = {}
  if (r.action_type === 'ring') {
    action_data = { device_ids: r.device_ids.map(Number), timeout: Number(r.ring_timeout) || 30 }
    if (r.ring_owner) action_data.owner = true
  }
  if (r.action_type === 'forward') action_data = { number: r.forward_number.trim() }
  if (r.action_type === 'voicemail' && r.greeting.trim()) action_data = { greeting: r.greeting.trim() }
  if (r.action_type === 'announcement') {
    action_data = { text: r.announcement }
    if (r.audio.trim()) action_data.audio = r.audio.trim()
  }
  if (r.action_type === 'reject') action_data = { reason: r.reject_reason }
  if (r.action_type === 'menu') action_data = menuToData(r.menu)
  return {
    name: r.name.trim(),
    did_id: r.did_id ? Number(r.did_id) : null,
    enabled: !!r.enabled,
    condition_type: r.condition_type,
    condition_data,
    action_type: r.action_type,
    action_data,
  }
}

/** API row -> builder state. */
export function routeToRule(row) {
  const r = blankRule()
  const c = parse(row.condition_data)
  const a = parse(row.action_data)
  Object.assign(r, { id: row.id, name: row.name ?? '', did_id: row.did_id ? String(row.did_id) : '', enabled: row.enabled !== false, condition_type: row.condition_type, action_type: row.action_type })
  if (row.condition_type === 'time') {
    r.time_when = c.when ?? 'business_hours'
    if (c.days) r.days = [...c.days]
    if (c.start) r.start = c.start
    if (c.end) r.end = c.end
    r.hours = c.hours ?? null
    r.holidays = c.holidays ?? null
  } else if (row.condition_type === 'callerid') {
    r.caller_match = c.match ?? 'vip'
    r.numbers = (c.numbers ?? []).join(', ')
    r.prefix = c.prefix ?? ''
    r.negate = !!c.negate
  }
  r.device_ids = (a.device_ids ?? []).map(String)
  r.ring_owner = !!a.owner
  r.ring_timeout = a.timeout ?? 30
  r.forward_number = a.number ?? ''
  r.announcement = a.text ?? ''
  r.audio = a.audio ?? ''
  r.greeting = a.greeting ?? ''
  r.reject_reason = a.reason ?? 'busy'
  r.greeting = row.action_type === 'menu' ? '' : r.greeting
  if (row.action_type === 'menu') r.menu = dataToMenu(a)
  return r
}

/** One line describing a rule, e.g. "Weekends → Send to voicemail". */
export function describeRule(row) {
  const r = routeToRule(row)
  let cond = 'Always'
  if (r.condition_type === 'time') {
    cond = r.time_when === 'custom' ? `${r.days.join(', ')} ${r.start}–${r.end}` : TIME_PRESETS.find((p) => p.value === r.time_when)?.label ?? r.time_when
  } else if (r.condition_type === 'callerid') {
    cond = r.caller_match === 'numbers' ? `Caller is ${r.numbers}` : r.caller_match === 'prefix' ? `Caller starts with ${r.prefix}` : CALLER_MATCHES.find((m) => m.value === r.caller_match)?.label ?? r.caller_match
    if (r.negate) cond = `Not: ${cond}`
  }
  let act = ACTIONS.find((x) => x.value === r.action_type)?.label ?? r.action_type
  if (r.action_type === 'forward') act = `Forward to ${r.forward_number}`
  if (r.action_type === 'menu') act = `Menu: ${r.menu.options.map((o) => o.key).join(', ')}`
  if (r.action_type === 'reject') act = `Reject (${REJECT_REASONS.find((x) => x.value === r.reject_reason)?.label.toLowerCase() ?? r.reject_reason})`
  return `${cond} → ${act}`
}

/** Moves item `from` to index `to`, returning a new array. */
export function move(list, from, to) {
  const out = [...list]
  if (from < 0 || from >= out.length || to < 0 || to >= out.length) return out
  const [x] = out.splice(from, 1)
  out.splice(to, 0, x)
  return out
}

function parse(v) {
  if (!v) return {}
  if (typeof v === 'string') { try { return JSON.parse(v) } catch { return {} } }
  return v
}

/** The weekly hours setting ({"mon":["09:00","17:00"],...}) <-> editor rows. */
export function hoursToRows(hours) {
  const h = parse(hours)
  return DAYS.map((d) => {
    const spec = h[d]
    const pair = Array.isArray(spec?.[0]) ? spec[0] : spec
    return { day: d, open: !!pair, start: pair?.[0] ?? '09:00', end: pair?.[1] ?? '17:00' }
  })
}
export function rowsToHours(rows) {
  const out = {}
  for (const r of rows) if (r.open) out[r.day] = [r.start, r.end]
  return out
}
