// The user portal in a real browser: dashboard counts, a voicemail played
// from a WAV in the data dir, call history filtered and exported to CSV, and
// a user who cannot see another user's calls, voicemail or messages.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, writeFileSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { startSystem, launchBrowser, screenshot, freePort } from './harness.mjs'
import { setupSystem, apiClient, loginInBrowser, assertAccessible, sql, wav } from './ui.mjs'

const BOB = { email: 'bob@gosip.test', password: 'Bob-pass-word-1' }
const CAROL = { email: 'carol@gosip.test', password: 'Carol-pass-word-1' }
let sys, browser, admin, ids = {}

before(async () => {
  sys = await startSystem()
  browser = await launchBrowser()
  admin = await setupSystem(sys)
  const bob = await admin.post('/users', { ...BOB, name: 'Bob', role: 'user' })
  const carol = await admin.post('/users', { ...CAROL, name: 'Carol', role: 'user' })
  ids.bob = bob.id ?? bob.user?.id
  ids.carol = carol.id ?? carol.user?.id
  mkdirSync(join(sys.data, 'voicemails'), { recursive: true })
  writeFileSync(join(sys.data, 'voicemails', 'bob-1.wav'), wav(2))
  writeFileSync(join(sys.data, 'voicemails', 'carol-1.wav'), wav(1))
  mkdirSync(join(sys.data, 'recordings'), { recursive: true })
  writeFileSync(join(sys.data, 'recordings', 'ca0001.wav'), wav(3))
  const cdr = 'INSERT INTO cdrs (call_sid, direction, from_number, to_number, user_id, started_at, answered_at, ended_at, duration, disposition, recording_url) VALUES (?,?,?,?,?,?,?,?,?,?,?)'
  const vm = 'INSERT INTO voicemails (user_id, from_number, audio_url, transcript, transcript_status, duration, is_read, created_at) VALUES (?,?,?,?,?,?,?,?)'
  const msg = 'INSERT INTO messages (message_sid, direction, from_number, to_number, user_id, body, status, is_read, created_at) VALUES (?,?,?,?,?,?,?,?,?)'
  const r = sql(sys, [cdr, cdr, cdr, cdr, vm, vm, msg, msg], [
    ['CA0001', 'inbound', '+15550000001', '+15551230000', ids.bob, '2026-11-20T10:00:00.000Z', '2026-11-20T10:00:05.000Z', '2026-11-20T10:02:05.000Z', 120, 'answered', 'recordings/ca0001.wav'],
    ['CA0002', 'inbound', '+15550000002', '+15551230000', ids.bob, '2026-11-21T10:00:00.000Z', null, '2026-11-21T10:00:30.000Z', 0, 'missed', null],
    ['CA0003', 'outbound', '+15551230000', '+15550000003', ids.bob, '2026-11-22T10:00:00.000Z', '2026-11-22T10:00:02.000Z', '2026-11-22T10:01:02.000Z', 60, 'answered', null],
    ['CA0009', 'inbound', '+15559999999', '+15551230000', ids.carol, '2026-11-22T11:00:00.000Z', null, '2026-11-22T11:00:30.000Z', 0, 'voicemail', null],
    [ids.bob, '+15550000002', 'voicemails/bob-1.wav', 'Hi Bob, call me back about the invoice.', 'completed', 2, 0, '2026-11-21T10:00:40.000Z'],
    [ids.carol, '+15559999999', 'voicemails/carol-1.wav', 'Carol private message', 'completed', 1, 0, '2026-11-22T11:00:40.000Z'],
    ['SM0001', 'inbound', '+15550000001', '+15551230000', ids.bob, 'Lunch at noon?', 'received', 0, '2026-11-22T09:00:00.000Z'],
    ['SM0009', 'inbound', '+15559999999', '+15551230000', ids.carol, 'Carol secret text', 'received', 0, '2026-11-22T09:30:00.000Z'],
  ])
  ids.carolVm = r[5]
  ids.carolCdr = r[3]
})
after(async () => { await browser?.close(); await sys?.stop() })

