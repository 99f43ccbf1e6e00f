// The phone in the browser, end to end: headless Chromium with a fake
// microphone playing 440 Hz logs in, turns its phone on, and calls a real
// baresip desk phone that answers by itself playing 1000 Hz. Each side must
// hear the other's tone: the page analyses what it receives with WebAudio,
// baresip's own recording of what it heard is checked here. Then baresip
// calls the browser's extension and the toast answers it on another page.
// A microphone the browser refuses and a lost connection give clear
// messages, and no call is left behind in sipd.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { startSystem, launchBrowser, screenshot } from './harness.mjs'
import { ADMIN, STANDIN, setupSystem, loginInBrowser, startBaresip, startStandin, toneWav, wavPeak, pcmuPeak, browserHears, assertBrowserHears, browserHangsUpHaving, deskHangsUpHaving } from './ui.mjs'

const BROWSER_HZ = 440
const PHONE_HZ = 1000
let sys, api, browser, page, desk

/** Channel `ch` of a 16-bit stereo WAV as a mono WAV. */
function stereoChannel(wav, ch) {
  let off = 12
  while (off < wav.length - 8 && wav.toString('ascii', off, off + 4) !== 'data') off += 8 + wav.readUInt32LE(off + 4)
  const frames = Math.floor((wav.length - off - 8) / 4)
  const out = Buffer.alloc(44 + frames * 2)
  wav.copy(out, 0, 0, 44)
  out.writeUInt16LE(1, 22)
  for (let i = 0; i < frames; i++) out.writeInt16LE(wav.readInt16LE(off + 8 + i * 4 + ch * 2), 44 + i * 2)
  out.write('data', 36)
  out.writeUInt32LE(frames * 2, 40)
  return out
}

async function activeCalls() {
  const r = await api.get('/calls')
  return (r.items ?? r.calls ?? r).length
}

before(async () => {
  sys = await startSystem()
  api = await setupSystem(sys, { did: null })
  const mic = join(sys.dir, 'browser-mic.wav')
  writeFileSync(mic, toneWav(BROWSER_HZ, 30, 48000))
  // Everything here is on 127.0.0.1, which Chromium leaves out of ICE unless told.
  browser = await launchBrowser(['--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream', '--allow-loopback-in-peer-connection',
    `--use-file-for-fake-audio-capture=${mic}`, '--autoplay-policy=no-user-gesture-required'])
  page = await browser.newPage()
  // PHONE_DEBUG=1 prints the page's console with JsSIP's own log.
  if (process.env.PHONE_DEBUG) {
    page.on('console', (m) => console.log(`page ${m.type()}: ${m.text()}`))
    await page.addInitScript(() => localStorage.setItem('debug', 'JsSIP:*'))
  }
  await loginInBrowser(page, sys.base, ADMIN.email, ADMIN.password)
})
after(async () => { desk?.stop(); await browser?.close(); await sys?.stop() })

