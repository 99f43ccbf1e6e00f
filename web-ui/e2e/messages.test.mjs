// A text message composed in the browser goes through twiliod's queue to the
// Twilio stand-in (e2e's twilio-standin binary), whose signed status
// callbacks come back through webd: the conversation shows it delivered.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { startSystem, launchBrowser, screenshot } from './harness.mjs'
import { ADMIN, STANDIN, setupSystem, loginInBrowser, assertAccessible, startStandin } from './ui.mjs'

let sys, browser, standin

before(async () => {
  sys = await startSystem()
  standin = await startStandin(sys)
  if (!standin) return
  browser = await launchBrowser()
  const admin = await setupSystem(sys, { did: null })
  await admin.put('/system/config', { 'twilio.api_base': standin.base, 'twilio.account_sid': STANDIN.accountSid, 'twilio.auth_token': STANDIN.authToken, 'system.public_url': sys.base })
})
after(async () => { standin?.stop(); await browser?.close(); await sys?.stop() })

test('a message sent from the UI reaches the Twilio stand-in and is shown delivered', async (t) => {
  if (!standin) return t.skip('twilio-standin is not built (cargo build --bins)')
  const page = await browser.newPage()
  await loginInBrowser(page, sys.base, ADMIN.email, ADMIN.password)
  // Link the account's number from Twilio's list and point its webhooks here.
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Numbers' }).click()
  await page.getByRole('button', { name: 'Show my Twilio numbers' }).click()
  await page.getByRole('button', { name: `Link ${STANDIN.number}` }).click()
  assert.equal(await page.getByLabel('Number (E.164)').inputValue(), STANDIN.number)
  assert.match(await page.getByLabel('Twilio number SID').inputValue(), /^PN/)
  await page.getByRole('button', { name: 'Add number' }).click()
  await page.getByRole('button', { name: `Set webhooks for ${STANDIN.number}` }).click()
  await page.getByText(`Twilio now sends calls and messages for ${STANDIN.number} to this system.`).waitFor()
  await screenshot(page, 'dids-linked')
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Messages' }).click()
  await page.getByRole('heading', { name: 'Messages', exact: true }).waitFor()
  await page.getByLabel('To (E.164)').fill('+15557770000')
  await page.getByLabel('Message', { exact: true }).fill('Hello from the GoSIP UI')
  await page.setInputFiles('#msg-media', { name: 'dot.png', mimeType: 'image/png', buffer: Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64') })
  await page.getByAltText('Preview of the attached image').waitFor()
  await page.getByRole('button', { name: 'Send' }).click()
  const thread = page.getByRole('list', { name: 'Conversation', exact: true })
  await thread.getByText('Hello from the GoSIP UI').waitFor()
  // The sent MMS shows its image, served back by webd.
  const img = thread.getByAltText('Image 1 in message')
  await img.waitFor()
  await page.waitForFunction(() => document.querySelector('img[alt="Image 1 in message"]')?.naturalWidth === 1)
  // Delivery status arrives by webhook; the view refreshes on the live event or a reload.
  const deadline = Date.now() + 30000
  let status = ''
  while (Date.now() < deadline) {
    status = (await page.locator('[data-status]').last().innerText().catch(() => '')).trim()
    if (/delivered/.test(status)) break
    await page.waitForTimeout(1000)
    if (!/delivered/.test(status)) {
      await page.reload()
      await page.getByRole('button', { name: /\+15557770000/ }).click()
    }
  }
  assert.match(status, /delivered/)
  const seen = await standin.requests()
  assert.ok(JSON.stringify(seen).includes('Hello from the GoSIP UI'), 'the stand-in got the message')
  await screenshot(page, 'messages-delivered')
  await assertAccessible(page, 'messages')
  await page.close()
})
