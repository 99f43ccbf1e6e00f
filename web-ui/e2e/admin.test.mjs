// Admin screens in a real browser against the real daemons: devices with
// their one-time credentials and QR code, a time rule seen in "test a call",
// every admin screen accessible, and the client's paths in the OpenAPI document.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { startSystem, launchBrowser, screenshot } from './harness.mjs'
import { ADMIN, setupSystem, loginInBrowser, assertAccessible, decodeQr, sipRegister, wav } from './ui.mjs'

let device
import { ENDPOINTS } from '../src/client.js'

let sys, browser, api, page
before(async () => {
  sys = await startSystem()
  browser = await launchBrowser()
  api = await setupSystem(sys)
  page = await browser.newPage()
  await loginInBrowser(page, sys.base, ADMIN.email, ADMIN.password)
})
after(async () => { await browser?.close(); await sys?.stop() })

async function nav(name) {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name, exact: true }).click()
}

test('every path the UI calls exists in /api/openapi.json', async () => {
  const doc = await (await fetch(`${sys.base}/api/openapi.json`)).json()
  const missing = []
  for (const [name, [method, path]] of Object.entries(ENDPOINTS)) {
    if (!doc.paths?.[`/api${path}`]?.[method.toLowerCase()]) missing.push(`${name}: ${method} /api${path}`)
  }
  assert.deepEqual(missing, [], 'client endpoints missing from the OpenAPI document')
})

test('creating a device shows its credentials once and a QR code that decodes to them', async () => {
  await nav('Devices')
  await page.getByRole('heading', { name: 'Devices' }).waitFor()
  await page.getByRole('button', { name: 'Add device' }).click()
  await page.locator('#f-dev-name-err').waitFor()
  await page.getByLabel('Name', { exact: true }).fill('Kitchen softphone')
  await page.getByLabel('Extension').fill('101')
  await page.getByLabel('Busy when in a call').check()
  await page.getByRole('button', { name: 'Add device' }).click()
  const creds = page.locator('[data-credentials]')
  await creds.waitFor()
  const username = (await page.locator('[data-cred-username]').innerText()).trim()
  const password = (await page.locator('[data-cred-password]').innerText()).trim()
  assert.ok(username.length >= 3 && password.length >= 12, `generated credentials (${username})`)
  const text = await decodeQr(page, '[data-qr]')
  assert.ok(text, 'the QR image decodes')
  assert.match(text, new RegExp(`^sip:${encodeURIComponent(username)}:`), text)
  assert.ok(decodeURIComponent(text).includes(password), 'the QR carries the password')
  // The step-by-step guide for the phone in hand carries the same values.
  const guide = page.locator('[data-setup-guide]')
  assert.match(await guide.innerText(), new RegExp(`Password:\\s*${password}`))
  await guide.getByLabel('Phone model').selectOption('yealink')
  assert.match(await guide.innerText(), new RegExp(`Register Name:\\s*${username}`))
  await screenshot(page, 'devices-created')
  await assertAccessible(page, 'devices')
  await page.getByRole('button', { name: 'I have saved them' }).click()
  // Listed, offline, and the password is not shown again.
  const row = page.locator(`[data-device="${username}"]`)
  await row.waitFor()
  assert.equal((await row.locator('[data-status]').innerText()).trim(), 'Offline')
  assert.ok(!(await page.content()).includes(password), 'password gone from the page')
  const listed = await api.get('/devices')
  assert.ok(!JSON.stringify(listed).includes(password), 'password never returned by the API')
  // The "Busy when in a call" box was saved with it (sipd reads it).
  assert.equal(listed.items.find((d) => d.username === username)?.busy_in_call, true)
  device = { username, password }
})

