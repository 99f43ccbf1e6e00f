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
  assert.equal(await page.locator('#f-did-number').inputValue(), STANDIN.number)
  assert.match(await page.getByLabel('Twilio number SID').inputValue(), /^PN/)
  await page.getByRole('button', { name: 'Add number' }).click()
  await page.getByRole('button', { name: `Set webhooks for ${STANDIN.number}` }).click()
  await page.getByText(`Twilio now sends calls and messages for ${STANDIN.number} to this system.`).waitFor()
  await screenshot(page, 'dids-linked')
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Messages' }).click()
  await page.getByRole('heading', { name: 'Messages', exact: true }).waitFor()
  await page.getByLabel('To', { exact: true }).fill('(555) 777-0000')
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
      await page.getByRole('button', { name: /\(555\) 777-0000/ }).click()
    }
  }
  assert.match(status, /delivered/)
  const seen = await standin.requests()
  assert.ok(JSON.stringify(seen).includes('Hello from the GoSIP UI'), 'the stand-in got the message')
  await screenshot(page, 'messages-delivered')
  await assertAccessible(page, 'messages')
  await page.close()
})

test('an MMS texted in through the stand-in appears live with its image and an unread badge', async (t) => {
  if (!standin) return t.skip('twilio-standin is not built')
  const page = await browser.newPage()
  await loginInBrowser(page, sys.base, ADMIN.email, ADMIN.password)
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Messages' }).click()
  await page.getByRole('heading', { name: 'Messages', exact: true }).waitFor()
  const png = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=='
  const r = await fetch(`${standin.base}/_control/sms`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ from: '+15558880000', to: STANDIN.number, body: 'Photo of the parcel', media: [{ content_type: 'image/png', base64: png }] }) })
  assert.ok(r.ok, await r.text())
  // No reload: the SSE "message" event refreshes the list.
  const conv = page.getByRole('button', { name: /\(555\) 888-0000/ })
  await conv.waitFor({ timeout: 15000 })
  assert.match(await conv.innerText(), /1 new/)
  await conv.click()
  const thread = page.getByRole('list', { name: 'Conversation', exact: true })
  await thread.getByText('Photo of the parcel').waitFor()
  await page.waitForFunction(() => document.querySelector('img[alt="Image 1 in message"]')?.naturalWidth === 1)
  await screenshot(page, 'messages-inbound-mms')
  await page.close()
})

test('a caller who gets no answer leaves a voicemail that plays with its transcript', async (t) => {
  if (!standin) return t.skip('twilio-standin is not built')
  const r = await fetch(`${standin.base}/_control/call`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ from: '+15557654321', to: STANDIN.number, dial: { outcome: 'no_answer' }, record: { secs: 5, transcript: 'Hi, it is Alice, call me back.' } }) })
  const out = await r.text()
  if (!r.ok) return t.skip(`the stand-in call scenario did not run (${r.status}: ${out.slice(0, 200)})`)
  const page = await browser.newPage()
  await loginInBrowser(page, sys.base, ADMIN.email, ADMIN.password)
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Voicemail' }).click()
  const deadline = Date.now() + 30000
  while (Date.now() < deadline && !(await page.getByText('Hi, it is Alice, call me back.').count())) {
    await page.waitForTimeout(1000)
    await page.reload()
  }
  await page.getByText('Hi, it is Alice, call me back.').waitFor({ timeout: 1000 })
  const d = await page.locator('audio').first().evaluate(async (a) => { a.muted = true; await a.play(); await new Promise((res) => a.addEventListener('timeupdate', res, { once: true })); a.pause(); return a.duration })
  assert.ok(d > 1, `the recording plays (${d} s)`)
  await screenshot(page, 'voicemail-from-twilio')
  await page.close()
})
