// A text message composed in the browser goes through twiliod's queue to the
// Twilio stand-in (e2e's twilio-standin binary), whose signed status
// callbacks come back through webd: the conversation shows it delivered.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, openSync } from 'node:fs'
import { spawn } from 'node:child_process'
import { join, resolve } from 'node:path'
import { startSystem, launchBrowser, screenshot, freePort } from './harness.mjs'
import { ADMIN, setupSystem, loginInBrowser, assertAccessible } from './ui.mjs'

const ROOT = resolve(import.meta.dirname, '..', '..')
const STANDIN = join(process.env.GOSIP_BIN_DIR || join(ROOT, 'target', 'debug'), 'twilio-standin')
const ACCOUNT_SID = 'AC0123456789abcdef0123456789abcdef'
const AUTH_TOKEN = 'standin-auth-token-0123456789abcd'
const NUMBER = '+15550001111'
let sys, browser, standin, standinBase

before(async () => {
  if (!existsSync(STANDIN)) return
  sys = await startSystem()
  const port = await freePort()
  standinBase = `http://127.0.0.1:${port}`
  const log = openSync(join(sys.dir, 'twilio-standin.log'), 'a')
  standin = spawn(STANDIN, ['--listen', `127.0.0.1:${port}`, '--gosip', sys.base, '--number', NUMBER], { stdio: ['ignore', log, log] })
  for (let i = 0; i < 100; i++) {
    try { await fetch(`${standinBase}/_control/requests`); break } catch { await new Promise((r) => setTimeout(r, 100)) }
  }
  browser = await launchBrowser()
  const admin = await setupSystem(sys, { did: null })
  await admin.put('/system/config', { 'twilio.api_base': standinBase, 'twilio.account_sid': ACCOUNT_SID, 'twilio.auth_token': AUTH_TOKEN, 'system.public_url': sys.base })
  await admin.post('/dids', { number: NUMBER, name: 'Stand-in line', sms_enabled: true, voice_enabled: true })
})
after(async () => { standin?.kill('SIGTERM'); await browser?.close(); await sys?.stop() })

test('a message sent from the UI reaches the Twilio stand-in and is shown delivered', { skip: !existsSync(STANDIN) && 'twilio-standin not built' }, async () => {
  const page = await browser.newPage()
  await loginInBrowser(page, sys.base, ADMIN.email, ADMIN.password)
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
  const seen = await (await fetch(`${standinBase}/_control/requests`)).json()
  assert.ok(JSON.stringify(seen).includes('Hello from the GoSIP UI'), 'the stand-in got the message')
  await screenshot(page, 'messages-delivered')
  await assertAccessible(page, 'messages')
  await page.close()
})