test('the dashboard shows unread counts and recent calls, and DND toggles', async () => {
  const page = await browser.newPage()
  await loginInBrowser(page, sys.base, BOB.email, BOB.password)
  assert.equal((await page.locator('[data-unread-voicemails]').innerText()).trim(), '1')
  assert.equal((await page.locator('[data-unread-messages]').innerText()).trim(), '1')
  await page.getByRole('cell', { name: '(555) 000-0003', exact: true }).first().waitFor()
  const nav = await page.getByRole('navigation', { name: 'Main' }).innerText()
  assert.doesNotMatch(nav, /Devices|Users|System/, 'no admin links for a user')
  const dnd = page.getByRole('switch', { name: /Do not disturb/ })
  await dnd.click()
  await page.waitForFunction(() => document.querySelector('[role=switch]')?.getAttribute('aria-checked') === 'true')
  await page.reload()
  await page.getByRole('switch', { name: /Do not disturb: on/ }).waitFor()
  await screenshot(page, 'dashboard-user')
  await assertAccessible(page, 'dashboard')
  await page.getByRole('switch', { name: /Do not disturb/ }).click()
  await page.close()
})

test('a voicemail plays in the browser and is then marked read', async () => {
  const page = await browser.newPage()
  await loginInBrowser(page, sys.base, BOB.email, BOB.password)
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Voicemail' }).click()
  await page.getByText('Hi Bob, call me back about the invoice.').waitFor()
  assert.equal(await page.getByText('Carol private message').count(), 0)
  const audio = page.locator('audio').first()
  const played = await audio.evaluate(async (a) => {
    a.muted = true
    await a.play()
    await new Promise((r) => { const t = () => { if (a.currentTime > 0.2) { a.removeEventListener('timeupdate', t); r() } }; a.addEventListener('timeupdate', t) })
    a.pause()
    return { duration: a.duration, t: a.currentTime }
  })
  assert.ok(played.duration > 1.5 && played.duration < 2.5, `the 2 s WAV (${played.duration})`)
  await page.getByRole('button', { name: 'Mark as unread' }).waitFor()
  const list = await apiClient(sys.base)
  await list.login(BOB.email, BOB.password)
  const vms = await list.get('/voicemails')
  assert.equal(vms.items[0].is_read, true)
  await screenshot(page, 'voicemail')
  await assertAccessible(page, 'voicemail')
  await page.close()
})

test('call history filters by direction and exports the same calls as CSV', async () => {
  const page = await browser.newPage({ acceptDownloads: true })
  await loginInBrowser(page, sys.base, BOB.email, BOB.password)
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Calls' }).click()
  await page.getByRole('heading', { name: 'Call history' }).waitFor()
  await page.getByRole('cell', { name: '(555) 000-0001', exact: true }).waitFor()
  assert.equal(await page.getByRole('cell', { name: '(555) 999-9999', exact: true }).count(), 0, "Carol's call is not listed")
  await page.getByLabel('Direction').selectOption('inbound')
  await page.getByRole('button', { name: 'Filter' }).click()
  await page.waitForFunction(() => !document.body.innerText.includes('(555) 000-0003'))
  assert.equal(await page.locator('table[aria-label=Calls] tbody tr').count(), 2)
  // The recorded call plays in the page and offers a download.
  const rec = page.getByRole('region', { name: 'Scrollable table' }).locator('audio')
  assert.equal(await rec.count(), 1, 'one recorded call')
  const dur = await rec.evaluate(async (a) => { a.muted = true; await a.play(); await new Promise((r) => a.addEventListener('timeupdate', r, { once: true })); a.pause(); return a.duration })
  assert.ok(dur > 2.5 && dur < 3.5, `the 3 s recording (${dur})`)
  const [rdl] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: 'Download' }).click()])
  assert.ok(readFileSync(await rdl.path()).subarray(0, 4).toString() === 'RIFF', 'a WAV file')
  await screenshot(page, 'calls')
  await assertAccessible(page, 'calls')
  const [download] = await Promise.all([page.waitForEvent('download'), page.locator('[data-csv]').click()])
  const csv = readFileSync(await download.path(), 'utf8')
  const lines = csv.trim().split(/\r?\n/)
  assert.match(lines[0], /direction/i, 'a header row')
  assert.equal(lines.length, 3, `header + 2 inbound calls:\n${csv}`)
  assert.ok(csv.includes('+15550000001') && csv.includes('+15550000002'))
  assert.ok(!csv.includes('+15550000003') && !csv.includes('+15559999999'))
  await page.close()
})

