import { describe, it, expect, afterEach, vi, beforeEach } from 'vitest'
import { mount, flushPromises } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import { mockApi, apiError } from '../../test/mockApi.js'
import AutoReplies from './AutoReplies.vue'
import UsersView from './UsersView.vue'
import BlocklistEditor from './BlocklistEditor.vue'

beforeEach(() => setActivePinia(createPinia()))
afterEach(() => vi.restoreAllMocks())

describe('AutoReplies', () => {
  it('sends keyword rules as a keywords list and toggles with a partial update', async () => {
    const { calls } = mockApi({
      'GET /api/auto-replies': { items: [{ id: 3, did_id: null, trigger_type: 'dnd', trigger_data: {}, reply_text: 'Busy', enabled: true }], total: 1 },
      'POST /api/auto-replies': { id: 4 },
      'PUT /api/auto-replies/3': { id: 3 },
    })
    const w = mount(AutoReplies, { props: { dids: [{ id: 1, number: '+15551230000' }] } })
    await flushPromises()
    await w.find('#f-ar-trigger').setValue('keyword')
    await w.find('#f-ar-keyword').setValue('hours, price ,')
    await w.find('#f-ar-text').setValue('We open at 9.')
    await w.find('form').trigger('submit')
    await flushPromises()
    expect(calls.find((c) => c.method === 'POST').body).toEqual({ did_id: null, trigger_type: 'keyword', trigger_data: { keywords: ['hours', 'price'] }, reply_text: 'We open at 9.', enabled: true })
    await w.find('#f-ar-en-3').setValue(false)
    await flushPromises()
    expect(calls.find((c) => c.method === 'PUT').body).toEqual({ enabled: false })
  })
})

describe('UsersView', () => {
  it('edits email, name and role only, and resets a password with its error beside the field', async () => {
    const { calls } = mockApi({
      'GET /api/users': { items: [{ id: 2, email: 'bob@x.test', name: 'Bob', role: 'user' }], total: 1 },
      'PUT /api/users/2': { id: 2 },
      'POST /api/users/2/password': ({ body }) => (body.password.length < 8 ? apiError(422, 'VALIDATION_ERROR', 'Some fields are invalid', [{ field: 'password', message: 'must be at least 8 characters' }]) : { ok: true }),
    })
    const w = mount(UsersView)
    await flushPromises()
    await w.find('button[aria-label="Edit bob@x.test"]').trigger('click')
    await w.find('#f-user-role').setValue('admin')
    await w.find('form').trigger('submit')
    await flushPromises()
    expect(calls.find((c) => c.method === 'PUT').body).toEqual({ email: 'bob@x.test', name: 'Bob', role: 'admin' })
    await w.find('button[aria-label="Reset password of bob@x.test"]').trigger('click')
    await w.find('#f-reset-password').setValue('short')
    await w.findAll('form')[1].trigger('submit')
    await flushPromises()
    expect(w.find('#f-reset-password-err').text()).toBe('must be at least 8 characters')
    await w.find('#f-reset-password').setValue('long-enough-1')
    await w.findAll('form')[1].trigger('submit')
    await flushPromises()
    expect(w.text()).toContain('Password of bob@x.test changed')
  })
  it('offers Unlock only for a locked account and unlocks it', async () => {
    let locked = '2030-01-01T10:15:00.000Z'
    const { calls } = mockApi({
      'GET /api/users': () => ({ items: [{ id: 2, email: 'bob@x.test', name: 'Bob', role: 'user', locked_until: locked }, { id: 3, email: 'eve@x.test', name: 'Eve', role: 'user', locked_until: null }], total: 2 }),
      'POST /api/users/2/unlock': () => { locked = null; return { id: 2, locked_until: null } },
    })
    const w = mount(UsersView)
    await flushPromises()
    expect(w.find('button[aria-label="Unlock eve@x.test"]').exists()).toBe(false)
    expect(w.find('[data-locked]').text()).toContain('locked until')
    await w.find('button[aria-label="Unlock bob@x.test"]').trigger('click')
    await flushPromises()
    expect(calls.some((c) => c.method === 'POST' && c.path === '/api/users/2/unlock')).toBe(true)
    expect(w.text()).toContain('bob@x.test is unlocked')
    expect(w.find('button[aria-label="Unlock bob@x.test"]').exists()).toBe(false)
  })
})

describe('BlocklistEditor', () => {
  it('shows the API error for a bad pattern beside the pattern field', async () => {
    mockApi({
      'GET /api/blocklist': { items: [], total: 0 },
      'POST /api/blocklist': apiError(422, 'VALIDATION_ERROR', 'Some fields are invalid', [{ field: 'pattern', message: 'is not a valid regular expression' }]),
    })
    const w = mount(BlocklistEditor)
    await flushPromises()
    expect(w.find('[data-empty]').text()).toBe('Nobody is blocked.')
    await w.find('#f-bl-pattern').setValue('+1(')
    await w.find('#f-bl-type').setValue('regex')
    await w.find('form').trigger('submit')
    await flushPromises()
    expect(w.find('#f-bl-pattern-err').text()).toBe('is not a valid regular expression')
  })
})
