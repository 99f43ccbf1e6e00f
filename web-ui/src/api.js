// The API client: JSON in and out, the spec's error JSON turned into an
// ApiError with the field messages. Every path the UI calls is listed in
// ENDPOINTS (client.js) so a test can check it against /api/openapi.json.
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message || `HTTP ${status}`)
    this.status = status
    this.code = body?.error?.code
    this.details = body?.error?.details || []
  }
  /** @returns {Record<string,string>} field name -> message */
  fieldErrors() {
    return Object.fromEntries(this.details.map((d) => [d.field, d.message]))
  }
}

let onUnauthorized = () => {}
/** Called with no arguments when a request answers 401 (the session ended). */
export function setUnauthorizedHandler(fn) { onUnauthorized = fn }

/** Builds `?a=1&b=2` from an object, leaving out empty values. */
export function query(params = {}) {
  const q = new URLSearchParams()
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '') continue
    q.set(k, String(v))
  }
  const s = q.toString()
  return s ? `?${s}` : ''
}

export async function api(path, { method = 'GET', body, headers = {}, raw = false } = {}) {
  const init = { method, headers: { 'X-Requested-With': 'gosip', ...headers }, credentials: 'same-origin' }
  if (body !== undefined && !(body instanceof FormData) && !(body instanceof Blob)) {
    init.headers['Content-Type'] = 'application/json'
    init.body = JSON.stringify(body)
  } else if (body) {
    init.body = body
  }
  const res = await fetch(`/api${path}`, init)
  if (raw && res.ok) return res
  const text = await res.text()
  let data = null
  try { data = text ? JSON.parse(text) : null } catch { data = null }
  if (!res.ok) {
    if (res.status === 401 && !path.startsWith('/auth/')) onUnauthorized()
    throw new ApiError(res.status, data)
  }
  return data
}
