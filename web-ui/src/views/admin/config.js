// /api/system/config answers either {key: value} or [{key, value, secret, help}]
// (or {settings: [...]}); this turns both into {key: value} strings.
export function configValues(r) {
  const list = Array.isArray(r) ? r : Array.isArray(r?.settings) ? r.settings : Array.isArray(r?.items) ? r.items : null
  if (list) return Object.fromEntries(list.map((s) => [s.key ?? s.name, s.value == null ? '' : String(s.value)]))
  const out = {}
  for (const [k, v] of Object.entries(r?.settings ?? r ?? {})) out[k] = v && typeof v === 'object' && 'value' in v ? String(v.value ?? '') : v == null ? '' : String(v)
  return out
}
export function configMeta(r) {
  const list = Array.isArray(r) ? r : Array.isArray(r?.settings) ? r.settings : Array.isArray(r?.items) ? r.items : []
  return Object.fromEntries(list.map((s) => [s.key ?? s.name, s]))
}
