// Helpers shared by the UI system tests: a session-holding API client for
// seeding through the real API, SQL seeding for rows only daemons write,
// axe-core accessibility checks and QR decoding inside the page.
import { execFileSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import assert from 'node:assert/strict'

const require = createRequire(import.meta.url)
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8')
const JSQR = readFileSync(require.resolve('jsqr/dist/jsQR.js'), 'utf8')

export const ADMIN = { email: 'admin@gosip.test', password: 'Adm1n-pass-word' }

/** A tiny API client that keeps the session cookie. */
export function apiClient(base) {
  let cookie = ''
  async function req(method, path, body) {
    const headers = { 'X-Requested-With': 'gosip' }
    if (cookie) headers.Cookie = cookie
    let payload
    if (body !== undefined) { headers['Content-Type'] = 'application/json'; payload = JSON.stringify(body) }
    const res = await fetch(`${base}/api${path}`, { method, headers, body: payload })
    const set = res.headers.getSetCookie?.() ?? []
    for (const c of set) if (c.startsWith('gosip_session=')) cookie = c.split(';')[0]
    const text = await res.text()
    let data = null
    try { data = text ? JSON.parse(text) : null } catch { data = text }
    if (!res.ok) {
      const e = new Error(`${method} ${path}: ${res.status} ${text.slice(0, 300)}`)
      e.status = res.status
      e.data = data
      throw e
    }
    return data
  }
  return {
    req,
    get: (p) => req('GET', p),
    post: (p, b) => req('POST', p, b),
    put: (p, b) => req('PUT', p, b),
    del: (p) => req('DELETE', p),
    get cookie() { return cookie },
    async login(email, password) { return req('POST', '/auth/login', { email, password }) },
  }
}

/** The one-time setup token webd wrote to the data dir, as an operator reads it. */
export function setupToken(sys) {
  return readFileSync(join(sys.data, 'setup-token'), 'utf8').trim()
}

/** Runs the first-run setup through the API (the wizard test does it in the UI). */
export async function setupSystem(sys, { did = '+15551230000' } = {}) {
  const c = apiClient(sys.base)
  await c.post('/setup', { setup_token: setupToken(sys), admin: { email: ADMIN.email, name: 'Admin', password: ADMIN.password }, ...(did ? { did: { number: did, name: 'Main line' } } : {}) })
  await c.login(ADMIN.email, ADMIN.password)
  return c
}

/** Logs the browser context in by its cookie jar (through the real login page). */
export async function loginInBrowser(page, base, email, password) {
  await page.goto(`${base}/login`)
  await page.getByLabel('Email').fill(email)
  await page.getByLabel('Password').fill(password)
  await page.getByRole('button', { name: 'Log in' }).click()
  await page.getByRole('heading', { name: 'Dashboard' }).waitFor()
}

/** Runs SQL against the system's database (rows that only other daemons write). */
export function sql(sys, statements, params = []) {
  const db = join(sys.data, 'gosip.db')
  const script = `
import sqlite3, sys, json
con = sqlite3.connect(sys.argv[1], timeout=10)
con.execute('PRAGMA foreign_keys=ON')
params = json.loads(sys.argv[3])
out = []
for i, s in enumerate(json.loads(sys.argv[2])):
    cur = con.execute(s, params[i] if i < len(params) else [])
    out.append(cur.lastrowid if cur.description is None else cur.fetchall())
con.commit()
print(json.dumps(out))
`
  const list = Array.isArray(statements) ? statements : [statements]
  return JSON.parse(execFileSync('python3', ['-c', script, db, JSON.stringify(list), JSON.stringify(params)], { encoding: 'utf8' }))
}

/** Injects axe-core and fails on serious or critical violations. */
export async function assertAccessible(page, what) {
  // Evaluated through the devtools protocol, which the app's CSP does not govern.
  await page.evaluate(AXE)
  const res = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] })
    return r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => `${v.id} (${v.impact}): ${v.help} -> ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | ')}`)
  })
  assert.deepEqual(res, [], `axe found serious problems on ${what}`)
}