test("a user cannot see another user's voicemail, calls or messages", async () => {
  const bob = apiClient(sys.base)
  await bob.login(BOB.email, BOB.password)
  for (const p of [`/voicemails/${ids.carolVm}`, `/voicemails/${ids.carolVm}/audio`, `/cdrs/${ids.carolCdr}`]) {
    const e = await bob.get(p).then(() => null, (x) => x)
    assert.ok(e && [403, 404].includes(e.status), `${p} refused for Bob`)
  }
  const page = await browser.newPage()
  await loginInBrowser(page, sys.base, BOB.email, BOB.password)
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Messages' }).click()
  await page.getByRole('button', { name: /\(555\) 000-0001/ }).click()
  await page.getByRole('list', { name: 'Conversation', exact: true }).getByText('Lunch at noon?').waitFor()
  assert.equal(await page.getByText('Carol secret text').count(), 0)
  await screenshot(page, 'messages')
  await assertAccessible(page, 'messages')
  // Typing an admin address leads back to the dashboard.
  await page.goto(`${sys.base}/admin/users`)
  await page.getByRole('heading', { name: 'Dashboard' }).waitFor()
  // Carol's audio cannot be fetched by the browser session either.
  const status = await page.evaluate(async (id) => (await fetch(`/api/voicemails/${id}/audio`)).status, ids.carolVm)
  assert.ok([403, 404].includes(status))
  await page.close()
})

test('settings: a password change keeps the user logged in, and an API key is shown once', async () => {
  const page = await browser.newPage()
  await loginInBrowser(page, sys.base, CAROL.email, CAROL.password)
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Settings' }).click()
  await page.getByLabel('Current password').fill('wrong-password')
  await page.getByLabel('New password').fill('Carol-new-pass-2')
  await page.getByRole('button', { name: 'Change password' }).click()
  await page.getByRole('alert').first().waitFor()
  await page.getByLabel('Current password').fill(CAROL.password)
  await page.getByRole('button', { name: 'Change password' }).click()
  await page.getByText('Password changed').waitFor()
  await page.getByLabel('Send push notifications').uncheck()
  await page.getByRole('button', { name: 'Save notifications' }).click()
  await page.getByText('Saved.').waitFor()
  const carol = apiClient(sys.base)
  await carol.login(CAROL.email, 'Carol-new-pass-2')
  assert.equal((await carol.get('/settings')).notify_prefs.gotify.enabled, false)
  await page.getByLabel('Key name').fill('home automation')
  await page.getByRole('button', { name: 'Create key' }).click()
  const key = (await page.locator('[data-new-key]').innerText()).trim()
  assert.ok(key.length > 20)
  await page.getByRole('cell', { name: 'home automation', exact: true }).waitFor()
  await screenshot(page, 'settings-user')
  await assertAccessible(page, 'settings')
  await page.close()
})

