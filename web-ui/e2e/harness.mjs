// Starts the real GoSIP daemons (target/debug, or $GOSIP_BIN_DIR) on free
// loopback ports with a temp data dir, and a headless Debian Chromium.
import { spawn } from 'node:child_process'
import { mkdtempSync, openSync, mkdirSync, readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { chromium } from 'playwright-core'

const ROOT = resolve(import.meta.dirname, '..', '..')
export const ARTIFACTS = join(ROOT, 'e2e', 'artifacts')
const DAEMONS = ['sipd', 'mediad', 'twiliod', 'notifyd', 'webd']

// Ports handed out in this process: the kernel may give a just-closed port
// 0 again, and two daemons on one port fail to start (seen: notifyd's gRPC on
// sipd's SIP port).
const handed = new Set()

export async function freePort() {
  for (;;) {
    const p = await new Promise((res, rej) => {
      const s = createServer()
      s.once('error', rej)
      s.listen(0, '127.0.0.1', () => { const port = s.address().port; s.close(() => res(port)) })
    })
    if (!handed.has(p)) { handed.add(p); return p }
  }
}

/**
 * A free port whose next port is free too: baresip listens for SIP over TLS
 * on `sip_listen`'s port + 1, and fails to start when that one is taken.
 */
export async function freePortPair() {
  for (;;) {
    const p = await freePort()
    if (handed.has(p + 1)) continue
    const free = await new Promise((res) => {
      const s = createServer()
      s.once('error', () => res(false))
      s.listen(p + 1, '127.0.0.1', () => s.close(() => res(true)))
    })
    if (free) { handed.add(p + 1); return p }
  }
}

export async function startSystem(extraEnv = {}, { host = '127.0.0.1' } = {}) {
  const binDir = process.env.GOSIP_BIN_DIR || join(ROOT, 'target', 'debug')
  const dir = mkdtempSync(join(tmpdir(), 'gosip-ui-'))
  const data = join(dir, 'data')
  mkdirSync(data)
  const p = {}
  for (const k of ['http', 'sip', 'sips', 'sipd', 'sipWs', 'mediad', 'twiliod', 'twiliodHttp', 'notifyd']) p[k] = await freePort()
  const rtp = 30000 + Math.floor(Math.random() * 1000) * 20
  const env = {
    ...process.env,
    GOSIP_DATA_DIR: data,
    GOSIP_WEB_DIR: join(ROOT, 'web-ui', 'dist'),
    GOSIP_HTTP_BIND: '127.0.0.1', GOSIP_HTTP_PORT: String(p.http),
    GOSIP_SIP_BIND: '127.0.0.1', GOSIP_SIP_PORT: String(p.sip), GOSIP_SIPS_PORT: String(p.sips),
    GOSIP_SIPD_GRPC: `127.0.0.1:${p.sipd}`, GOSIP_MEDIAD_GRPC: `127.0.0.1:${p.mediad}`,
    GOSIP_TWILIOD_GRPC: `127.0.0.1:${p.twiliod}`, GOSIP_TWILIOD_HTTP: `127.0.0.1:${p.twiliodHttp}`,
    GOSIP_NOTIFYD_GRPC: `127.0.0.1:${p.notifyd}`, GOSIP_SIP_WS: `127.0.0.1:${p.sipWs}`,
    GOSIP_RTP_BIND: '127.0.0.1', GOSIP_RTP_PORTS: `${rtp}-${rtp + 19}`,
    ...extraEnv,
  }
  const procs = DAEMONS.map((d) => {
    const log = openSync(join(dir, `${d}.log`), 'a')
    return spawn(join(binDir, d), [], { env, stdio: ['ignore', log, log] })
  })
  // The address the browser opens GoSIP on (another than loopback inside a
  // test's own network namespace, where webd then listens on all of its).
  const base = `http://${host}:${p.http}`
  const sys = {
    base, dir, data, ports: p,
    log: (d) => { try { return readFileSync(join(dir, `${d}.log`), 'utf8') } catch { return '' } },
    /** A daemon's process id (for CPU and memory readings). */
    pid: (d) => procs[DAEMONS.indexOf(d)].pid,
    /** Stops one daemon (the others keep running), as a crash would. */
    async stopDaemon(name) { const c = procs[DAEMONS.indexOf(name)]; if (c.exitCode === null) { c.kill('SIGTERM'); await new Promise((r) => c.once('exit', r)) } },
    async stop() { for (const c of procs) c.kill('SIGTERM'); await Promise.all(procs.map((c) => c.exitCode !== null ? null : new Promise((r) => c.once('exit', r)))) },
  }
  const deadline = Date.now() + 30000
  while (Date.now() < deadline) {
    try {
      const h = await (await fetch(`${base}/api/system/health`)).json()
      if (h.status === 'ok') return sys
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 100))
  }
  await sys.stop()
  throw new Error(`GoSIP not healthy in 30 s; logs in ${dir}\n${DAEMONS.map((d) => `--- ${d}\n${sys.log(d)}`).join('\n')}`)
}

/** Headless Chromium; `extraArgs` e.g. a fake microphone for the phone tests. */
export async function launchBrowser(extraArgs = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync', ...extraArgs],
  })
}

export async function screenshot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true })
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true })
}