/** Decodes the QR code shown by the <img> matching `selector`. */
export async function decodeQr(page, selector) {
  await page.evaluate(JSQR)
  return page.evaluate(async (sel) => {
    const img = document.querySelector(sel)
    if (!img.complete || !img.naturalWidth) await new Promise((r, j) => { img.onload = r; img.onerror = () => j(new Error('QR image failed to load')) })
    const c = document.createElement('canvas')
    // Scale up with a white quiet zone so small PNGs decode reliably.
    const k = Math.max(1, Math.ceil(400 / img.naturalWidth))
    c.width = img.naturalWidth * k + 80
    c.height = img.naturalHeight * k + 80
    const ctx = c.getContext('2d')
    ctx.imageSmoothingEnabled = false
    ctx.fillStyle = '#fff'
    ctx.fillRect(0, 0, c.width, c.height)
    ctx.drawImage(img, 40, 40, img.naturalWidth * k, img.naturalHeight * k)
    const d = ctx.getImageData(0, 0, c.width, c.height)
    // eslint-disable-next-line no-undef
    const code = jsQR(d.data, d.width, d.height)
    return code ? code.data : null
  }, selector)
}

/** A short valid WAV (8 kHz mono 16-bit, a 440 Hz tone). */
export function wav(seconds = 1) {
  return toneWav(440, seconds)
}