test('a phone registering over SIP shows up as registered, with its user agent, without a reload', async () => {
  const row = page.locator(`[data-device="${device.username}"]`)
  // sipd learns new devices from the database shortly after they are created;
  // like a phone, retry until the registration is accepted.
  let status = ''
  for (let i = 0; i < 40 && !/^SIP\/2\.0 200/.test(status); i++) {
    if (i) await new Promise((r) => setTimeout(r, 250))
    status = await sipRegister({ port: sys.ports.sip, username: device.username, password: device.password, userAgent: 'Grandstream GXP1760W 1.0.7.13' }).catch((e) => e.message)
  }
  assert.match(status, /^SIP\/2\.0 200/)
  await page.waitForFunction((u) => document.querySelector(`[data-device="${u}"] [data-status]`)?.textContent.trim() === 'Registered', device.username, { timeout: 10000 })
  assert.equal((await row.locator('[data-ua]').innerText()).trim(), 'Grandstream GXP1760W 1.0.7.13')
  await screenshot(page, 'devices-registered')

  // Edit: rename, and a new password replaces the old one (shown once, new QR).
  await page.getByRole('button', { name: 'Edit Kitchen softphone' }).click()
  await page.getByLabel('Name', { exact: true }).fill('Kitchen phone')
  await page.getByRole('button', { name: 'Save device' }).click()
  await page.getByRole('button', { name: 'Edit Kitchen phone' }).click()
  await page.getByRole('button', { name: 'New password' }).click()
  await page.locator('[data-credentials]').waitFor()
  const fresh = (await page.locator('[data-cred-password]').innerText()).trim()
  assert.notEqual(fresh, device.password)
  assert.ok(decodeURIComponent(await decodeQr(page, '[data-qr]')).includes(fresh), 'the new QR carries the new password')
  await page.getByRole('button', { name: 'I have saved them' }).click()
  // sipd picks the new secret up from the database within seconds.
  let old = ''
  for (let i = 0; i < 40; i++) {
    old = await sipRegister({ port: sys.ports.sip, username: device.username, password: device.password }).catch((e) => e.message)
    if (!/^SIP\/2\.0 200/.test(old)) break
    await new Promise((r) => setTimeout(r, 250))
  }
  assert.match(old, /^SIP\/2\.0 (401|403)|no SIP answer/, 'the old password no longer registers')
  device.password = fresh
})

test('a device set to TLS with SRTP required through the form is saved so, and its QR names the TLS port', async () => {
  await page.getByLabel('Name', { exact: true }).fill('Secure desk')
  await page.getByLabel('Transport', { exact: true }).selectOption('tls')
  await page.getByLabel('Call encryption (SRTP)').selectOption('required')
  await page.getByRole('button', { name: 'Add device' }).click()
  await page.locator('[data-credentials]').waitFor()
  const username = (await page.locator('[data-cred-username]').innerText()).trim()
  assert.equal((await page.locator('[data-cred-transport]').innerText()).trim(), 'TLS')
  assert.equal((await page.locator('[data-cred-server]').innerText()).trim().split(':').pop(), String(sys.ports.sips))
  // webd asked sipd for its TLS port: the QR sends the phone there over TLS.
  const text = await decodeQr(page, '[data-qr]')
  assert.match(text, new RegExp(`:${sys.ports.sips};transport=tls$`), text)
  const guide = await page.locator('[data-setup-guide]').innerText()
  assert.match(guide, /set SRTP \(media encryption\) to mandatory/, guide)
  await page.getByRole('button', { name: 'I have saved them' }).click()
  const row = page.locator(`[data-device="${username}"]`)
  await row.waitFor()
  assert.match(await row.locator('[data-secure]').innerText(), /TLS \+ SRTP/)
  const d = (await api.get('/devices')).items.find((x) => x.username === username)
  assert.deepEqual([d?.transport, d?.srtp], ['tls', 'required'])
})