test('the browser calls a desk phone and is called by it, and each hears the other', async () => {
  const d = await api.post('/devices', { name: 'Desk', extension: '201' })
  desk = await startBaresip(sys, { username: d.username, password: d.password, name: 'desk', hz: PHONE_HZ })
  await desk.event('REGISTER_OK')

  await page.locator('[data-phone-link]').click()
  await page.getByRole('switch', { name: /Use this browser as a phone/ }).click()
  await page.locator('[data-phone-status]', { hasText: 'Ready' }).waitFor({ timeout: 20000 })
  assert.equal(await page.locator('[data-phone-extension]').innerText(), '700')
  await screenshot(page, 'phone-ready')

  // The browser calls the desk phone, which answers by itself.
  await page.getByLabel('Number or extension').fill('201')
  await page.locator('[data-dial]').click()
  await page.locator('[data-call-timer]').waitFor({ timeout: 20000 })
  await desk.event('CALL_ESTABLISHED')
  await new Promise((r) => setTimeout(r, 1500))
  const heard = await browserHears(page)
  assert.ok(Math.abs(heard.hz - PHONE_HZ) < 30 && heard.db - heard.median > 30, `the browser hears the desk phone's ${PHONE_HZ} Hz: ${JSON.stringify(heard)}`)
  // By default the browser speaks G.711: nothing is transcoded.
  assert.match(await page.locator('[data-call-codec]').innerText(), /Audio: PCM[UA]/)
  assert.equal(await activeCalls(), 1)
  // Recorded like any call: the admin turns recording on mid-call.
  const live = await api.get('/calls')
  const callId = (live.items ?? live.calls ?? live)[0].call_id
  await api.put(`/calls/${encodeURIComponent(callId)}/recording`, { enabled: true })
  await new Promise((r) => setTimeout(r, 2500))
  await screenshot(page, 'phone-in-call')
  await page.locator('[data-call-hangup]').click()
  await desk.event('CALL_CLOSED')
  // The recording holds both sides: the browser (leg a, left) and the desk phone (right).
  let cdr
  for (let i = 0; i < 50 && !cdr; i++) {
    cdr = (await api.get('/cdrs')).items?.find((c) => c.recording_url)
    if (!cdr) await new Promise((r) => setTimeout(r, 100))
  }
  assert.ok(cdr, 'the browser call has a recording')
  const rec = Buffer.from(await (await fetch(`${sys.base}${cdr.recording_url}`, { headers: { Cookie: api.cookie } })).arrayBuffer())
  const [left, right] = [0, 1].map((ch) => wavPeak(stereoChannel(rec, ch)))
  assert.ok(Math.abs(left.hz - BROWSER_HZ) <= 10 && left.over > 100, `the recording's browser side is ${BROWSER_HZ} Hz: ${JSON.stringify(left)}`)
  assert.ok(Math.abs(right.hz - PHONE_HZ) <= 10 && right.over > 100, `the recording's desk side is ${PHONE_HZ} Hz: ${JSON.stringify(right)}`)
  const wav = desk.heard()
  assert.ok(wav, 'baresip recorded the call')
  const p = wavPeak(wav)
  assert.ok(Math.abs(p.hz - BROWSER_HZ) <= 10 && p.over > 100, `the desk phone hears the browser's ${BROWSER_HZ} Hz: ${JSON.stringify(p)}`)

  // The desk phone calls the browser while another page is open: the toast answers.
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Calls' }).click()
  desk.command('dial', `sip:700@127.0.0.1:${sys.ports.sip}`)
  await page.locator('[data-incoming-call]').waitFor({ timeout: 20000 })
  assert.match(await page.locator('[data-incoming-call]').innerText(), /Incoming call/)
  await screenshot(page, 'phone-incoming-toast')
  await page.locator('[data-toast-answer]').click()
  await page.locator('[data-call-timer]').waitFor({ timeout: 20000 })
  await desk.event('CALL_ESTABLISHED')
  await new Promise((r) => setTimeout(r, 1500))
  const back = await browserHears(page)
  assert.ok(Math.abs(back.hz - PHONE_HZ) < 30 && back.db - back.median > 30, `answered from the toast, the browser hears ${PHONE_HZ} Hz: ${JSON.stringify(back)}`)
  desk.command('hangup')
  await page.locator('[data-call-timer]').waitFor({ state: 'detached', timeout: 15000 })
  // Both legs are gone from sipd (and so from mediad, which sipd releases).
  for (let i = 0; i < 50 && (await activeCalls()) > 0; i++) await new Promise((r) => setTimeout(r, 100))
  assert.equal(await activeCalls(), 0, 'no call left behind')
})

test('with Opus chosen the browser speaks Opus both ways, mediad transcodes, and each side hears the other', async () => {
  await page.locator('[data-phone-link]').click()
  await page.getByLabel('Codec').selectOption('opus')
  try {
    // The browser calls the desk phone (G.711 only): its Opus is transcoded.
    await page.getByLabel('Number or extension').fill('201')
    await page.locator('[data-dial]').click()
    await page.locator('[data-call-timer]').waitFor({ timeout: 20000 })
    await desk.event('CALL_ESTABLISHED')
    await page.locator('[data-call-codec]', { hasText: 'Opus' }).waitFor({ timeout: 10000 })
    await new Promise((r) => setTimeout(r, 2500))
    await assertBrowserHears(page, PHONE_HZ, 'calling in Opus')
    await screenshot(page, 'phone-opus-call')
    await browserHangsUpHaving(page, desk, BROWSER_HZ, 'calling in Opus')

    // The desk phone calls the browser: it answers in Opus, and hears the desk.
    desk.command('dial', `sip:700@127.0.0.1:${sys.ports.sip}`)
    await page.locator('[data-call-answer]').click({ timeout: 20000 })
    await page.locator('[data-call-timer]').waitFor({ timeout: 20000 })
    await desk.event('CALL_ESTABLISHED')
    await page.locator('[data-call-codec]', { hasText: 'Opus' }).waitFor({ timeout: 10000 })
    await new Promise((r) => setTimeout(r, 2500))
    await assertBrowserHears(page, PHONE_HZ, 'answering in Opus')
    await deskHangsUpHaving(page, desk, BROWSER_HZ, 'answering in Opus')
  } finally {
    await page.getByLabel('Codec').selectOption('g711')
  }
  for (let i = 0; i < 50 && (await activeCalls()) > 0; i++) await new Promise((r) => setTimeout(r, 100))
  assert.equal(await activeCalls(), 0, 'no call left behind')
})