/** Registers `username` at sipd over UDP with RFC 2617 digest (MD5, qop=auth), like a phone. */
export async function sipRegister({ port, username, password, userAgent = 'GoSIP-UI-test/1.0', expires = 300 }) {
  const { createSocket } = await import('node:dgram')
  const { createHash, randomBytes } = await import('node:crypto')
  const md5 = (s) => createHash('md5').update(s).digest('hex')
  const rnd = () => randomBytes(8).toString('hex')
  const sock = createSocket('udp4')
  await new Promise((r) => sock.bind(0, '127.0.0.1', r))
  const lport = sock.address().port
  const uri = `sip:127.0.0.1:${port}`
  const callId = `${rnd()}@127.0.0.1`
  const fromTag = rnd()
  const send = (cseq, auth) => {
    const lines = [
      `REGISTER ${uri} SIP/2.0`,
      `Via: SIP/2.0/UDP 127.0.0.1:${lport};branch=z9hG4bK${rnd()};rport`,
      'Max-Forwards: 70',
      `From: <sip:${username}@127.0.0.1>;tag=${fromTag}`,
      `To: <sip:${username}@127.0.0.1>`,
      `Call-ID: ${callId}`,
      `CSeq: ${cseq} REGISTER`,
      `Contact: <sip:${username}@127.0.0.1:${lport};transport=udp>`,
      `Expires: ${expires}`,
      `User-Agent: ${userAgent}`,
      ...(auth ? [`Authorization: ${auth}`] : []),
      'Content-Length: 0', '', '']
    sock.send(Buffer.from(lines.join('\r\n')), port, '127.0.0.1')
  }
  const next = () => new Promise((res, rej) => {
    const t = setTimeout(() => rej(new Error('no SIP answer')), 5000)
    sock.once('message', (m) => { clearTimeout(t); res(m.toString()) })
  })
  try {
    send(1)
    const challenge = await next()
    const hdrs = challenge.split('\r\n').filter((l) => /^WWW-Authenticate:/i.test(l))
    const h = hdrs.find((l) => !/algorithm=("?)SHA-256/i.test(l)) ?? hdrs[0]
    if (!h) throw new Error(`no challenge: ${challenge.split('\r\n')[0]}`)
    const p = (k) => new RegExp(`${k}="?([^",]+)"?`, 'i').exec(h)?.[1]
    const realm = p('realm'), nonce = p('nonce'), opaque = p('opaque')
    const cnonce = rnd(), nc = '00000001'
    const response = md5(`${md5(`${username}:${realm}:${password}`)}:${nonce}:${nc}:${cnonce}:auth:${md5(`REGISTER:${uri}`)}`)
    send(2, `Digest username="${username}", realm="${realm}", nonce="${nonce}", uri="${uri}", response="${response}", algorithm=MD5, cnonce="${cnonce}", qop=auth, nc=${nc}${opaque ? `, opaque="${opaque}"` : ''}`)
    const ok = await next()
    return ok.split('\r\n')[0]
  } finally {
    sock.close()
  }
}

export const STANDIN = { accountSid: 'AC0123456789abcdef0123456789abcdef', authToken: 'standin-auth-token-0123456789abcd', number: '+15550001111' }

/** Starts e2e's twilio-standin (null when it is not built) on a free port, sending webhooks to `sys`. */
export async function startStandin(sys, { trunk = null } = {}) {
  const { existsSync, openSync } = await import('node:fs')
  const { spawn } = await import('node:child_process')
  const { resolve } = await import('node:path')
  const { freePort } = await import('./harness.mjs')
  const root = resolve(import.meta.dirname, '..', '..')
  const bin = join(process.env.GOSIP_BIN_DIR || join(root, 'target', 'debug'), 'twilio-standin')
  if (!existsSync(bin)) return null
  const port = await freePort()
  const base = `http://127.0.0.1:${port}`
  const log = openSync(join(sys.dir, 'twilio-standin.log'), 'a')
  const args = ['--listen', `127.0.0.1:${port}`, '--gosip', sys.base, '--number', STANDIN.number, ...(trunk ? ['--trunk', `${trunk.username}:${trunk.password}`] : [])]
  const proc = spawn(bin, args, { stdio: ['ignore', log, log] })
  for (let i = 0; i < 100; i++) {
    try { await fetch(`${base}/_control/requests`); break } catch { await new Promise((r) => setTimeout(r, 100)) }
  }
  return {
    base,
    stop: () => proc.kill('SIGTERM'),
    requests: async () => (await fetch(`${base}/_control/requests`)).json(),
    /** The termination trunk (with `trunk`): its address and the calls it took. */
    trunk: async () => (await fetch(`${base}/_control/trunk`)).json(),
  }
}

/** A mono 16-bit WAV of `hz` at `rate`, `seconds` long. */
export function toneWav(hz, seconds, rate = 8000) {
  const n = rate * seconds
  const b = Buffer.alloc(44 + n * 2)
  b.write('RIFF', 0); b.writeUInt32LE(36 + n * 2, 4); b.write('WAVE', 8)
  b.write('fmt ', 12); b.writeUInt32LE(16, 16); b.writeUInt16LE(1, 20); b.writeUInt16LE(1, 22)
  b.writeUInt32LE(rate, 24); b.writeUInt32LE(rate * 2, 28); b.writeUInt16LE(2, 32); b.writeUInt16LE(16, 34)
  b.write('data', 36); b.writeUInt32LE(n * 2, 40)
  for (let i = 0; i < n; i++) b.writeInt16LE(Math.round(12000 * Math.sin((2 * Math.PI * hz * i) / rate)), 44 + i * 2)
  return b
}

/**
 * A real desk phone for the browser tests: Debian's baresip registered as
 * `username` at sipd, answering every call by itself, a `hz` tone as its
 * microphone, recording what it hears (sndfile), driven through its
 * ctrl_tcp socket: `command('dial', uri)`, `await event('CALL_ESTABLISHED')`,
 * `heard()` (the WAV of the last call), `stop()`, `log()`.
 */
export async function startBaresip(sys, { username, password, name = 'phone', hz = 440 }) {
  const { mkdirSync, writeFileSync, openSync, readdirSync, statSync } = await import('node:fs')
  const { spawn } = await import('node:child_process')
  const { createConnection } = await import('node:net')
  const { freePortPair, freePort } = await import('./harness.mjs')
  const dir = join(sys.dir, `baresip-${name}`)
  mkdirSync(join(dir, 'dump'), { recursive: true })
  writeFileSync(join(dir, 'tone.wav'), toneWav(hz, 120))
  // baresip also takes the next port, for SIP over TLS.
  const sipPort = await freePortPair()
  const ctrl = await freePort()
  writeFileSync(join(dir, 'config'), [
    'poll_method epoll', `sip_listen 127.0.0.1:${sipPort}`, 'net_interface 127.0.0.1',
    'module_path /usr/lib/baresip/modules', 'module g711.so', 'module aufile.so', 'module sndfile.so',
    'module_tmp uuid.so', 'module_tmp account.so', 'module_app menu.so', 'module_app ctrl_tcp.so',
    `ctrl_tcp_listen 127.0.0.1:${ctrl}`, `snd_path ${join(dir, 'dump')}`,
    'audio_player aufile,/dev/null', `audio_source aufile,${join(dir, 'tone.wav')}`, '',
  ].join('\n'))
  writeFileSync(join(dir, 'accounts'), `<sip:${username}@127.0.0.1:${sys.ports.sip};transport=udp>;auth_pass=${password};regint=300;audio_codecs=PCMU;answermode=auto\n`)
  const logFile = join(dir, 'baresip.log')
  const proc = spawn('baresip', ['-f', dir, '-t', '300'], { stdio: ['ignore', openSync(logFile, 'a'), openSync(logFile, 'a')] })
  const log = () => readFileSync(logFile, 'utf8')
  let sock = null
  for (let i = 0; i < 100 && !sock; i++) {
    sock = await new Promise((res) => { const c = createConnection(ctrl, '127.0.0.1'); c.once('connect', () => res(c)); c.once('error', () => res(null)) })
    if (!sock) await new Promise((r) => setTimeout(r, 100))
  }
  assert.ok(sock, `baresip's ctrl_tcp never listened\n${log()}`)
  let buf = Buffer.alloc(0)
  const events = []
  sock.on('data', (d) => {
    buf = Buffer.concat([buf, d])
    for (;;) {
      const colon = buf.indexOf(':')
      if (colon < 0) break
      const len = Number(buf.toString('ascii', 0, colon))
      if (buf.length < colon + 2 + len) break
      const msg = JSON.parse(buf.toString('utf8', colon + 1, colon + 1 + len))
      buf = buf.subarray(colon + 2 + len)
      if (msg.event) events.push(msg.type)
    }
  })
  return {
    log,
    command(command, params = '') { const m = JSON.stringify({ command, params, token: command }); sock.write(`${Buffer.byteLength(m)}:${m},`) },
    async event(type, ms = 15000) {
      const end = Date.now() + ms
      while (Date.now() < end) {
        const i = events.indexOf(type)
        if (i >= 0) { events.splice(i, 1); return }
        // The first registration may be over before ctrl_tcp is connected: baresip logs it.
        if (type === 'REGISTER_OK' && / 200 OK .*\[\d+ binding/.test(log())) return
        await new Promise((r) => setTimeout(r, 50))
      }
      throw new Error(`baresip ${name}: no ${type}; saw ${events.join(',')}\n${log().slice(-3000)}`)
    },
    heard() {
      // The newest call's: the names hold the peer before the time.
      const f = readdirSync(join(dir, 'dump')).filter((n) => n.endsWith('-dec.wav'))
        .map((n) => [statSync(join(dir, 'dump', n)).mtimeMs, n]).sort((a, b) => a[0] - b[0]).pop()?.[1]
      return f ? readFileSync(join(dir, 'dump', f)) : null
    },
    stop() { sock.destroy(); proc.kill('SIGTERM') },
  }
}

/** The strongest frequency (200..3400 Hz, 10 Hz steps) in a mono 16-bit WAV, and how much louder it is than the median. */
export function wavPeak(wavBytes) {
  const rate = wavBytes.readUInt32LE(24)
  let off = 12
  while (off < wavBytes.length - 8 && wavBytes.toString('ascii', off, off + 4) !== 'data') off += 8 + wavBytes.readUInt32LE(off + 4)
  const samples = []
  for (let i = off + 8; i + 1 < wavBytes.length; i += 2) samples.push(wavBytes.readInt16LE(i))
  return pcmPeak(samples, rate)
}

/** The same of G.711 mu-law bytes (8 kHz): what the Twilio stand-in's far party heard. */
export function pcmuPeak(bytes) {
  const samples = [...bytes].map((u) => {
    const v = ~u & 0xff
    const t = (((v & 0x0f) << 3) + 0x84) << ((v & 0x70) >> 4)
    return v & 0x80 ? 0x84 - t : t - 0x84
  })
  return pcmPeak(samples, 8000)
}

/** The strongest frequency (200..3400 Hz, 10 Hz steps) of one second from the middle of `samples`. */
export function pcmPeak(samples, rate) {
  const mid = Math.floor(samples.length / 2)
  const x = samples.slice(Math.max(0, mid - rate / 2), mid + rate / 2)
  const power = []
  for (let f = 200; f <= 3400; f += 10) {
    let re = 0, im = 0
    for (let i = 0; i < x.length; i++) { const a = (2 * Math.PI * f * i) / rate; re += x[i] * Math.cos(a); im -= x[i] * Math.sin(a) }
    power.push([f, re * re + im * im])
  }
  const best = power.reduce((a, b) => (b[1] > a[1] ? b : a))
  const sorted = power.map((p) => p[1]).sort((a, b) => a - b)
  return { hz: best[0], over: best[1] / (sorted[sorted.length >> 1] || 1) }
}

/** Asserts the page's call carries `hz` (within 30 Hz, 30 dB over the median). */
export async function assertBrowserHears(page, hz, what) {
  const heard = await browserHears(page)
  assert.ok(Math.abs(heard.hz - hz) < 30 && heard.db - heard.median > 30, `${what}: the browser hears ${hz} Hz: ${JSON.stringify(heard)}`)
}

/** The page hangs up; once the baresip phone's call closed, asserts it heard `hz`. */
export async function browserHangsUpHaving(page, desk, hz, what) {
  await page.locator('[data-call-hangup]').click()
  await desk.event('CALL_CLOSED')
  const p = wavPeak(desk.heard())
  assert.ok(Math.abs(p.hz - hz) <= 10 && p.over > 100, `${what}: the desk phone hears ${hz} Hz: ${JSON.stringify(p)}`)
}

/** The baresip phone hangs up; once the page's call is gone, asserts it heard `hz`. */
export async function deskHangsUpHaving(page, desk, hz, what) {
  desk.command('hangup')
  await desk.event('CALL_CLOSED')
  await page.locator('[data-call-timer]').waitFor({ state: 'detached', timeout: 15000 })
  const p = wavPeak(desk.heard())
  assert.ok(Math.abs(p.hz - hz) <= 10 && p.over > 100, `${what}: the desk phone hears ${hz} Hz: ${JSON.stringify(p)}`)
}

/** The strongest frequency the page hears on the call, by WebAudio (Playwright's or Puppeteer's page). */
export function browserHears(p) {
  return p.evaluate(async () => {
    const el = document.getElementById('gosip-phone-audio')
    const ctx = new AudioContext()
    const src = ctx.createMediaStreamSource(el.srcObject)
    const an = ctx.createAnalyser()
    an.fftSize = 8192
    src.connect(an)
    await new Promise((r) => setTimeout(r, 1500))
    const bins = new Float32Array(an.frequencyBinCount)
    an.getFloatFrequencyData(bins)
    let best = 0
    for (let i = 1; i < bins.length; i++) if (bins[i] > bins[best]) best = i
    const sorted = [...bins].sort((a, b) => a - b)
    await ctx.close()
    return { hz: (best * ctx.sampleRate) / an.fftSize, db: bins[best], median: sorted[sorted.length >> 1] }
  })
}