test('a time rule built in the rule builder decides the call in "test a call"', async () => {
  await nav('Routing')
  await page.getByRole('heading', { name: 'Call routing' }).waitFor()
  const builder = page.getByRole('form', { name: 'Rule builder' })
  await builder.getByLabel('Rule name').fill('Weekend voicemail')
  await builder.getByLabel('Condition').selectOption('time')
  await builder.getByLabel('Time', { exact: true }).selectOption('custom')
  for (const d of ['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday']) await builder.getByLabel(d).uncheck()
  await builder.getByLabel('Saturday').check()
  await builder.getByLabel('Sunday').check()
  await builder.getByLabel('From').fill('00:00')
  await builder.getByLabel('Until').fill('23:59')
  await builder.getByLabel('Action').selectOption('voicemail')
  await builder.getByRole('button', { name: 'Add rule' }).click()
  await page.locator('[data-rule="Weekend voicemail"]').waitFor()

  const form = page.getByRole('form', { name: 'Test a call' })
  await form.getByLabel('Caller number').fill('+15557654321')
  // 2026-11-28 is a Saturday.
  await form.getByLabel('Date and time').fill('2026-11-28T11:00')
  await form.getByRole('button', { name: 'Test' }).click()
  await page.locator('[data-matched-rule]').waitFor()
  assert.equal((await page.locator('[data-matched-rule]').innerText()).trim(), 'Weekend voicemail')
  assert.match(await page.locator('[data-decision]').innerText(), /voicemail/i)
  // On a Wednesday the rule does not match.
  await form.getByLabel('Date and time').fill('2026-11-25T11:00')
  await form.getByRole('button', { name: 'Test' }).click()
  await page.waitForFunction(() => !document.querySelector('[data-matched-rule]')?.textContent.includes('Weekend voicemail'))
  await screenshot(page, 'routing')
  await assertAccessible(page, 'routing')
})

test('rules reorder by dragging, and a holiday from the schedule editor drives a holiday rule', async () => {
  const builder = page.getByRole('form', { name: 'Rule builder' })
  await builder.getByLabel('Rule name').fill('Holiday announcement')
  await builder.getByLabel('Condition').selectOption('time')
  await builder.getByLabel('Time', { exact: true }).selectOption('holidays')
  await builder.getByLabel('Action').selectOption('announcement')
  await builder.getByLabel('Announcement text').fill('We are closed today.')
  await builder.getByRole('button', { name: 'Add rule' }).click()
  const holidayRule = page.locator('[data-rule="Holiday announcement"]')
  await holidayRule.waitFor()
  // Drag the new (last) rule above the weekend rule: it now decides first.
  const saved = page.waitForResponse((r) => r.url().endsWith('/api/routes/reorder') && r.ok())
  await holidayRule.dragTo(page.locator('[data-rule="Weekend voicemail"]'))
  await page.waitForFunction(() => document.querySelector('[data-rule]')?.dataset.rule === 'Holiday announcement')
  await saved
  const routes = await api.get('/routes?sort=priority&order=asc')
  assert.deepEqual(routes.items.map((r) => r.name), ['Holiday announcement', 'Weekend voicemail'], 'order saved')
  // Keyboard: move it back down and up again.
  const savedDown = page.waitForResponse((r) => r.url().endsWith('/api/routes/reorder') && r.ok())
  await page.getByRole('button', { name: 'Move down: Holiday announcement' }).click()
  await savedDown
  await page.waitForFunction(() => document.querySelector('[data-rule]')?.dataset.rule === 'Weekend voicemail')
  const savedAgain = page.waitForResponse((r) => r.url().endsWith('/api/routes/reorder') && r.ok())
  await page.getByRole('button', { name: 'Move up: Holiday announcement' }).click()
  await page.waitForFunction(() => document.querySelector('[data-rule]')?.dataset.rule === 'Holiday announcement')
  await savedAgain

  // 2026-11-28 (a Saturday) becomes a holiday in the schedule editor.
  await page.getByLabel('Add a holiday').fill('2026-11-28')
  await page.getByRole('button', { name: 'Add', exact: true }).click()
  await page.getByLabel('Open on Saturday').check()
  await page.getByRole('button', { name: 'Save schedule' }).click()
  await page.getByText('Schedule saved.').waitFor()
  const cfg = await api.get('/system/config')
  assert.deepEqual(JSON.parse(cfg.values['routing.holidays']), ['2026-11-28'])
  assert.ok(JSON.parse(cfg.values['routing.business_hours']).sat, 'Saturday hours saved')
  const form = page.getByRole('form', { name: 'Test a call' })
  await form.getByLabel('Date and time').fill('2026-11-28T11:00')
  await form.getByRole('button', { name: 'Test' }).click()
  await page.waitForFunction(() => document.querySelector('[data-matched-rule]')?.textContent.trim() === 'Holiday announcement')
  await screenshot(page, 'routing-rules')
})

