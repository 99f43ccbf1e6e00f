// A fetch stand-in for component tests: answers by "METHOD /path" (query
// string ignored) and records every request.
import { vi } from 'vitest'

export function mockApi(table) {
  const calls = []
  const spy = vi.spyOn(globalThis, 'fetch').mockImplementation(async (input, init = {}) => {
    const u = new URL(String(input), 'http://localhost')
    const method = init.method || 'GET'
    let body = init.body
    if (typeof body === 'string') { try { body = JSON.parse(body) } catch { /* raw */ } }
    calls.push({ method, path: u.pathname, query: Object.fromEntries(u.searchParams), body, headers: init.headers })
    const h = table[`${method} ${u.pathname}`]
    if (h === undefined) return new Response(JSON.stringify({ error: { code: 'NOT_FOUND', message: 'Not found', details: [] } }), { status: 404 })
    const r = typeof h === 'function' ? await h({ body, query: Object.fromEntries(u.searchParams) }) : h
    const status = r?.__status ?? 200
    const payload = r?.__status ? r.body : r
    return new Response(payload === undefined ? '' : JSON.stringify(payload), { status })
  })
  return { calls, spy }
}

export function apiError(status, code, message, details = []) {
  return { __status: status, body: { error: { code, message, details } } }
}
