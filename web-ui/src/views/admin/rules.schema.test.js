// Every rule the builder can make is exactly the RouteBody schema of
// /api/openapi.json (route-schema.json, which webd's tests keep equal to
// the generated document). A field the server would refuse or ignore fails here.
import { describe, it, expect } from 'vitest'
import doc from './route-schema.json'
import { blankRule, blankMenu, blankChoice, ruleToPayload, routeToRule, CALLER_MATCHES, TIME_PRESETS, ACTIONS, REJECT_REASONS } from './rules.js'

/** Errors of `v` against `s` (the JSON Schema subset the document uses). */
function check(v, s, path = '$') {
  if (s.$ref) return check(v, doc.schemas[s.$ref.replace('#/components/schemas/', '')], path)
  const errs = []
  if (s.allOf) for (const x of s.allOf) errs.push(...check(v, x, path))
  if (s.oneOf) {
    const ok = s.oneOf.filter((x) => check(v, x, path).length === 0).length
    if (ok !== 1) errs.push(`${path}: matches ${ok} of oneOf`)
  }
  if (s.type) {
    const types = [].concat(s.type)
    const t = v === null ? 'null' : Array.isArray(v) ? 'array' : Number.isInteger(v) ? 'integer' : typeof v
    if (!types.includes(t) && !(t === 'integer' && types.includes('number'))) return [...errs, `${path}: ${t} is not ${types}`]
  }
  if (s.enum && !s.enum.includes(v)) errs.push(`${path}: ${JSON.stringify(v)} not in ${s.enum}`)
  if (typeof v === 'number') {
    if (s.minimum !== undefined && v < s.minimum) errs.push(`${path}: below ${s.minimum}`)
    if (s.maximum !== undefined && v > s.maximum) errs.push(`${path}: above ${s.maximum}`)
  }
  if (Array.isArray(v) && s.items) v.forEach((x, i) => errs.push(...check(x, s.items, `${path}[${i}]`)))
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    for (const k of s.required ?? []) if (!(k in v)) errs.push(`${path}.${k}: required`)
    for (const [k, x] of Object.entries(v)) {
      if (s.properties?.[k]) errs.push(...check(x, s.properties[k], `${path}.${k}`))
      else if (s.additionalProperties === false) errs.push(`${path}.${k}: not allowed`)
    }
  }
  return errs
}
const valid = (body) => check(body, { $ref: `#/components/schemas/${doc.root}` })

describe('rule payloads and the OpenAPI schema', () => {
  const base = { ...blankRule(), name: 'R', device_ids: ['2'], forward_number: '+15559990000', announcement: 'Closed', numbers: '+15551000001', prefix: '+1900' }
  const conditions = [
    ...TIME_PRESETS.map((p) => ({ condition_type: 'time', time_when: p.value })),
    ...CALLER_MATCHES.map((m) => ({ condition_type: 'callerid', caller_match: m.value })),
    { condition_type: 'callerid', caller_match: 'known', negate: true },
    { condition_type: 'default' },
  ]
  const actions = [
    ...ACTIONS.map((a) => ({ action_type: a.value })),
    { action_type: 'ring', device_ids: [], ring_owner: true },
    { action_type: 'ring', ring_owner: true },
    { action_type: 'voicemail', greeting: 'Leave it here' },
    { action_type: 'announcement', audio: 'https://example.com/a.mp3' },
    ...REJECT_REASONS.map((r) => ({ action_type: 'reject', reject_reason: r.value })),
  ]

  it('accepts every condition and action the builder offers', () => {
    for (const c of conditions) {
      for (const a of actions) {
        const body = ruleToPayload({ ...base, ...c, ...a })
        expect(valid(body), JSON.stringify(body)).toEqual([])
      }
    }
  })

  it('writes a ring of device 2 as device_ids, and an anonymous caller as match', () => {
    const p = ruleToPayload({ ...base, condition_type: 'callerid', caller_match: 'anonymous', action_type: 'ring', device_ids: ['2'] })
    expect(p.condition_data).toEqual({ match: 'anonymous' })
    expect(p.action_data).toEqual({ device_ids: [2], timeout: 30 })
  })

  it('refuses the shapes that used to disagree (the check can fail)', () => {
    const ok = ruleToPayload(base)
    expect(valid({ ...ok, action_data: { devices: [2] } })).not.toEqual([])
    expect(valid({ ...ok, condition_type: 'callerid', condition_data: { match: 'vip', list: 'vip' } })).not.toEqual([])
    expect(valid({ ...ok, condition_type: 'callerid', condition_data: { list: 'vip' } })).not.toEqual([])
    expect(valid({ ...ok, action_type: 'reject', action_data: { reason: 'maybe' } })).not.toEqual([])
    expect(valid({ ...ok, action_data: { device_ids: [2], timeout: 500 } })).not.toEqual([])
  })

  it('keeps what the builder does not show when an API-made rule is edited', () => {
    const row = { id: 4, name: 'Hols', condition_type: 'time', condition_data: { when: 'after_hours', hours: { mon: ['08:00', '12:00'] }, holidays: ['2026-12-25'] }, action_type: 'announcement', action_data: { text: 'Closed', audio: 'https://example.com/a.mp3' } }
    const p = ruleToPayload(routeToRule(row))
    expect(p.condition_data).toEqual(row.condition_data)
    expect(p.action_data).toEqual(row.action_data)
    expect(valid(p)).toEqual([])
  })

  it('writes a two-level menu as the API takes it and reads it back unchanged', () => {
    const menu = blankMenu()
    menu.greeting = 'Sales 1, help 2'
    menu.timeout = 4
    menu.options = [
      { ...blankChoice('1'), action_type: 'announcement', text: 'Closed' },
      { ...blankChoice('2'), action_type: 'menu', menu: { ...blankMenu(), greeting: 'Billing 1, cell 2', options: [
        { ...blankChoice('1'), action_type: 'voicemail', greeting: 'Billing here' },
        { ...blankChoice('2'), action_type: 'forward', number: '(555) 000-9999' },
        { ...blankChoice('3'), action_type: 'ring', device_ids: ['2'], ring_owner: false },
      ] } },
    ]
    menu.no_input = { ...blankChoice(''), action_type: 'announcement', text: 'Bye' }
    const p = ruleToPayload({ ...base, action_type: 'menu', menu })
    expect(valid(p), JSON.stringify(p)).toEqual([])
    expect(p.action_data).toEqual({
      greeting: 'Sales 1, help 2',
      timeout: 4,
      options: {
        1: { action_type: 'announcement', action_data: { text: 'Closed' } },
        2: { action_type: 'menu', action_data: { greeting: 'Billing 1, cell 2', options: {
          1: { action_type: 'voicemail', action_data: { greeting: 'Billing here' } },
          2: { action_type: 'forward', action_data: { number: '(555) 000-9999' } },
          3: { action_type: 'ring', action_data: { device_ids: [2] } },
        } } },
      },
      no_input: { action_type: 'announcement', action_data: { text: 'Bye' } },
    })
    const again = ruleToPayload(routeToRule({ id: 1, ...p }))
    expect(again.action_data).toEqual(p.action_data)
  })
})