test('the blocklist and VIP list are managed on the routing screen and decide test calls', async () => {
  const block = page.getByRole('form', { name: 'Block a number' })
  await block.getByLabel('Number or pattern').fill('+1555(')
  await block.getByLabel('Match').selectOption('regex')
  await block.getByRole('button', { name: 'Block' }).click()
  await page.locator('#f-bl-pattern-err').waitFor()
  await block.getByLabel('Number or pattern').fill('+15550006666')
  await block.getByLabel('Match').selectOption('exact')
  await block.getByLabel('Reason').fill('robocaller')
  await block.getByRole('button', { name: 'Block' }).click()
  await page.getByRole('button', { name: 'Unblock +15550006666' }).waitFor()

  const vip = page.getByRole('form', { name: 'Add a caller' })
  await vip.getByLabel('Number', { exact: true }).fill('(555) 000-7777')
  await vip.getByLabel('Name').fill('Mum')
  await vip.getByRole('button', { name: 'Add caller' }).click()
  await page.getByRole('button', { name: 'Remove +15550007777 from vip' }).waitFor()

  const form = page.getByRole('form', { name: 'Test a call' })
  await form.getByLabel('Caller number').fill('+15550006666')
  await form.getByLabel('Date and time').fill('2026-11-25T11:00')
  await form.getByRole('button', { name: 'Test' }).click()
  await page.waitForFunction(() => /block/i.test(document.querySelector('[data-test-result]')?.textContent || ''))
  await screenshot(page, 'routing-blocked')
})

test('a two-level menu built in the rule builder is walked by "test a call" with keys', async () => {
  const builder = page.getByRole('form', { name: 'Rule builder' })
  await builder.getByLabel('Rule name').fill('Main menu')
  await builder.getByLabel('Condition').selectOption('default')
  await builder.getByLabel('Action').selectOption('menu')
  await page.locator('#f-rule-menu-greeting').fill('For sales press 1. For support press 2.')
  await page.locator('#f-rule-menu-key-0-action').selectOption('announcement')
  await page.locator('#f-rule-menu-key-0-text').fill('Sales is closed today.')
  await builder.getByRole('button', { name: 'Add a key' }).first().click()
  assert.equal(await page.locator('#f-rule-menu-key-1').inputValue(), '2', 'the next free key')
  await page.locator('#f-rule-menu-key-1-action').selectOption('menu')
  const inner = builder.getByRole('group', { name: 'Menu after key 2' })
  await inner.waitFor()
  await page.locator('#f-rule-menu-key-1-menu-key-0-action').selectOption('forward')
  await page.locator('#f-rule-menu-key-1-menu-key-0-number').fill('(555) 000-9999')
  // The inner menu has no greeting yet: the API's error shows beside it.
  await builder.getByRole('button', { name: 'Add rule' }).click()
  await page.locator('#f-rule-menu-key-1-menu-greeting-err').waitFor()
  assert.match(await page.locator('#f-rule-menu-key-1-menu-greeting-err').innerText(), /required/)
  await page.locator('#f-rule-menu-key-1-menu-greeting').fill('To reach the engineer on call press 1.')
  await builder.getByRole('button', { name: 'Add rule' }).click()
  await page.locator('[data-rule="Main menu"]').waitFor()
  const saved = (await api.get('/routes?sort=priority&order=asc')).items.find((r) => r.name === 'Main menu')
  assert.equal(saved.action_data.options['2'].action_data.options['1'].action_data.number, '+15550009999')

  const form = page.getByRole('form', { name: 'Test a call' })
  await form.getByLabel('Caller number').fill('+15557654321')
  await form.getByLabel('Date and time').fill('2026-11-25T11:00')
  await form.getByLabel('Keys pressed in menus').fill('21')
  await form.getByRole('button', { name: 'Test' }).click()
  await page.waitForFunction(() => document.querySelector('[data-matched-rule]')?.textContent.trim() === 'Main menu, key 2, key 1')
  assert.match(await page.locator('[data-decision]').innerText(), /forward/i)
  const heard = await page.locator('[data-menu-heard]').allInnerTexts()
  assert.deepEqual(heard, ['For sales press 1. For support press 2.', 'To reach the engineer on call press 1.'])
  await screenshot(page, 'routing-menu')
  await assertAccessible(page, 'routing-menu')
  // Editing shows the menu as saved, nested keys included.
  await page.getByRole('button', { name: 'Edit Main menu' }).click()
  await page.locator('#f-rule-menu-key-1-menu-greeting').waitFor()
  assert.equal(await page.locator('#f-rule-menu-key-1-menu-greeting').inputValue(), 'To reach the engineer on call press 1.')
  assert.equal(await page.locator('#f-rule-menu-key-1-menu-key-0-number').inputValue(), '+15550009999')
  // A recording instead of the text: not a recording is refused beside the
  // field; a WAV is uploaded at once and saved with the rule.
  await page.locator('#f-rule-menu-file').setInputFiles({ name: 'notes.wav', mimeType: 'audio/wav', buffer: Buffer.from('not audio at all') })
  await page.locator('#f-rule-menu-file-err').waitFor()
  assert.match(await page.locator('#f-rule-menu-file-err').innerText(), /not a WAV or MP3/)
  await page.locator('#f-rule-menu-file').setInputFiles({ name: 'greeting.wav', mimeType: 'audio/wav', buffer: wav(1) })
  await page.locator('[data-menu-audio]').waitFor()
  const savedAudio = page.waitForResponse((r) => /\/api\/routes\/\d+$/.test(r.url()) && r.request().method() === 'PUT' && r.ok())
  await builder.getByRole('button', { name: 'Save rule' }).click()
  await savedAudio
  const withAudio = (await api.get('/routes?sort=priority&order=asc')).items.find((r) => r.name === 'Main menu')
  assert.match(withAudio.action_data.audio ?? '', /^prompt:[0-9a-f]{32}\.wav$/)
})

