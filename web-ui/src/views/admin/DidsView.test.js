import { describe, it, expect, afterEach, vi, beforeEach } from 'vitest'
import { mount, flushPromises } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import { createRouter, createMemoryHistory } from 'vue-router'
import { mockApi } from '../../test/mockApi.js'
import DidsView from './DidsView.vue'

beforeEach(() => setActivePinia(createPinia()))
afterEach(() => vi.restoreAllMocks())

describe('DidsView', () => {
  it('says what an emergency address is and links to the status that lists numbers without one', async () => {
    mockApi({
      'GET /api/dids': { items: [{ id: 1, number: '+15551230000', name: 'Main', voice_enabled: true, sms_enabled: true }], total: 1 },
      'GET /api/users': { items: [], total: 0 },
      'GET /api/auto-replies': { items: [], total: 0 },
    })
    const router = createRouter({ history: createMemoryHistory(), routes: [
      { path: '/admin/routing', name: 'routing', component: { template: '<p>routing</p>' } },
      { path: '/:p(.*)*', component: { template: '<p>other</p>' } },
    ] })
    router.push('/admin/dids')
    await router.isReady()
    const w = mount(DidsView, { global: { plugins: [router] } })
    await flushPromises()
    expect(w.find('table').text()).toContain('(555) 123-0000')
    const note = w.find('[data-emergency-note]')
    expect(note.text()).toContain('An emergency address is')
    expect(note.text()).toContain('911')
    expect(note.text()).toContain('Twilio console')
    // One sentence.
    expect(note.text().trim().split(/[.!?](\s|$)/).filter((s) => s.trim()).length).toBe(1)
    await note.find('a').trigger('click')
    await flushPromises()
    expect(router.currentRoute.value.path).toBe('/status')
  })
})
