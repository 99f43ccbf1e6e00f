import { describe, it, expect, afterEach, vi } from 'vitest'
import { ENDPOINTS, url, call, href } from './client.js'
import { ApiError, query } from './api.js'
import { mockApi, apiError } from './test/mockApi.js'

afterEach(() => vi.restoreAllMocks())

describe('client', () => {
  it('fills path parameters and query strings', () => {
    expect(url('device', { id: 7 })).toBe('/devices/7')
    expect(url('cdrs', {}, { page: 2, direction: '', number: '+1555' })).toBe('/cdrs?page=2&number=%2B1555')
    expect(href('voicemailAudio', { id: 3 })).toBe('/api/voicemails/3/audio')
    expect(query({})).toBe('')
  })
  it('uses only OpenAPI-style paths under the API base', () => {
    for (const [name, [method, path]] of Object.entries(ENDPOINTS)) {
      expect(['GET', 'POST', 'PUT', 'DELETE', 'PATCH'], name).toContain(method)
      expect(path, name).toMatch(/^\/[a-z]/)
      expect(path, name).not.toMatch(/:\w/)
    }
  })
  it('sends the CSRF header and turns error JSON into field errors', async () => {
    const { calls } = mockApi({ 'POST /api/devices': apiError(422, 'VALIDATION_ERROR', 'Some fields are invalid', [{ field: 'name', message: 'Too long' }]) })
    const e = await call('deviceCreate', { body: { name: 'x'.repeat(200) } }).catch((x) => x)
    expect(e).toBeInstanceOf(ApiError)
    expect(e.status).toBe(422)
    expect(e.fieldErrors()).toEqual({ name: 'Too long' })
    expect(calls[0].headers['X-Requested-With']).toBe('gosip')
  })
})