test('every admin screen renders with data or an empty state and no serious accessibility problems', async () => {
  // A failed web login from somewhere else lands in the security log.
  const stranger = (await import('./ui.mjs')).apiClient(sys.base)
  await stranger.login('mallory@gosip.test', 'guessing-passwords').catch(() => {})
  for (const [link, heading, shot] of [['Numbers', 'Phone numbers', 'dids'], ['Users', 'Users', 'users'], ['System', 'System settings', 'system'], ['Security', 'Security log', 'security'], ['Calls', 'Call history', 'calls-admin'], ['Messages', 'Messages', 'messages-admin'], ['Settings', 'Settings', 'settings-admin']]) {
    await nav(link)
    await page.getByRole('heading', { name: heading, exact: true }).waitFor()
    await page.waitForFunction(() => !document.body.innerText.includes('Loading…'), null, { timeout: 10000 })
    await screenshot(page, shot)
    await assertAccessible(page, link)
    if (link === 'Security') {
      const row = page.getByRole('row', { name: /mallory@gosip\.test/ })
      assert.match(await row.innerText(), /web_login_failed/)
    }
  }
})

test('an admin adds a user with a role, and bad input is shown beside the field', async () => {
  await nav('Users')
  await page.getByLabel('Email').fill('not-an-email')
  await page.getByLabel('Password', { exact: true }).fill('short')
  await page.getByRole('button', { name: 'Add user' }).click()
  await page.locator('[data-field-error]').first().waitFor()
  assert.ok(await page.locator('#f-user-email-err, #f-user-password-err').count() >= 1)
  await page.getByLabel('Email').fill('bob@gosip.test')
  await page.getByLabel('Password', { exact: true }).fill('Bob-pass-word-1')
  await page.getByLabel('Role').selectOption('user')
  await page.getByRole('button', { name: 'Add user' }).click()
  await page.getByRole('cell', { name: 'bob@gosip.test', exact: true }).waitFor()

  // Role change, password reset (the new password works), delete.
  await page.getByRole('button', { name: 'Edit bob@gosip.test' }).click()
  await page.getByLabel('Role').selectOption('admin')
  await page.getByRole('button', { name: 'Save user' }).click()
  const bobRow = page.getByRole('row', { name: /bob@gosip\.test/ })
  await page.waitForFunction(() => [...document.querySelectorAll('tr')].some((r) => r.innerText.includes('bob@gosip.test') && /\badmin\b/.test(r.innerText)))
  await page.getByRole('button', { name: 'Reset password of bob@gosip.test' }).click()
  await page.getByLabel('New password').fill('short')
  await page.getByRole('button', { name: 'Set password', exact: true }).click()
  await page.locator('#f-reset-password-err').waitFor()
  await page.getByLabel('New password').fill('Bob-reset-pass-2')
  await page.getByRole('button', { name: 'Set password', exact: true }).click()
  await page.getByText(/Password of bob@gosip\.test changed/).waitFor()
  const bob = (await import('./ui.mjs')).apiClient(sys.base)
  const me = await bob.login('bob@gosip.test', 'Bob-reset-pass-2')
  assert.equal(me.user.role, 'admin')
  await bobRow.getByRole('button', { name: 'Delete bob@gosip.test' }).click()
  await bobRow.getByRole('button', { name: 'Confirm delete' }).click()
  await page.getByRole('cell', { name: 'bob@gosip.test', exact: true }).waitFor({ state: 'detached' })
})