test('notifications: another email address, an own Gotify server and per-event switches persist after a reload', async () => {
  const page = await browser.newPage()
  await loginInBrowser(page, sys.base, BOB.email, BOB.password)
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Settings' }).click()
  const email = page.getByRole('group', { name: 'Email' })
  const push = page.getByRole('group', { name: 'Push notifications (Gotify)' })
  // The destination starts as the login address (once the settings loaded).
  await page.waitForFunction((v) => document.querySelector('#f-n-email-address')?.value === v, BOB.email)
  // A bad address is refused by the API and the message shows beside the field.
  await email.getByLabel('Send email to').fill('bob at home')
  await page.getByRole('button', { name: 'Save notifications' }).click()
  await email.locator('[data-field-error]').getByText('must be an email address').waitFor()
  assert.equal(await email.getByLabel('Send email to').getAttribute('aria-invalid'), 'true')
  // A server without its token is refused too, beside the token field.
  await email.getByLabel('Send email to').fill('bob.pager@elsewhere.test')
  const closed = await freePort()
  // Bob's Gotify runs on this host: a loopback or LAN server is refused
  // (SSRF defence) until the admin allows it, as an admin would.
  await admin.put('/system/config', { values: { 'notify.allowed_private_hosts': '127.0.0.1' } })
  await push.getByLabel('Gotify server address').fill(`http://127.0.0.1:${closed}/push`)
  await page.getByRole('button', { name: 'Save notifications' }).click()
  await push.locator('[data-field-error]').getByText('is required with a server URL').waitFor()
  await push.getByLabel('Gotify app token').fill('Bob.App-Token1')
  await email.getByLabel('Text messages (SMS/MMS)').uncheck()
  await email.getByLabel('Missed calls').check()
  await push.getByLabel('Calls ending').check()
  await page.getByRole('button', { name: 'Save notifications' }).click()
  await page.getByText('Saved.').waitFor()

  await page.reload()
  await page.getByRole('heading', { name: 'Settings' }).waitFor()
  await page.waitForFunction(() => document.querySelector('#f-n-email-address')?.value === 'bob.pager@elsewhere.test')
  assert.equal(await email.getByLabel('Text messages (SMS/MMS)').isChecked(), false)
  assert.equal(await email.getByLabel('Missed calls').isChecked(), true)
  assert.equal(await email.getByLabel('New voicemail').isChecked(), true)
  assert.equal(await push.getByLabel('Calls ending').isChecked(), true)
  assert.equal(await push.getByLabel('Gotify server address').inputValue(), `http://127.0.0.1:${closed}/push`)
  assert.equal(await push.getByLabel('Gotify app token').inputValue(), '********')
  assert.equal(await email.getByLabel('System alerts').count(), 0, 'alerts are for admins')

  // The API has the nested form; the token is stored but never read back.
  const bob = apiClient(sys.base)
  await bob.login(BOB.email, BOB.password)
  const got = await bob.req('GET', '/settings')
  assert.equal(got.notify_prefs.email.address, 'bob.pager@elsewhere.test')
  assert.equal(got.notify_prefs.email.sms, false)
  assert.equal(got.notify_prefs.gotify.token, '********')
  assert.ok(!JSON.stringify(got).includes('Bob.App-Token1'))
  const [[[stored]]] = sql(sys, ['SELECT notify_prefs FROM users WHERE email = ?'], [[BOB.email]])
  assert.equal(JSON.parse(stored).gotify.token, 'Bob.App-Token1')

  // Saving again with the masked token keeps it; the test push goes to
  // Bob's own (closed) server and the real error comes back.
  await push.getByRole('button', { name: 'Send test push' }).click()
  await push.locator('[data-test-result=gotify]').getByText(/^Not sent: gotify /).waitFor()
  const [[[again]]] = sql(sys, ['SELECT notify_prefs FROM users WHERE email = ?'], [[BOB.email]])
  assert.equal(JSON.parse(again).gotify.token, 'Bob.App-Token1')
  // No mail server is set up here: the test email says so instead of "sent".
  await email.getByRole('button', { name: 'Send test email' }).click()
  await email.locator('[data-test-result=email]').getByText(/^Not sent: /).waitFor()
  await screenshot(page, 'settings-notifications')
  await assertAccessible(page, 'notification settings')
  await page.close()
})

