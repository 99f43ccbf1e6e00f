// Admin screens in a real browser against the real daemons: devices with
// their one-time credentials and QR code, a time rule seen in "test a call",
// every admin screen accessible, and the client's paths in the OpenAPI document.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { startSystem, launchBrowser, screenshot } from './harness.mjs'
import { ADMIN, setupSystem, loginInBrowser, assertAccessible, decodeQr } from './ui.mjs'
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

test('every admin screen renders with data or an empty state and no serious accessibility problems', async () => {
  for (const [link, heading, shot] of [['Numbers', 'Phone numbers', 'dids'], ['Users', 'Users', 'users'], ['System', 'System settings', 'system'], ['Security', 'Security log', 'security'], ['Calls', 'Call history', 'calls-admin'], ['Messages', 'Messages', 'messages-admin'], ['Settings', 'Settings', 'settings-admin']]) {
    await nav(link)
    await page.getByRole('heading', { name: heading, exact: true }).waitFor()
    await page.waitForFunction(() => !document.body.innerText.includes('Loading…'), null, { timeout: 10000 })
    await screenshot(page, shot)
    await assertAccessible(page, link)
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
  await ctx.close()
})