test('the phone-sized layout has a working menu', async () => {
  const ctx = await browser.newContext({ viewport: { width: 375, height: 740 } })
  const p = await ctx.newPage()
  await loginInBrowser(p, sys.base, ADMIN.email, ADMIN.password)
  const menu = p.getByRole('button', { name: 'Menu' })
  await menu.click()
  await p.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Routing' }).click()
  await p.getByRole('heading', { name: 'Call routing' }).waitFor()
  const overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
  assert.ok(overflow <= 1, `no sideways scrolling on a phone (${overflow}px)`)
  await screenshot(p, 'routing-phone')
  await assertAccessible(p, 'routing on a phone')
  await ctx.close()
})

test('at 1280 px the nav is one row, and the theme choice turns dark mode on and off and is remembered', async () => {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: 'light' })
  const p = await ctx.newPage()
  await loginInBrowser(p, sys.base, ADMIN.email, ADMIN.password)
  const rows = await p.evaluate(() => new Set([...document.querySelectorAll('[data-nav-links] li')].map((li) => li.offsetTop)).size)
  assert.equal(rows, 1, 'every nav link on one row at 1280 px')
  const isDark = () => p.evaluate(() => document.documentElement.classList.contains('dark'))
  const bg = () => p.evaluate(() => getComputedStyle(document.body).backgroundColor)
  assert.equal(await isDark(), false, 'light when the system is light and nothing was chosen')
  const light = await bg()
  await p.getByLabel('Theme').selectOption('dark')
  assert.equal(await isDark(), true)
  assert.notEqual(await bg(), light, 'the page itself turns dark')
  await screenshot(p, 'dashboard-dark')
  await assertAccessible(p, 'dashboard in dark mode')
  await p.reload()
  await p.getByLabel('Theme').waitFor()
  assert.equal(await isDark(), true, 'the choice survives a reload')
  await p.getByLabel('Theme').selectOption('system')
  assert.equal(await isDark(), false, 'back to following the (light) system')
  await ctx.close()
})

test('every screen at 390 and 1280 px: nothing runs off the side, table actions stay on screen, screenshots for review', async () => {
  const screens = ['/', '/calls', '/voicemail', '/messages', '/settings', '/admin/devices', '/admin/dids', '/admin/routing', '/admin/users', '/admin/system', '/admin/security', '/status']
  for (const width of [390, 1280]) {
    const ctx = await browser.newContext({ viewport: { width, height: 844 } })
    const p = await ctx.newPage()
    await loginInBrowser(p, sys.base, ADMIN.email, ADMIN.password)
    for (const path of screens) {
      await p.goto(`${sys.base}${path}`)
      await p.locator('main h1').first().waitFor()
      await p.waitForFunction(() => !document.querySelector('main')?.innerText.includes('Loading…'))
      const name = `${path === '/' ? 'dashboard' : path.replace(/^\//, '').replaceAll('/', '-')}-${width}`
      await screenshot(p, name)
      const overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
      assert.ok(overflow <= 1, `${name}: the page scrolls sideways by ${overflow}px`)
      if (width === 390) {
        // Every action in a table row can be reached without scrolling sideways.
        const off = await p.evaluate(() => [...document.querySelectorAll('main tbody tr button, main tbody tr a')]
          .filter((el) => { const r = el.getBoundingClientRect(); return r.width > 0 && (r.left < 0 || r.right > window.innerWidth + 1) })
          .map((el) => el.getAttribute('aria-label') || el.textContent.trim()))
        assert.deepEqual(off, [], `${name}: actions off screen`)
        await assertAccessible(p, `${path} at 390 px`)
      }
    }
    await ctx.close()
  }
})