test('the portal works from the keyboard alone', async () => {
  const page = await browser.newPage()
  await page.goto(`${sys.base}/login`)
  await page.getByRole('heading', { name: 'Log in' }).waitFor()
  // Skip link, the home link, then the email field.
  for (let i = 0; i < 5 && !(await page.evaluate(() => document.activeElement?.type === 'email')); i++) await page.keyboard.press('Tab')
  await page.keyboard.type(BOB.email)
  await page.keyboard.press('Tab')
  await page.keyboard.type(BOB.password)
  await page.keyboard.press('Enter')
  await page.getByRole('heading', { name: 'Dashboard' }).waitFor()
  // Tab to the DND switch and flip it with the space bar.
  for (let i = 0; i < 30; i++) {
    await page.keyboard.press('Tab')
    if (await page.evaluate(() => document.activeElement?.getAttribute('role') === 'switch')) break
  }
  assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('role')), 'switch')
  const before = await page.evaluate(() => document.activeElement.getAttribute('aria-checked'))
  await page.keyboard.press('Space')
  await page.waitForFunction((b) => document.querySelector('[role=switch]').getAttribute('aria-checked') !== b, before)
  await page.keyboard.press('Space')
  await page.waitForFunction((b) => document.querySelector('[role=switch]').getAttribute('aria-checked') === b, before)
  await page.close()
})

test('call history pages through the API, 20 calls a page', async () => {
  const cdr = 'INSERT INTO cdrs (call_sid, direction, from_number, to_number, user_id, started_at, duration, disposition) VALUES (?,?,?,?,?,?,?,?)'
  const rows = Array.from({ length: 24 }, (_, i) => [`CAP${i}`, 'inbound', `+1555010${String(i).padStart(4, '0')}`, '+15551230000', ids.carol, `2026-11-0${1 + (i % 9)}T0${i % 10}:00:00.000Z`, 10, 'answered'])
  sql(sys, rows.map(() => cdr), rows)
  const page = await browser.newPage()
  await loginInBrowser(page, sys.base, CAROL.email, 'Carol-new-pass-2')
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Calls' }).click()
  const pager = page.getByRole('navigation', { name: 'Calls pages' })
  await pager.getByText('Page 1 of 2 (25)').waitFor()
  assert.equal(await page.locator('table[aria-label=Calls] tbody tr').count(), 20)
  const answered = page.waitForResponse((r) => r.url().includes('/api/cdrs?') && r.url().includes('page=2'))
  await pager.getByRole('button', { name: 'Next' }).click()
  await answered
  await pager.getByText('Page 2 of 2 (25)').waitFor()
  assert.equal(await page.locator('table[aria-label=Calls] tbody tr').count(), 5)
  await page.close()
})

test('dark mode follows the system setting', async () => {
  const ctx = await browser.newContext({ colorScheme: 'dark' })
  const page = await ctx.newPage()
  await loginInBrowser(page, sys.base, BOB.email, BOB.password)
  const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor)
  const [r, g, b] = bg.match(/[\d.]+/g).map(Number)
  assert.ok(r + g + b < 150 || /oklch\(0\.[0-3]/.test(bg), `dark background (${bg})`)
  await screenshot(page, 'dashboard-dark')
  await assertAccessible(page, 'dark dashboard')
  await ctx.close()
})

test('on a phone in dark mode every portal screen fits the width and stays accessible', async () => {
  const ctx = await browser.newContext({ colorScheme: 'dark', viewport: { width: 375, height: 740 } })
  const page = await ctx.newPage()
  await loginInBrowser(page, sys.base, BOB.email, BOB.password)
  for (const [link, heading] of [['Calls', 'Call history'], ['Voicemail', 'Voicemail'], ['Messages', 'Messages'], ['Settings', 'Settings']]) {
    await page.getByRole('button', { name: 'Menu' }).click()
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: link, exact: true }).click()
    await page.getByRole('heading', { name: heading, exact: true }).waitFor()
    await page.waitForFunction(() => !document.body.innerText.includes('Loading…'))
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
    assert.ok(overflow <= 1, `${link}: no sideways scrolling (${overflow}px)`)
    await screenshot(page, `phone-dark-${link.toLowerCase()}`)
    await assertAccessible(page, `${link} on a phone in dark mode`)
  }
  await ctx.close()
})
