import { describe, it, expect, afterEach, vi } from 'vitest'
import { mount, flushPromises } from '@vue/test-utils'
import { mockApi, apiError } from '../../test/mockApi.js'
import HoldMusicPanel from './HoldMusicPanel.vue'

afterEach(() => vi.restoreAllMocks())

const BUILTIN = { custom: false, seconds: 0, sample_rate: 0, channels: 0 }
const NOT_PCM = 'must be a WAV file of 16-bit PCM audio (MP3 and other formats: export or convert it to WAV, 16-bit PCM, and try again)'

async function choose(w, name) {
  const input = w.find('#hold-music-file')
  Object.defineProperty(input.element, 'files', { value: [new File(['x'], name, { type: 'audio/wav' })], configurable: true })
  await input.trigger('change')
  await flushPromises()
}

describe('HoldMusicPanel', () => {
  it('uploads the chosen file as multipart, names a bad one beside the input, and goes back to the melody', async () => {
    let n = 0
    const { calls } = mockApi({
      'GET /api/system/hold-music': BUILTIN,
      'PUT /api/system/hold-music': () => (++n === 1
        ? apiError(422, 'VALIDATION_ERROR', 'Some fields are invalid', [{ field: 'file', message: NOT_PCM }])
        : { custom: true, seconds: 12.5, sample_rate: 44100, channels: 2 }),
      'DELETE /api/system/hold-music': BUILTIN,
    })
    const w = mount(HoldMusicPanel)
    await flushPromises()
    expect(w.find('[data-hold-music-now]').text()).toBe("Callers on hold hear: GoSIP's own melody")
    expect(w.find('#hold-music-file').attributes('accept')).toBe('.wav,audio/wav')
    expect(w.find('#hold-music-hint').text()).toContain('16-bit PCM, mono or stereo, up to 5 MB')
    expect(w.findAll('button').some((b) => b.text() === "Use GoSIP's melody")).toBe(false)

    await choose(w, 'song.mp3')
    const put = calls.find((c) => c.method === 'PUT')
    expect(put.body).toBeInstanceOf(FormData)
    expect(put.body.get('file').name).toBe('song.mp3')
    expect(w.find('#hold-music-file-err').text()).toBe(NOT_PCM)
    expect(w.find('#hold-music-file').attributes('aria-describedby')).toBe('hold-music-hint hold-music-file-err')
    expect(w.text()).not.toContain('VALIDATION_ERROR')
    expect(w.find('[data-hold-music-now]').text()).toContain("GoSIP's own melody")

    await choose(w, 'hold.wav')
    expect(w.find('#hold-music-file-err').exists()).toBe(false)
    expect(w.find('[data-hold-music-now]').text()).toBe('Callers on hold hear: Your recording: 12.5 s, 44100 Hz, stereo')

    const reset = w.findAll('button').find((b) => b.text() === "Use GoSIP's melody")
    await reset.trigger('click')
    await flushPromises()
    expect(calls.some((c) => c.method === 'DELETE' && c.path === '/api/system/hold-music')).toBe(true)
    expect(w.find('[data-hold-music-now]').text()).toBe("Callers on hold hear: GoSIP's own melody")
    expect(w.find('[data-hold-music-status]').text()).toContain("Back to GoSIP's own melody")
  })
  it('writes long recordings in minutes and mono as mono', async () => {
    mockApi({ 'GET /api/system/hold-music': { custom: true, seconds: 200.04, sample_rate: 8000, channels: 1 } })
    const w = mount(HoldMusicPanel)
    await flushPromises()
    expect(w.find('[data-hold-music-now]').text()).toBe('Callers on hold hear: Your recording: 3 min 20 s, 8000 Hz, mono')
  })
})
