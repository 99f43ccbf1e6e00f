// The browser phone against the real daemons ($GOSIP_BIN_DIR, release under
// `make bench`): call setup time as the page sees it (Call pressed to the
// call answered) over RUNS calls from headless Chromium to a baresip desk
// phone that answers at once, and mediad's CPU while one call runs, for a
// browser call (ICE-lite, DTLS-SRTP, G.711 both legs: no transcoding), the
// same with the browser set to Opus (mediad transcodes Opus <-> G.711),
// next to a plain desk-to-desk call. Prints numbers; asserts nothing about
// speed.
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { startSystem, launchBrowser } from './harness.mjs'
import { ADMIN, setupSystem, loginInBrowser, startBaresip, toneWav } from './ui.mjs'

const RUNS = Number(process.env.RUNS || 10)
const CPU_SECS = Number(process.env.CPU_SECS || 10)
const sys = await startSystem()
let browser, desk, desk2
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** mediad's CPU seconds so far (user + system, from /proc). */
function mediadCpu() {
  const f = readFileSync(`/proc/${sys.pid('mediad')}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(f[11]) + Number(f[12])) / 100
}
/** mediad's CPU share (% of one core) over CPU_SECS while a call runs. */
async function cpuDuringCall() {
  const t0 = mediadCpu()
  await sleep(CPU_SECS * 1000)
  return ((mediadCpu() - t0) / CPU_SECS) * 100
}

try {
  const api = await setupSystem(sys, { did: null })
  const a = await api.post('/devices', { name: 'Desk', extension: '201' })
  const b = await api.post('/devices', { name: 'Desk 2', extension: '202' })
  desk = await startBaresip(sys, { username: a.username, password: a.password, name: 'desk', hz: 1000 })
  desk2 = await startBaresip(sys, { username: b.username, password: b.password, name: 'desk2', hz: 700 })
  await desk.event('REGISTER_OK')
  await desk2.event('REGISTER_OK')
  const mic = join(sys.dir, 'mic.wav')
  writeFileSync(mic, toneWav(440, 60, 48000))
  browser = await launchBrowser(['--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
    '--allow-loopback-in-peer-connection', `--use-file-for-fake-audio-capture=${mic}`, '--autoplay-policy=no-user-gesture-required'])
  const page = await browser.newPage()
  await loginInBrowser(page, sys.base, ADMIN.email, ADMIN.password)
  await page.goto(`${sys.base}/phone`)
  await page.getByRole('switch', { name: /Use this browser as a phone/ }).click()
  await page.locator('[data-phone-status]', { hasText: 'Ready' }).waitFor({ timeout: 20000 })

  const setup = []
  for (let i = 0; i < RUNS; i++) {
    await page.getByLabel('Number or extension').fill('201')
    const t0 = performance.now()
    await page.locator('[data-dial]').click()
    await page.locator('[data-call-timer]').waitFor({ timeout: 20000 })
    setup.push(performance.now() - t0)
    await desk.event('CALL_ESTABLISHED')
    if (i === RUNS - 1) {
      await sleep(1000)
      console.log(`mediad CPU, one browser call (DTLS-SRTP, G.711, no transcoding): ${(await cpuDuringCall()).toFixed(2)} % of a core`)
    }
    await page.locator('[data-call-hangup]').click()
    await desk.event('CALL_CLOSED')
    await page.locator('[data-dial]').waitFor()
  }
  const s = [...setup].sort((x, y) => x - y)
  console.log(`browser call setup (Call pressed -> answered, ${RUNS} calls): min ${s[0].toFixed(0)} ms, median ${s[s.length >> 1].toFixed(0)} ms, max ${s[s.length - 1].toFixed(0)} ms`)

  desk2.command('dial', `sip:201@127.0.0.1:${sys.ports.sip}`)
  await desk2.event('CALL_ESTABLISHED')
  await sleep(1000)
  console.log(`mediad CPU, one plain desk-to-desk call (RTP, G.711): ${(await cpuDuringCall()).toFixed(2)} % of a core`)
  desk2.command('hangup')
  await desk2.event('CALL_CLOSED')

  // The browser set to Opus: mediad decodes and encodes every packet.
  await page.getByLabel('Codec').selectOption('opus')
  const opusSetup = []
  for (let i = 0; i < 3; i++) {
    await page.getByLabel('Number or extension').fill('201')
    const t0 = performance.now()
    await page.locator('[data-dial]').click()
    await page.locator('[data-call-timer]').waitFor({ timeout: 20000 })
    opusSetup.push(performance.now() - t0)
    await desk.event('CALL_ESTABLISHED')
    if (i === 2) {
      await page.locator('[data-call-codec]', { hasText: 'Opus' }).waitFor({ timeout: 10000 })
      await sleep(1000)
      console.log(`mediad CPU, one browser call in Opus (DTLS-SRTP, Opus <-> G.711 transcoding): ${(await cpuDuringCall()).toFixed(2)} % of a core`)
    }
    await page.locator('[data-call-hangup]').click()
    await desk.event('CALL_CLOSED')
    await page.locator('[data-dial]').waitFor()
  }
  const o = [...opusSetup].sort((x, y) => x - y)
  console.log(`browser call setup in Opus (3 calls): min ${o[0].toFixed(0)} ms, median ${o[1].toFixed(0)} ms, max ${o[2].toFixed(0)} ms`)
} finally {
  desk?.stop(); desk2?.stop()
  await browser?.close()
  await sys.stop()
}
