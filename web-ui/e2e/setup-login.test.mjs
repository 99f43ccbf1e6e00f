// First run in a real browser: the setup wizard with its inline checks, then
// the login page and its lockout message.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { startSystem, launchBrowser, screenshot } from './harness.mjs'
import { ADMIN, STANDIN, assertAccessible, startStandin, sql, apiClient, setupToken } from './ui.mjs'

let sys, browser, standin
before(async () => {
  sys = await startSystem()
  browser = await launchBrowser()
  // Twilio is the stand-in: its REST base goes into the config table (the
  // one place settings live), and the daemons pick it up without a restart.
  standin = await startStandin(sys)
  if (standin) {
    sql(sys, "INSERT INTO config (key, value) VALUES ('twilio.api_base', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", [[standin.base]])
    // The wizard's Twilio set-up would point sipd at the new trunk's
    // pstn.twilio.com name, which a test must not resolve: a termination
    // address on loopback is set, and the set-up keeps an admin's own.
    sql(sys, "INSERT INTO config (key, value) VALUES ('twilio.termination_uri', '127.0.0.1:9') ON CONFLICT(key) DO UPDATE SET value = excluded.value")
    const deadline = Date.now() + 15000
    while (Date.now() < deadline) {
      const r = await fetch(`${sys.base}/api/setup/twilio-check`, { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-Requested-With': 'gosip' }, body: JSON.stringify({ account_sid: STANDIN.accountSid, auth_token: STANDIN.authToken, setup_token: setupToken(sys) }) })
      if (r.ok) break
      await new Promise((res) => setTimeout(res, 250))
    }
  }
})
after(async () => { standin?.stop(); await browser?.close(); await sys?.stop() })

test('the first-run wizard creates the admin, checks Twilio live, and adds the first number', async () => {
  const page = await browser.newPage()
  await page.goto(`${sys.base}/`)
  await page.getByRole('heading', { name: 'Welcome to GoSIP' }).waitFor()
  assert.match(page.url(), /\/setup$/)
  await assertAccessible(page, 'setup wizard')

  // Inline validation: nothing filled in.
  await page.getByRole('button', { name: 'Next' }).click()
  assert.match(await page.locator('#f-admin_email-err').innerText(), /email address/)
  assert.match(await page.locator('#f-setup_token-err').innerText(), /setup token/)
  // The token GoSIP printed at start (and wrote to data/setup-token).
  await page.getByLabel('Setup token').fill(setupToken(sys))
  await page.getByLabel('Admin email').fill(ADMIN.email)
  await page.getByLabel('Your name').fill('Ada Admin')
  await page.getByLabel('Password', { exact: true }).fill(ADMIN.password)
  await page.getByLabel('Repeat password').fill('something else')
  await page.getByRole('button', { name: 'Next' }).click()
  assert.match(await page.locator('#f-admin_password2-err').innerText(), /differ/)
  await page.getByLabel('Repeat password').fill(ADMIN.password)
  await screenshot(page, 'setup-1-admin')
  await page.getByRole('button', { name: 'Next' }).click()

  // Where you are: the browser's time zone and country come prefilled; a
  // made-up zone is refused before anything is sent.
  const tz = page.getByLabel('Time zone')
  assert.equal(await tz.inputValue(), await page.evaluate(() => Intl.DateTimeFormat().resolvedOptions().timeZone))
  assert.equal(await page.getByLabel('Country').inputValue(), 'US', 'en-US browser')
  await tz.fill('Mars/Olympus_Mons')
  await page.getByRole('button', { name: 'Next' }).click()
  assert.match(await page.locator('#f-timezone-err').innerText(), /from the list/)
  await tz.fill('America/New_York')
  await screenshot(page, 'setup-1b-location')
  await page.getByRole('button', { name: 'Next' }).click()

  // Twilio: a malformed SID is caught in the browser; well-formed credentials
  // are checked live by twiliod against (the stand-in for) Twilio.
  await page.getByLabel('Account SID').fill('AC123')
  await page.getByLabel('Auth token').fill('token')
  await page.getByRole('button', { name: 'Next' }).click()
  assert.match(await page.locator('#f-twilio_account_sid-err').innerText(), /32 hex/)
  await page.getByLabel('Account SID').fill(STANDIN.accountSid)
  await page.getByLabel('Auth token').fill('not-the-right-token')
  await page.getByRole('button', { name: 'Check credentials' }).click()
  await page.locator('#f-twilio_auth_token-err').waitFor()
  assert.match(await page.locator('#f-twilio_auth_token-err').innerText(), /Twilio refused/)
  await screenshot(page, 'setup-2-twilio-refused')
  await assertAccessible(page, 'setup wizard with field errors')
  if (standin) {
    await page.getByLabel('Auth token').fill(STANDIN.authToken)
    await page.getByRole('button', { name: 'Check credentials' }).click()
    await page.locator('[data-twilio-ok]').waitFor()
    assert.match(await page.locator('[data-twilio-ok]').innerText(), /Credentials work/)
    await screenshot(page, 'setup-2-twilio-ok')
    await page.getByRole('button', { name: 'Next' }).click()
  } else {
    await page.getByRole('button', { name: 'Skip Twilio for now' }).click()
  }

  await page.getByLabel('Public URL').fill('https://pbx.gosip.test')
  // The addresses sipd detected are offered; the LAN one is kept as found
  // (so it is not pinned), the public one is typed (behind a router).
  await page.waitForFunction(() => document.querySelector('#f-lan_address')?.value === '127.0.0.1')
  assert.match(await page.getByText(/^Detected: 127\.0\.0\.1\./).innerText(), /Change it only if/)
  await page.getByLabel('Public address or host name').fill('203.0.113.9')
  await screenshot(page, 'setup-3-addresses')
  await page.getByRole('button', { name: 'Next' }).click()
  // Typed as people dial it: too short for a US number is refused by the
  // server beside the field, a national number is stored as +1....
  await page.getByLabel('Phone number').fill('555-1234')
  await page.getByRole('button', { name: 'Finish setup' }).click()
  await page.locator('#f-did_number-err').waitFor()
  assert.match(await page.locator('#f-did_number-err').innerText(), /phone number/)
  await page.getByLabel('Phone number').fill('(555) 123-0000')
  await page.getByLabel('Name').fill('Main line')
  await screenshot(page, 'setup-4-did')
  await page.getByRole('button', { name: 'Finish setup' }).click()

  if (standin) {
    // With Twilio's credentials given, the wizard sets the Twilio side up
    // and says what it did: the trunk, GoSIP's credentials on it, the number.
    await page.locator('[data-setup-twilio]').waitFor()
    await page.getByText('Twilio is set up for GoSIP. What was done:').waitFor({ timeout: 20000 })
    const did = await page.getByRole('list', { name: 'What the Twilio set-up did' }).innerText()
    assert.match(did, /Created the SIP trunk "GoSIP"/)
    assert.match(did, /Added GoSIP's user "gosip-/)
    assert.match(did, /origination URI to sip:203\.0\.113\.9:/)
    // The typed number is not one of the stand-in account's: said plainly.
    assert.match(did, /\+15551230000: not in this Twilio account/)
    await assertAccessible(page, 'setup wizard: Twilio set up')
    await screenshot(page, 'setup-5-twilio-set-up')
    await page.getByRole('button', { name: 'Go to the dashboard' }).click()
  }
  await page.getByRole('heading', { name: 'Dashboard' }).waitFor()
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Devices' }).waitFor()
  await screenshot(page, 'dashboard-admin')

  // The wizard is closed for good, and the number exists.
  await page.goto(`${sys.base}/setup`)
  await page.getByRole('heading', { name: 'Dashboard' }).waitFor()
  await page.getByRole('link', { name: 'Numbers' }).click()
  await page.getByRole('cell', { name: '(555) 123-0000', exact: true }).waitFor()
  // Edit the number: owner and SMS-to-email forwarding.
  await page.getByRole('button', { name: 'Edit +15551230000' }).click()
  await page.getByLabel('Owner (gets voicemail and messages)').selectOption({ label: ADMIN.email })
  await page.getByLabel("Forward incoming SMS to the owner's email").check()
  await page.getByRole('button', { name: 'Save number' }).click()
  // The list reloads after the save answers.
  await page.getByRole('button', { name: 'Add number' }).waitFor()
  await page.waitForFunction(() => [...document.querySelectorAll('tr')].some((r) => r.innerText.includes('(555) 123-0000') && r.innerText.includes('to email')))
  assert.match(await page.getByRole('row', { name: /\(555\) 123-0000/ }).innerText(), /admin@gosip\.test/)
  if (standin) {
    const admin = apiClient(sys.base)
    await admin.login(ADMIN.email, ADMIN.password)
    const cfg = await admin.get('/system/config')
    assert.equal(cfg.values['twilio.account_sid'], STANDIN.accountSid, 'the checked credentials were saved')
    assert.equal(cfg.values['system.public_url'], 'https://pbx.gosip.test')
    assert.equal(cfg.values['system.timezone'], 'America/New_York')
    assert.equal(cfg.values['system.default_country'], '1')
    assert.equal(cfg.values['sip.public_address'], '203.0.113.9')
    assert.equal(cfg.values['sip.local_address'], '', 'the detected LAN address is not pinned')
  }
  await page.close()
})

test('the login page shows the lockout message after too many wrong passwords', async () => {
  const ctx = await browser.newContext()
  const page = await ctx.newPage()
  await page.goto(`${sys.base}/login`)
  await page.getByRole('heading', { name: 'Log in' }).waitFor()
  await assertAccessible(page, 'login page')
  await page.getByLabel('Email').fill(ADMIN.email)
  let lockout = ''
  for (let i = 0; i < 7 && !lockout; i++) {
    await page.getByLabel('Password').fill(`wrong-password-${i}`)
    const answered = page.waitForResponse((r) => r.url().endsWith('/api/auth/login'))
    await page.getByRole('button', { name: 'Log in' }).click()
    await answered
    await page.getByRole('alert').waitFor()
    if (await page.locator('[data-lockout]').count()) lockout = await page.locator('[data-lockout]').innerText()
  }
  assert.match(lockout, /15|lock|too many/i, 'a lockout message after 5 failures')
  await screenshot(page, 'login-locked')
  // Even the right password is refused while locked.
  await page.getByLabel('Password').fill(ADMIN.password)
  await page.getByRole('button', { name: 'Log in' }).click()
  await page.locator('[data-lockout]').waitFor()
  assert.doesNotMatch(page.url(), /\/$/)
  await ctx.close()
})