test('settings save with field errors beside the field, and a webhook endpoint is added with its secret shown once', async () => {
  await nav('System')
  await page.getByRole('heading', { name: 'System settings' }).waitFor()
  const general = page.getByRole('form', { name: 'General settings' })
  await general.getByLabel('Time zone').fill('Mars/Olympus_Mons')
  await general.getByRole('button', { name: 'Save general' }).click()
  await page.locator('#f-system-timezone-err').waitFor()
  await general.getByLabel('Time zone').fill('America/New_York')
  await general.getByRole('button', { name: 'Save general' }).click()
  await general.getByText(/^Saved/).waitFor()
  assert.equal((await api.get('/system/config')).values['system.timezone'], 'America/New_York')

  const hooks = page.getByRole('form', { name: 'Add a webhook' })
  await hooks.getByLabel('URL').fill('not a url')
  await hooks.getByRole('button', { name: 'Add webhook' }).click()
  await page.locator('#f-wh-url-err').waitFor()
  await hooks.getByLabel('URL').fill('https://hooks.gosip.test/in')
  await hooks.getByLabel('voicemail').check()
  await hooks.getByRole('button', { name: 'Add webhook' }).click()
  await page.getByText(/^Signing secret/).waitFor()
  await page.getByText('https://hooks.gosip.test/in').waitFor()
  const listed = await api.get('/webhook-endpoints')
  assert.deepEqual((listed.items ?? listed)[0].events, ['voicemail'])
  // Pause it (notifyd then sends it nothing) and resume it.
  await page.getByRole('button', { name: 'Pause webhook https://hooks.gosip.test/in' }).click()
  await page.locator('[data-hook-paused]').waitFor()
  const paused = await api.get('/webhook-endpoints')
  assert.equal((paused.items ?? paused)[0].enabled, false)
  await page.getByRole('button', { name: 'Resume webhook https://hooks.gosip.test/in' }).click()
  await page.locator('[data-hook-paused]').waitFor({ state: 'detached' })
  const resumed = await api.get('/webhook-endpoints')
  assert.equal((resumed.items ?? resumed)[0].enabled, true)
})