test('the browser transfers its call to another desk phone, which then talks with the first', async () => {
  const d2 = await api.post('/devices', { name: 'Desk 2', extension: '202' })
  const desk2 = await startBaresip(sys, { username: d2.username, password: d2.password, name: 'desk2', hz: 700 })
  try {
    await desk2.event('REGISTER_OK')
    await page.goto(`${sys.base}/phone`)
    await page.locator('[data-phone-status]', { hasText: 'Ready' }).waitFor({ timeout: 20000 })
    await page.getByLabel('Number or extension').fill('201')
    await page.locator('[data-dial]').click()
    await page.locator('[data-call-timer]').waitFor({ timeout: 20000 })
    await desk.event('CALL_ESTABLISHED')
    await page.getByLabel('Transfer to').fill('202')
    await page.locator('[data-call-transfer]').click()
    await desk2.event('CALL_ESTABLISHED')
    // The browser is out of the call; the two desk phones talk.
    await page.locator('[data-call-timer]').waitFor({ state: 'detached', timeout: 15000 })
    await new Promise((r) => setTimeout(r, 2500))
    desk2.command('hangup')
    await desk2.event('CALL_CLOSED')
    await desk.event('CALL_CLOSED')
    const p = wavPeak(desk2.heard())
    assert.ok(Math.abs(p.hz - PHONE_HZ) <= 10 && p.over > 100, `desk 2 hears desk 1's ${PHONE_HZ} Hz after the transfer: ${JSON.stringify(p)}`)
  } finally {
    desk2.stop()
  }
})

test('a call from the browser goes out through the Twilio trunk, and the far party and the browser hear each other', async (t) => {
  const trunk = { username: 'twilio-trunk', password: 'trunk-secret-pass' }
  const standin = await startStandin(sys, { trunk })
  if (!standin) return t.skip('twilio-standin is not built (cargo build --bins)')
  try {
    const { addr } = await standin.trunk()
    await api.put('/system/config', {
      'twilio.api_base': standin.base, 'twilio.account_sid': STANDIN.accountSid, 'twilio.auth_token': STANDIN.authToken,
      'system.public_url': sys.base, 'sip.public_address': '127.0.0.1',
      'twilio.trunk_username': trunk.username, 'twilio.trunk_password': trunk.password, 'twilio.termination_uri': addr,
    })
    // Calls go out from the account's number.
    await api.post('/dids', { number: STANDIN.number, name: 'Main line' })
    await page.goto(`${sys.base}/phone`)
    await page.locator('[data-phone-status]', { hasText: 'Ready' }).waitFor({ timeout: 20000 })
    await page.getByLabel('Number or extension').fill('+15557770000')
    await page.locator('[data-dial]').click()
    await page.locator('[data-call-timer]').waitFor({ timeout: 20000 })
    await page.locator('[data-call-codec]').waitFor({ timeout: 10000 })
    assert.equal(await page.locator('[data-call-codec]').innerText(), 'Audio: PCMU', 'G.711 again once chosen again')
    await new Promise((r) => setTimeout(r, 1500))
    // The stand-in's far party speaks 1500 Hz (e2e/src/standin/media.rs).
    const heard = await browserHears(page)
    assert.ok(Math.abs(heard.hz - 1500) < 30 && heard.db - heard.median > 30, `the browser hears the far party's 1500 Hz: ${JSON.stringify(heard)}`)
    await page.locator('[data-call-hangup]').click()
    // What the far party heard is filed once its side of the call ends.
    const over = (c) => c?.ended && c.rtp_packets > 0
    let call
    for (let i = 0; i < 50 && !over(call); i++) {
      call = (await standin.trunk()).calls.find((c) => c.to.includes('+15557770000'))
      if (!over(call)) await new Promise((r) => setTimeout(r, 100))
    }
    assert.equal(call?.code, 200, `the trunk answered the browser's call: ${JSON.stringify(call)}`)
    assert.ok(call.ended, 'the hang-up reached the trunk')
    const p = pcmuPeak(Buffer.from(call.heard_pcmu, 'base64'))
    assert.ok(Math.abs(p.hz - BROWSER_HZ) <= 10 && p.over > 100, `the far party hears the browser's ${BROWSER_HZ} Hz: ${JSON.stringify(p)}`)
  } finally {
    standin.stop()
  }
})

test('a blocked microphone and a lost connection are told in words', async () => {
  // A browser that never grants the microphone.
  const strict = await launchBrowser(['--autoplay-policy=no-user-gesture-required'])
  try {
    const p2 = await strict.newPage()
    await loginInBrowser(p2, sys.base, ADMIN.email, ADMIN.password)
    await p2.goto(`${sys.base}/phone`)
    await p2.getByRole('switch', { name: /Use this browser as a phone/ }).click()
    await p2.locator('[data-phone-status]', { hasText: 'Ready' }).waitFor({ timeout: 20000 })
    await p2.getByLabel('Number or extension').fill('201')
    await p2.locator('[data-dial]').click()
    await p2.locator('[data-phone-last]', { hasText: /microphone/i }).waitFor({ timeout: 10000 })
    assert.equal(await activeCalls(), 0, 'no call without a microphone')
  } finally { await strict.close() }

  // sipd goes away: the open page says so.
  await sys.stopDaemon('sipd')
  await page.goto(`${sys.base}/phone`)
  await page.locator('[data-phone-error]').waitFor({ timeout: 20000 })
  assert.match(await page.locator('[data-phone-error]').innerText(), /lost|not connected|could not|refused/i)
  await screenshot(page, 'phone-connection-lost')
})
