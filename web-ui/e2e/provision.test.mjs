// A desk phone set up by its MAC address in a real browser against the real
// daemons: the admin gets the one address to type into the phone, the
// "phone" (a fetch with its User-Agent) gets its settings, registers with
// them, and the screen says it is done without a reload.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { startSystem, launchBrowser, screenshot } from './harness.mjs'
import { ADMIN, setupSystem, loginInBrowser, assertAccessible, sipRegister } from './ui.mjs'

let sys, browser, page
before(async () => {
  sys = await startSystem()
  browser = await launchBrowser()
  await setupSystem(sys)
  page = await browser.newPage()
  await loginInBrowser(page, sys.base, ADMIN.email, ADMIN.password)
})
after(async () => { await browser?.close(); await sys?.stop() })

const pValue = (xml, n) => new RegExp(`<P${n}>([^<]*)</P${n}>`).exec(xml)?.[1]

test('a desk phone set up by its MAC fetches its settings, registers with them, and the screen says done', async () => {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Devices', exact: true }).click()
  await page.getByRole('heading', { name: 'Devices' }).waitFor()
  await page.getByLabel('Name', { exact: true }).fill('Front desk')
  await page.getByLabel('Extension').fill('200')
  await page.getByLabel('Type').selectOption('grandstream')
  await page.getByRole('button', { name: 'Add device' }).click()
  await page.locator('[data-credentials]').waitFor()
  const username = (await page.locator('[data-cred-username]').innerText()).trim()
  await page.getByRole('button', { name: 'Set this desk phone up by its MAC address instead' }).click()

  const panel = page.locator('[data-provision]')
  await panel.getByLabel('MAC address').fill('C0:74:AD')
  await panel.getByRole('button', { name: 'Set up' }).click()
  await page.locator('#f-prov-mac-err').waitFor()
  await panel.getByLabel('MAC address').fill('C0:74:AD:12:34:56')
  await panel.getByLabel('Phone brand').selectOption('grandstream')
  await panel.getByRole('button', { name: 'Set up' }).click()
  await panel.locator('[data-provision-url]').waitFor()
  const url = (await panel.locator('[data-provision-url]').innerText()).trim()
  assert.match(url, new RegExp(`^http://[^/]+:${new URL(sys.base).port}/provision$`))
  assert.match(await panel.locator('[data-provision-status]').innerText(), /Waiting for the phone/)
  await screenshot(page, 'provision-steps')
  await assertAccessible(page, 'desk phone setup')

  // The phone asks for cfg<mac>.xml (here at the test's own address).
  const ua = 'Grandstream Model HW GXP2170 SW 1.0.11.3 DevId c074ad123456'
  const file = `${sys.base}/provision/cfgc074ad123456.xml`
  assert.equal((await fetch(file, { headers: { 'User-Agent': 'curl/8.5.0' } })).status, 404)
  const res = await fetch(file, { headers: { 'User-Agent': ua } })
  assert.equal(res.status, 200)
  const xml = await res.text()
  assert.equal(pValue(xml, 35), username)
  const password = pValue(xml, 34)
  assert.ok(password && password.length >= 16, 'a password in the file')

  let status = ''
  for (let i = 0; i < 40 && !/^SIP\/2\.0 200/.test(status); i++) {
    if (i) await new Promise((r) => setTimeout(r, 250))
    status = await sipRegister({ port: sys.ports.sip, username, password, userAgent: 'Grandstream GXP2170 1.0.11.3' }).catch((e) => e.message)
  }
  assert.match(status, /^SIP\/2\.0 200/)
  // Live: the registration event refreshes the panel and the row.
  await page.waitForFunction(() => /Done: the phone registered/.test(document.querySelector('[data-provision-status]')?.textContent || ''), null, { timeout: 10000 })
  await page.waitForFunction((u) => document.querySelector(`[data-device="${u}"] [data-status]`)?.textContent.trim() === 'Registered', username, { timeout: 10000 })
  assert.equal((await fetch(file, { headers: { 'User-Agent': ua } })).status, 404, 'not served after registering')
  await screenshot(page, 'provision-done')
})
