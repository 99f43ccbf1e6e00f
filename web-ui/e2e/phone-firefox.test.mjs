// The phone in the browser in Firefox (Debian's firefox-esr, driven over
// WebDriver BiDi by puppeteer-core: Playwright drives only its own Firefox
// build). Firefox's fake microphone plays a 440 Hz tone; a baresip desk
// phone plays 700 Hz. Firefox calls the desk phone and each must hear the
// other, in G.711 and then in Opus (which mediad transcodes), then the desk
// phone calls Firefox and the toast answers.
//
// Firefox leaves loopback out of ICE whatever its prefs say, so the test
// runs in a network namespace of its own (made here, deleted on every way
// out) whose only link is a veth pair on 198.18.0.1/24 (a benchmarking
// range): Firefox opens GoSIP on 198.18.0.1, as a browser on the LAN
// would, and sipd offers it mediad on that address.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import puppeteer from 'puppeteer-core'
import { startSystem } from './harness.mjs'
import { ADMIN, setupSystem, startBaresip, wavPeak, pcmPeak } from './ui.mjs'

const FIREFOX = '/usr/bin/firefox-esr'
const HOST = '198.18.0.1'
const BROWSER_HZ = 440
const PHONE_HZ = 700
const NETNS = process.env.GOSIP_TEST_NETNS
let sys, api, browser, page, desk

if (!NETNS) {
  test('Firefox, in a network namespace of its own', () => {
    assert.equal(process.getuid?.(), 0, 'this test makes a network namespace: run it as root (make test does)')
    const ns = `gosipff${process.pid}`
    const ip = (...a) => {
      const r = spawnSync('ip', a, { encoding: 'utf8' })
      assert.equal(r.status, 0, `ip ${a.join(' ')}: ${r.stderr}`)
    }
    const cleanup = () => spawnSync('ip', ['netns', 'del', ns])
    process.once('SIGINT', () => { cleanup(); process.exit(130) })
    process.once('SIGTERM', () => { cleanup(); process.exit(143) })
    try {
      ip('netns', 'add', ns)
      ip('-n', ns, 'link', 'set', 'lo', 'up')
      ip('-n', ns, 'link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1')
      ip('-n', ns, 'addr', 'add', `${HOST}/24`, 'dev', 'v0')
      ip('-n', ns, 'addr', 'add', '198.18.0.2/24', 'dev', 'v1')
      ip('-n', ns, 'link', 'set', 'v0', 'up')
      ip('-n', ns, 'link', 'set', 'v1', 'up')
      // A test run of its own, not a child of this one (whose runner
      // would take its report).
      const env = { ...process.env, GOSIP_TEST_NETNS: ns }
      delete env.NODE_TEST_CONTEXT
      const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, '--test', fileURLToPath(import.meta.url)], {
        encoding: 'utf8', env, timeout: 240000,
      })
      assert.equal(r.status, 0, `Firefox's test in ${ns} failed:\n${r.stdout}\n${r.stderr}`)
      assert.match(r.stdout, /# pass 1\n/, `Firefox's test did not run:\n${r.stdout}`)
    } finally {
      cleanup()
    }
  })
}

before(async () => {
  if (!NETNS) return
  assert.ok(existsSync(FIREFOX), 'firefox-esr is not installed: make deps installs it')
  sys = await startSystem({ GOSIP_HTTP_BIND: '0.0.0.0', GOSIP_RTP_BIND: '0.0.0.0' }, { host: HOST })
  api = await setupSystem(sys, { did: null })
  browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath: FIREFOX,
    headless: true,
    extraPrefsFirefox: {
      // A fake microphone with a tone of our choosing, granted without asking.
      'media.navigator.streams.fake': true,
      'media.navigator.permission.disabled': true,
      'media.navigator.audio.fake_frequency': BROWSER_HZ,
      'media.autoplay.default': 0,
      'media.autoplay.blocking_policy': 0,
      // http://198.18.0.1 stands for GoSIP behind HTTPS on the LAN.
      'dom.securecontext.allowlist': HOST,
    },
  })
  page = await browser.newPage()
  await page.goto(`${sys.base}/login`)
  await page.waitForSelector('input[type="email"]')
  await page.type('input[type="email"]', ADMIN.email)
  await page.type('input[type="password"]', ADMIN.password)
  await page.click('button[type="submit"]')
  await page.waitForFunction(() => [...document.querySelectorAll('h1')].some((h) => h.textContent.includes('Dashboard')), { timeout: 20000 })
})
after(async () => { desk?.stop(); await browser?.close(); await sys?.stop() })

