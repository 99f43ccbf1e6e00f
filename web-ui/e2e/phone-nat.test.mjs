// The phone in the browser where users live: Chromium at home behind a
// masquerading router, GoSIP on a "VPS" on the other side. Three network
// namespaces made here (deleted on every way out), linked only to each
// other by veth pairs, on documentation ranges:
//
//   home 198.51.100.20 --- 198.51.100.1 router 203.0.113.2 --- 203.0.113.10 vps
//                                 (nftables masquerade)
//
// The vps has no route to 198.51.100.0/24: the browser's host candidate is
// unreachable from it, and everything from the browser arrives from the
// router's 203.0.113.2. So the call only has audio if sipd offers the
// browser mediad on the vps's own address (chosen from the address webd
// saw the browser at) and mediad, ICE-lite, answers the checks where they
// came from and sends media back through the NAT mapping. The browser
// (a fake microphone at 440 Hz, in Opus for the second call) calls a
// baresip desk phone on the vps (1000 Hz) and each hears the other; then
// the desk phone calls the browser and the toast answers.
//
// Then the rare case that needs TURN: the router drops the home's UDP to
// anything but the TURN port, so no media can go straight to mediad. With
// `phone.ice_servers` set (through the API) to a TURN server on the vps
// (Debian's coturn), the browser's media goes through its relay and the
// call has audio both ways again.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync, chmodSync } from 'node:fs'
import { join } from 'node:path'
import { spawn, spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { startSystem, launchBrowser } from './harness.mjs'
import { ADMIN, setupSystem, loginInBrowser, startBaresip, toneWav, assertBrowserHears, browserHangsUpHaving, deskHangsUpHaving } from './ui.mjs'

const VPS = '203.0.113.10'
const BROWSER_HZ = 440
const PHONE_HZ = 1000
const INNER = process.env.GOSIP_NAT_HOME
const ROUTER = process.env.GOSIP_NAT_ROUTER
const TURN = { user: 'gosip', password: 'turn-secret-1234' }
let sys, api, browser, page, desk, turn

if (!INNER) {
  test('the browser phone behind a home router, GoSIP on a VPS', () => {
    assert.equal(process.getuid?.(), 0, 'this test makes network namespaces: run it as root (make test does)')
    const [vps, rt, home] = ['v', 'r', 'h'].map((n) => `gosipnat${n}${process.pid}`)
    const ip = (...a) => {
      const r = spawnSync('ip', a, { encoding: 'utf8' })
      assert.equal(r.status, 0, `ip ${a.join(' ')}: ${r.stderr}`)
    }
    const run = (ns, cmd, args, input) => {
      const r = spawnSync('ip', ['netns', 'exec', ns, cmd, ...args], { encoding: 'utf8', input })
      assert.equal(r.status, 0, `${cmd} ${args.join(' ')} in ${ns}: ${r.stderr}`)
    }
    const cleanup = () => { for (const ns of [vps, rt, home]) spawnSync('ip', ['netns', 'del', ns]) }
    process.once('SIGINT', () => { cleanup(); process.exit(130) })
    process.once('SIGTERM', () => { cleanup(); process.exit(143) })
    try {
      for (const ns of [vps, rt, home]) {
        ip('netns', 'add', ns)
        ip('-n', ns, 'link', 'set', 'lo', 'up')
      }
      ip('-n', rt, 'link', 'add', 'wan0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', vps)
      ip('-n', rt, 'link', 'add', 'lan0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', home)
      ip('-n', rt, 'addr', 'add', '203.0.113.2/24', 'dev', 'wan0')
      ip('-n', rt, 'addr', 'add', '198.51.100.1/24', 'dev', 'lan0')
      ip('-n', vps, 'addr', 'add', `${VPS}/24`, 'dev', 'eth0')
      ip('-n', home, 'addr', 'add', '198.51.100.20/24', 'dev', 'eth0')
      for (const [ns, dev] of [[rt, 'wan0'], [rt, 'lan0'], [vps, 'eth0'], [home, 'eth0']]) ip('-n', ns, 'link', 'set', dev, 'up')
      ip('-n', home, 'route', 'add', 'default', 'via', '198.51.100.1')
      run(rt, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1'])
      run(rt, 'nft', ['-f', '-'], 'table ip nat {\n chain post {\n  type nat hook postrouting priority 100\n  oifname "wan0" masquerade\n }\n}\n')
      // The test proper runs on the vps (its daemons and desk phone there),
      // a test run of its own, not a child of this one.
      const env = { ...process.env, GOSIP_NAT_HOME: home, GOSIP_NAT_ROUTER: rt }
      delete env.NODE_TEST_CONTEXT
      const r = spawnSync('ip', ['netns', 'exec', vps, process.execPath, '--test', fileURLToPath(import.meta.url)], {
        encoding: 'utf8', env, timeout: 300000,
      })
      assert.equal(r.status, 0, `the browser's test behind NAT failed:\n${r.stdout}\n${r.stderr}`)
      assert.match(r.stdout, /# pass 1\n/, `the browser's test behind NAT did not run:\n${r.stdout}`)
    } finally {
      cleanup()
    }
  })
}

before(async () => {
  if (!INNER) return
  sys = await startSystem({ GOSIP_HTTP_BIND: '0.0.0.0', GOSIP_RTP_BIND: '0.0.0.0' }, { host: VPS })
  api = await setupSystem(sys, { did: null })
  const mic = join(sys.dir, 'browser-mic.wav')
  writeFileSync(mic, toneWav(BROWSER_HZ, 60, 48000))
  // Chromium itself runs at home: Playwright starts it through this.
  const chromium = join(sys.dir, 'chromium-at-home')
  writeFileSync(chromium, `#!/bin/sh\nexec ip netns exec ${INNER} ${process.env.CHROMIUM_PATH || '/usr/bin/chromium'} "$@"\n`)
  chmodSync(chromium, 0o755)
  process.env.CHROMIUM_PATH = chromium
  browser = await launchBrowser(['--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
    `--use-file-for-fake-audio-capture=${mic}`, '--autoplay-policy=no-user-gesture-required',
    // http://203.0.113.10 stands for GoSIP behind HTTPS on the VPS.
    `--unsafely-treat-insecure-origin-as-secure=${sys.base}`])
  page = await browser.newPage()
  await loginInBrowser(page, sys.base, ADMIN.email, ADMIN.password)
})
after(async () => { turn?.kill(); desk?.stop(); await browser?.close(); await sys?.stop() })

/** Runs `nft` with `args` (and `input` on its stdin) in the router's namespace; its output. */
function routerNft(args, input) {
  const r = spawnSync('ip', ['netns', 'exec', ROUTER, 'nft', ...args], { encoding: 'utf8', input })
  assert.equal(r.status, 0, `nft ${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

test('behind NAT the browser calls a desk phone and is called by it, in G.711 and Opus, and each hears the other', { skip: !INNER }, async () => {
  const d = await api.post('/devices', { name: 'Desk', extension: '201' })
  desk = await startBaresip(sys, { username: d.username, password: d.password, name: 'desk', hz: PHONE_HZ })
  await desk.event('REGISTER_OK')
  await page.locator('[data-phone-link]').click()
  await page.getByRole('switch', { name: /Use this browser as a phone/ }).click()
  await page.locator('[data-phone-status]', { hasText: 'Ready' }).waitFor({ timeout: 20000 })

  for (const codec of ['g711', 'opus']) {
    await page.getByLabel('Codec').selectOption(codec)
    await page.getByLabel('Number or extension').fill('201')
    await page.locator('[data-dial]').click()
    await page.locator('[data-call-timer]').waitFor({ timeout: 20000 })
    await desk.event('CALL_ESTABLISHED')
    await page.locator('[data-call-codec]', { hasText: codec === 'opus' ? 'Opus' : 'PCM' }).waitFor({ timeout: 10000 })
    await new Promise((r) => setTimeout(r, 2000))
    await assertBrowserHears(page, PHONE_HZ, `${codec}, behind NAT`)
    await browserHangsUpHaving(page, desk, BROWSER_HZ, `${codec}, behind NAT`)
  }

  // The desk phone calls the browser (in Opus still); the toast answers.
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Calls' }).click()
  desk.command('dial', `sip:700@127.0.0.1:${sys.ports.sip}`)
  await page.locator('[data-toast-answer]').click({ timeout: 20000 })
  await page.locator('[data-call-timer]').waitFor({ timeout: 20000 })
  await desk.event('CALL_ESTABLISHED')
  await new Promise((r) => setTimeout(r, 2000))
  await assertBrowserHears(page, PHONE_HZ, 'answered behind NAT')
  await deskHangsUpHaving(page, desk, BROWSER_HZ, 'answered behind NAT')

  // UDP from home now reaches the vps only on the TURN port.
  routerNft(['-f', '-'], 'table inet gate {\n chain home {\n  type filter hook forward priority 0\n  iifname "lan0" udp dport != 3478 counter drop\n }\n}\n')
  turn = spawn('turnserver', ['-n', '--listening-ip', VPS, '--relay-ip', VPS, '--listening-port', '3478', '--lt-cred-mech',
    '--user', `${TURN.user}:${TURN.password}`, '--realm', 'gosip', '--no-tls', '--no-dtls', '--no-cli', '--fingerprint',
    '--min-port', '49160', '--max-port', '49200', '--log-file', join(sys.dir, 'turnserver.log'), '--simple-log'], { stdio: 'ignore' })
  await api.put('/system/config', { 'phone.ice_servers': `turn:${VPS}:3478 ${TURN.user} ${TURN.password}` })
  // The phone reads its ICE servers when it starts: off and on again.
  await page.locator('[data-phone-link]').click()
  await page.getByRole('switch', { name: /Use this browser as a phone/ }).click()
  await page.getByRole('switch', { name: /Use this browser as a phone/ }).click()
  await page.locator('[data-phone-status]', { hasText: 'Ready' }).waitFor({ timeout: 20000 })
  await page.getByLabel('Codec').selectOption('g711')
  await page.getByLabel('Number or extension').fill('201')
  await page.locator('[data-dial]').click()
  await page.locator('[data-call-timer]').waitFor({ timeout: 20000 })
  await desk.event('CALL_ESTABLISHED')
  await new Promise((r) => setTimeout(r, 2000))
  await assertBrowserHears(page, PHONE_HZ, 'through TURN')
  await browserHangsUpHaving(page, desk, BROWSER_HZ, 'through TURN')
  // The browser did try the direct way, and the router dropped it.
  const dropped = Number(/counter packets (\d+)/.exec(routerNft(['list', 'table', 'inet', 'gate']))?.[1])
  assert.ok(dropped > 0, `the router dropped the direct UDP: ${dropped}`)
})
