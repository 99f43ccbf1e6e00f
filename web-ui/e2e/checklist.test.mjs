// The first-run checklist on the admin's dashboard ticks itself as the real
// system changes: Twilio connected (the stand-in accepting the credentials),
// a number linked, a baresip desk phone registering, business hours saved in
// the UI, a text delivered through the stand-in, and a call from the
// stand-in (Twilio's <Dial><Sip> to sipd) that the phone answers.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { startSystem, launchBrowser, screenshot } from './harness.mjs'
import { ADMIN, STANDIN, setupSystem, loginInBrowser, assertAccessible, startStandin, startBaresip } from './ui.mjs'

let sys, browser, standin, api, page, phone

before(async () => {
  sys = await startSystem()
  standin = await startStandin(sys)
  if (!standin) return
  browser = await launchBrowser()
  api = await setupSystem(sys, { did: null })
  page = await browser.newPage()
  await loginInBrowser(page, sys.base, ADMIN.email, ADMIN.password)
})
after(async () => { phone?.stop(); standin?.stop(); await browser?.close(); await sys?.stop() })

const step = (id) => page.locator(`[data-checklist] [data-step="${id}"]`)
async function ticked(id) {
  await page.waitForFunction((s) => document.querySelector(`[data-checklist] [data-step="${s}"]`)?.dataset.done === 'true', id, { timeout: 20000 })
}
async function states() {
  return page.evaluate(() => Object.fromEntries([...document.querySelectorAll('[data-checklist] [data-step]')].map((li) => [li.dataset.step, li.dataset.done === 'true'])))
}

test('the first-run checklist ticks itself as Twilio, a number, a phone, business hours and a text become real', async (t) => {
  if (!standin) return t.skip('twilio-standin is not built (cargo build --bins)')
  await page.locator('[data-checklist]').waitFor()
  assert.deepEqual(await states(), { twilio: false, number: false, phone: false, hours: false, call: false, text: false })
  assert.match(await step('twilio').innerText(), /Add your Twilio Account SID/)
  await assertAccessible(page, 'dashboard with the checklist')
  await screenshot(page, 'checklist-new')

  // Every page carries the banner while Twilio is not connected.
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Devices' }).click()
  await page.getByRole('heading', { name: 'Devices' }).waitFor()
  assert.match(await page.locator('[data-warnings]').innerText(), /Twilio is not connected/)
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Dashboard' }).click()
  await page.locator('[data-checklist]').waitFor()

  // Wrong credentials are not "connected".
  await api.put('/system/config', { 'twilio.api_base': standin.base, 'twilio.account_sid': STANDIN.accountSid, 'twilio.auth_token': 'not-the-token-0123456789abcdef01', 'system.public_url': sys.base })
  await page.waitForFunction(() => /refuses/.test(document.querySelector('[data-checklist] [data-step="twilio"]')?.innerText || ''), null, { timeout: 30000 })
  assert.equal((await states()).twilio, false)
  await api.put('/system/config', { 'twilio.auth_token': STANDIN.authToken })
  await ticked('twilio')
  // Connected: the banner goes away on the next page.
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Calls' }).click()
  await page.getByRole('heading', { name: 'Call history' }).waitFor()
  await page.waitForFunction(() => !/Twilio/.test(document.querySelector('[data-warnings]')?.innerText || ''), null, { timeout: 15000 })
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Dashboard' }).click()

  await api.post('/dids', { number: STANDIN.number, name: 'Main line' })
  await ticked('number')

  const device = await api.post('/devices', { name: 'Desk phone', user_id: null })
  await page.waitForFunction(() => /no phone has registered yet/.test(document.querySelector('[data-checklist] [data-step="phone"]')?.innerText || ''), null, { timeout: 20000 })
  // A real softphone, typed in with the credentials the screen showed.
  phone = await startBaresip(sys, { username: device.username, password: device.password })
  await ticked('phone').catch((e) => { throw new Error(`${e.message}\n${phone.log()}`) })

  // Business hours: follow the step's link and save the schedule there.
  await step('hours').getByRole('link').click()
  await page.getByRole('button', { name: 'Save schedule' }).click()
  await page.getByText('Schedule saved.').waitFor()
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Dashboard' }).click()
  await ticked('hours')

  await api.post('/messages', { to: '+15557770000', from: STANDIN.number, body: 'Testing GoSIP' })
  await ticked('text')

  // The call step waits for a real answered call through Twilio.
  const now = await states()
  assert.equal(now.call, false)
  assert.match(await step('call').innerText(), /Call your number from your mobile/)
  assert.match(await page.locator('[data-checklist]').innerText(), /5 of 6 done/)
  await screenshot(page, 'checklist-five-done')

  // Someone calls the number: Twilio (the stand-in) asks GoSIP, dials sipd
  // over SIP with the trunk credentials, the desk phone answers, they talk
  // for two seconds and hang up.
  await api.put('/system/config', { 'twilio.trunk_username': 'twilio-trunk', 'twilio.trunk_password': 'trunk-secret-pass', 'sip.public_address': '127.0.0.1' })
  await api.post('/routes', { name: 'Desk phone', priority: 0, condition_type: 'default', condition_data: {}, action_type: 'ring', action_data: { device_ids: [device.id] } })
  await new Promise((r) => setTimeout(r, 1500))
  const res = await fetch(`${standin.base}/_control/call`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ from: '+15557654321', to: STANDIN.number, dial: { outcome: 'sip', talk_secs: 2 } }),
  })
  const call = await res.json()
  assert.equal(res.status, 200, JSON.stringify(call))
  assert.equal(call.sip?.[0]?.code, 200, `the phone answered: ${JSON.stringify(call)}\n${phone.log()}`)
  // Every step done: the checklist leaves the dashboard.
  await page.waitForFunction(() => !document.querySelector('[data-checklist]'), null, { timeout: 20000 })
  const list = await api.get('/system/checklist')
  assert.equal(list.done, true)
  assert.deepEqual(list.steps.find((x) => x.id === 'call'), { ...list.steps.find((x) => x.id === 'call'), done: true, detail: 'A call through Twilio was answered.' })
  await screenshot(page, 'checklist-done')
})

test('a part of GoSIP that stops is named in the banner on every page, in plain words', async (t) => {
  if (!standin) return t.skip('twilio-standin is not built (cargo build --bins)')
  await sys.stopDaemon('mediad')
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Routing' }).click()
  await page.getByRole('heading', { name: 'Call routing' }).waitFor()
  await page.waitForFunction(() => /audio relay \(mediad\) is not working: calls connect without sound/.test(document.querySelector('[data-warnings]')?.innerText || ''), null, { timeout: 40000 })
  await screenshot(page, 'banner-mediad-down')
  await assertAccessible(page, 'routing with the banner')
})

test('users do not get the checklist, and its API is for admins', async (t) => {
  if (!standin) return t.skip('twilio-standin is not built (cargo build --bins)')
  await api.post('/users', { email: 'user@gosip.test', name: 'User', password: 'Us3r-pass-word', role: 'user' })
  const res = await fetch(`${sys.base}/api/system/checklist`)
  assert.equal(res.status, 401)
  const ctx = await browser.newContext()
  const p = await ctx.newPage()
  await loginInBrowser(p, sys.base, 'user@gosip.test', 'Us3r-pass-word')
  await p.locator('[data-unread-voicemails]').waitFor()
  assert.equal(await p.locator('[data-checklist]').count(), 0)
  await ctx.close()
})