test('every setting the API knows is on the System screen in plain words, with its limits enforced beside the field', async () => {
  await nav('System')
  await page.getByRole('heading', { name: 'System settings' }).waitFor()
  await page.locator('[data-setting]').first().waitFor()
  const cfg = await api.get('/system/config')
  const missing = []
  for (const s of cfg.settings) if (!(await page.locator(`[data-setting="${s.key}"]`).count())) missing.push(s.key)
  assert.deepEqual(missing, [], 'settings without a place on the System screen')
  // Plain words: no setting key is visible (advanced ones are folded away).
  const text = await page.locator('main').innerText()
  assert.deepEqual(cfg.settings.filter((s) => text.includes(s.key)).map((s) => s.key), [])
  assert.equal(await page.locator('[data-setting="twilio.api_base"]').isVisible(), false, 'advanced settings start folded')
  await page.getByText('Show advanced settings').click()
  assert.equal(await page.locator('[data-setting="twilio.api_base"]').isVisible(), true)

  // A 5,000 s ring timeout is refused beside the field with the limit.
  const calls = page.getByRole('form', { name: 'Calls settings' })
  await calls.getByLabel('Ring for').fill('5000')
  await calls.getByRole('button', { name: 'Save calls' }).click()
  await page.locator('#f-calls-ring_timeout-err').waitFor()
  assert.match(await page.locator('#f-calls-ring_timeout-err').innerText(), /from 5 to 300 seconds/)
  assert.match(await page.locator('#f-calls-ring_timeout-hint').innerText(), /From 5 to 300 seconds/)
  await screenshot(page, 'system-limit-refused')
  await calls.getByLabel('Ring for').fill('45')
  await calls.getByRole('button', { name: 'Save calls' }).click()
  await calls.getByText(/^Saved/).waitFor()
  assert.equal(await page.locator('#f-calls-ring_timeout-err').count(), 0, 'the error goes once the field is fixed')
  // A setting the screen did not offer before: the shortest voicemail kept.
  const vm = page.getByRole('form', { name: 'Voicemail settings' })
  await vm.getByLabel('Shortest message kept').fill('5')
  await vm.getByRole('button', { name: 'Save voicemail' }).click()
  await vm.getByText(/^Saved/).waitFor()
  const after = (await api.get('/system/config')).values
  assert.deepEqual([after['calls.ring_timeout'], after['voicemail.min_length']], ['45', '5'])
  await assertAccessible(page, 'system settings with advanced open')
})

test('a backup downloads; a restore shows what it replaces and from when, asks first, and says it logged you out (the last test)', async () => {
  await nav('System')
  await page.getByRole('heading', { name: 'System settings' }).waitFor()
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download a backup' }).click()])
  const path = await download.path()
  const { statSync } = await import('node:fs')
  assert.ok(statSync(path).size > 1000, 'a non-trivial archive')
  await page.getByText(/^Downloaded /).waitFor()
  // A file that is not a backup changes nothing.
  await page.setInputFiles('#restore-file', { name: 'junk.tar', mimeType: 'application/x-tar', buffer: Buffer.from('not a backup') })
  await page.getByRole('button', { name: 'Check this file…' }).click()
  await page.getByText(/^Nothing was changed/).waitFor()
  // A device made after the backup: the restore takes it away.
  await api.post('/devices', { name: 'After backup', username: 'afterbackup', type: 'softphone' })
  // The real file: a confirmation names the backup's time and contents; Cancel changes nothing.
  await page.setInputFiles('#restore-file', path)
  await page.getByRole('button', { name: 'Check this file…' }).click()
  const confirm = page.getByRole('alertdialog')
  await confirm.waitFor()
  const text = await confirm.innerText()
  assert.match(text, /Replace everything with the backup from/)
  assert.match(text, /logs everyone out/)
  assert.match(text, /1 user\b/)
  await assertAccessible(page, 'restore confirmation')
  await screenshot(page, 'system-restore-confirm')
  await confirm.getByRole('button', { name: 'Cancel' }).click()
  assert.equal(await page.getByRole('alertdialog').count(), 0)
  assert.ok((await api.get('/devices')).items.some((d) => d.username === 'afterbackup'), 'cancel changed nothing')
  await page.getByRole('button', { name: 'Check this file…' }).click()
  await page.getByRole('alertdialog').getByRole('button', { name: /^Restore the backup from / }).click()
  // Restoring ended the session: the login page says why.
  await page.waitForURL(/\/login/)
  await page.locator('[data-restored]').waitFor()
  assert.match(await page.locator('[data-restored]').innerText(), /restored from the backup taken .* logged everyone out/)
  await screenshot(page, 'login-after-restore')
  await api.login(ADMIN.email, ADMIN.password)
  assert.ok(!(await api.get('/devices')).items.some((d) => d.username === 'afterbackup'), 'the restore took the later device away')
  // The automatic backups are listed with their own Restore.
  await loginInBrowser(page, sys.base, ADMIN.email, ADMIN.password)
  await nav('System')
  await page.locator('[data-backups]').waitFor()
  await page.locator('[data-backups]').getByRole('button', { name: /^Restore the backup taken / }).first().click()
  await page.getByRole('alertdialog').waitFor()
  await page.getByRole('alertdialog').getByRole('button', { name: 'Cancel' }).click()
})