/**
 * The strongest frequency (200..3400 Hz, 10 Hz steps) of what the page
 * hears on the call, and how much above the median it stands. Headless
 * Firefox has no audio device, so no AudioContext runs: the call's audio
 * is recorded for two seconds (MediaRecorder) and decoded offline.
 */
async function firefoxHears() {
  const { samples, rate } = await page.evaluate(async () => {
    const el = document.getElementById('gosip-phone-audio')
    const rec = new MediaRecorder(el.srcObject)
    const chunks = []
    rec.ondataavailable = (e) => chunks.push(e.data)
    const stopped = new Promise((r) => { rec.onstop = r })
    rec.start()
    await new Promise((r) => setTimeout(r, 2000))
    rec.stop()
    await stopped
    const audio = await new OfflineAudioContext(1, 48000, 48000).decodeAudioData(await new Blob(chunks).arrayBuffer())
    return { samples: [...audio.getChannelData(0)], rate: audio.sampleRate }
  })
  return pcmPeak(samples, rate)
}

/** Waits until `selector` exists (and, with `text`, its text matches). */
function waitFor(selector, text = null, timeout = 20000) {
  return page.waitForFunction((s, t) => {
    const el = document.querySelector(s)
    return el && (!t || new RegExp(t).test(el.textContent))
  }, { timeout }, selector, text)
}

test('Firefox calls a desk phone and is called by it, and each hears the other', { skip: !NETNS }, async () => {
  const d = await api.post('/devices', { name: 'Desk', extension: '201' })
  desk = await startBaresip(sys, { username: d.username, password: d.password, name: 'desk', hz: PHONE_HZ })
  await desk.event('REGISTER_OK')

  await page.goto(`${sys.base}/phone`)
  await page.click('[role="switch"]')
  await waitFor('[data-phone-status]', 'Ready')

  await page.type('#dial-number', '201')
  await page.click('[data-dial]')
  await waitFor('[data-call-timer]').catch(async (e) => { throw new Error(`${e.message}: ${await page.evaluate(() => document.querySelector('[data-phone-last]')?.textContent)}`) })
  await desk.event('CALL_ESTABLISHED')
  const heard = await firefoxHears()
  assert.ok(Math.abs(heard.hz - PHONE_HZ) <= 10 && heard.over > 100, `Firefox hears the desk phone's ${PHONE_HZ} Hz: ${JSON.stringify(heard)}`)
  await page.click('[data-call-hangup]')
  await desk.event('CALL_CLOSED')
  const p = wavPeak(desk.heard())
  assert.ok(Math.abs(p.hz - BROWSER_HZ) <= 10 && p.over > 100, `the desk phone hears Firefox's ${BROWSER_HZ} Hz: ${JSON.stringify(p)}`)

  // Set to Opus, Firefox speaks it and mediad transcodes for the desk phone.
  await page.select('#f-phone-codec', 'opus')
  await waitFor('#dial-number')
  if (!(await page.$eval('#dial-number', (el) => el.value))) await page.type('#dial-number', '201')
  await page.click('[data-dial]')
  await waitFor('[data-call-codec]', 'Opus')
  await desk.event('CALL_ESTABLISHED')
  const opus = await firefoxHears()
  assert.ok(Math.abs(opus.hz - PHONE_HZ) <= 10 && opus.over > 100, `in Opus, Firefox hears ${PHONE_HZ} Hz: ${JSON.stringify(opus)}`)
  await page.click('[data-call-hangup]')
  await desk.event('CALL_CLOSED')
  const po = wavPeak(desk.heard())
  assert.ok(Math.abs(po.hz - BROWSER_HZ) <= 10 && po.over > 100, `the desk phone hears Firefox's Opus as ${BROWSER_HZ} Hz: ${JSON.stringify(po)}`)
  await page.select('#f-phone-codec', 'g711')

  // The desk phone calls Firefox; the toast answers on another page (the
  // app's own navigation: a reload would be a new phone registering).
  await page.click('nav[aria-label="Main"] a[href="/calls"]')
  await waitFor('h1', 'Call history')
  desk.command('dial', `sip:700@127.0.0.1:${sys.ports.sip}`)
  await waitFor('[data-incoming-call]', 'Incoming call')
  await page.click('[data-toast-answer]')
  await waitFor('[data-call-timer]')
  await desk.event('CALL_ESTABLISHED')
  const back = await firefoxHears()
  assert.ok(Math.abs(back.hz - PHONE_HZ) <= 10 && back.over > 100, `answered from the toast, Firefox hears ${PHONE_HZ} Hz: ${JSON.stringify(back)}`)
  desk.command('hangup')
  await page.waitForFunction(() => !document.querySelector('[data-call-timer]'), { timeout: 15000 })
})
