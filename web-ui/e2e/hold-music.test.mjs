// The hold music panel on the System screen in a real Chromium against the
// real daemons: GoSIP's melody at first, a file that is not a WAV refused
// beside the input, a real WAV taken (and stored where mediad reads it),
// and back to the melody, each checked through the API as well.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { startSystem, launchBrowser, screenshot } from './harness.mjs'
import { ADMIN, setupSystem, loginInBrowser, assertAccessible } from './ui.mjs'

let sys, browser, api, page
before(async () => {
  sys = await startSystem()
  browser = await launchBrowser()
  api = await setupSystem(sys)
  page = await browser.newPage()
  await loginInBrowser(page, sys.base, ADMIN.email, ADMIN.password)
})
after(async () => { await browser?.close(); await sys?.stop() })

/** `seconds` of a 440 Hz tone as a WAV: 8 kHz, mono, 16-bit PCM (44-byte header + samples). */
function wav8k(seconds) {
  const rate = 8000
  const n = rate * seconds
  const b = Buffer.alloc(44 + n * 2)
  b.write('RIFF', 0); b.writeUInt32LE(36 + n * 2, 4); b.write('WAVE', 8)
  b.write('fmt ', 12); b.writeUInt32LE(16, 16); b.writeUInt16LE(1, 20); b.writeUInt16LE(1, 22)
  b.writeUInt32LE(rate, 24); b.writeUInt32LE(rate * 2, 28); b.writeUInt16LE(2, 32); b.writeUInt16LE(16, 34)
  b.write('data', 36); b.writeUInt32LE(n * 2, 40)
  for (let i = 0; i < n; i++) b.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / rate)), 44 + i * 2)
  return b
}

/** What the API says plays, asked from the page with the browser's own session. */
const fromPage = () => page.evaluate(async () => (await fetch('/api/system/hold-music', { headers: { 'X-Requested-With': 'gosip' } })).json())
const now = () => page.locator('[data-hold-music-now]')
const stored = () => join(sys.data, 'prompts', 'hold-music.wav')

test('an admin replaces the hold music with a WAV, a bad file is refused beside the input, and the melody comes back', async () => {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'System', exact: true }).click()
  await page.getByRole('heading', { name: 'System settings' }).waitFor()
  const panel = page.getByRole('region', { name: 'Hold music' })
  await now().waitFor()
  assert.equal((await now().innerText()).trim(), "Callers on hold hear: GoSIP's own melody")
  assert.equal(await panel.getByRole('button', { name: "Use GoSIP's melody" }).count(), 0, 'nothing to go back from')
  assert.match(await panel.locator('#hold-music-hint').innerText(), /WAV, 16-bit PCM, mono or stereo, up to 5 MB/)
  assert.deepEqual(await fromPage(), { custom: false, seconds: 0, sample_rate: 0, channels: 0 })

  // A text file: the server's reason shows beside the input, not as JSON, and nothing changes.
  const notes = join(sys.dir, 'notes.txt')
  writeFileSync(notes, 'These are my notes, not music.\n')
  const refused = page.waitForResponse((r) => r.url().endsWith('/api/system/hold-music') && r.request().method() === 'PUT')
  await panel.getByLabel('Play your own recording instead').setInputFiles(notes)
  assert.equal((await refused).status(), 422)
  const err = page.locator('#hold-music-file-err')
  await err.waitFor()
  assert.match(await err.innerText(), /^must be a WAV file of 16-bit PCM audio/)
  assert.equal(await err.getAttribute('data-field-error'), '')
  assert.match(await page.locator('#hold-music-file').getAttribute('aria-describedby'), /hold-music-file-err/)
  const text = await panel.innerText()
  assert.ok(!text.includes('VALIDATION_ERROR') && !text.includes('{'), `no raw JSON on the page: ${text}`)
  assert.match(await now().innerText(), /GoSIP's own melody/)
  assert.equal((await api.get('/system/hold-music')).custom, false, 'the refused file changed nothing')
  assert.equal(existsSync(stored()), false)
  await screenshot(page, 'system-hold-music-refused')
  await assertAccessible(page, 'hold music with a refused file')

  // A real WAV: 2 s of 8 kHz mono 16-bit PCM.
  const tone = wav8k(2)
  await panel.getByLabel('Play your own recording instead').setInputFiles({ name: 'hold.wav', mimeType: 'audio/wav', buffer: tone })
  await page.waitForFunction(() => document.querySelector('[data-hold-music-now]')?.textContent.includes('Your recording'))
  assert.equal((await now().innerText()).trim(), 'Callers on hold hear: Your recording: 2 s, 8000 Hz, mono')
  assert.equal(await err.count(), 0, 'the error goes with a good file')
  assert.match(await panel.locator('[data-hold-music-status]').innerText(), /next caller put on hold hears your recording/)
  const up = await fromPage()
  assert.equal(up.custom, true)
  assert.ok(Math.abs(up.seconds - 2) < 0.01, `about 2 s (${up.seconds})`)
  assert.deepEqual([up.sample_rate, up.channels], [8000, 1])
  assert.deepEqual(readFileSync(stored()), tone, 'stored where mediad reads it')
  await screenshot(page, 'system-hold-music-custom')
  await assertAccessible(page, 'hold music with a recording')

  // The page shows what the server holds after a reload too.
  await page.reload()
  await page.waitForFunction(() => document.querySelector('[data-hold-music-now]')?.textContent.includes('Your recording'))

  // Back to the melody.
  await panel.getByRole('button', { name: "Use GoSIP's melody" }).click()
  await page.waitForFunction(() => document.querySelector('[data-hold-music-now]')?.textContent.includes("GoSIP's own melody"))
  assert.equal(await panel.getByRole('button', { name: "Use GoSIP's melody" }).count(), 0)
  assert.match(await panel.locator('[data-hold-music-status]').innerText(), /Back to GoSIP's own melody/)
  assert.deepEqual(await fromPage(), { custom: false, seconds: 0, sample_rate: 0, channels: 0 })
  assert.equal((await api.get('/system/hold-music')).custom, false)
  assert.equal(existsSync(stored()), false, 'the upload is gone')
  await screenshot(page, 'system-hold-music-builtin')
})

test('the hold music API is for admins only', async () => {
  await api.post('/users', { email: 'carol@gosip.test', name: 'Carol', password: 'Carol-pass-word-1', role: 'user' })
  const { apiClient } = await import('./ui.mjs')
  const carol = apiClient(sys.base)
  await carol.login('carol@gosip.test', 'Carol-pass-word-1')
  await assert.rejects(carol.get('/system/hold-music'), (e) => e.status === 403)
  await assert.rejects(carol.del('/system/hold-music'), (e) => e.status === 403)
})

test('the System screen shows the SIP-over-TLS port and the fingerprint of the certificate sipd made', async () => {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'System', exact: true }).click()
  const panel = page.getByRole('region', { name: 'SIP over TLS' })
  const sha = panel.locator('[data-sip-tls-sha256]')
  await sha.waitFor()
  // The certificate sipd made on first start, read from disk and hashed here.
  const pem = readFileSync(join(sys.data, 'tls', 'sip.crt'), 'utf8')
  const der = Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64')
  const { createHash } = await import('node:crypto')
  const want = createHash('sha256').update(der).digest('hex').toUpperCase().match(/../g).join(':')
  assert.equal((await sha.innerText()).trim(), want)
  assert.equal((await panel.locator('[data-sip-tls-port]').innerText()).trim(), String(sys.ports.sips))
  assert.match(await panel.locator('[data-sip-tls-kind]').innerText(), /self-signed/)
})
