// The status page renders in a real Chromium against the real daemons.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { startSystem, launchBrowser, screenshot } from './harness.mjs'

let sys, browser
before(async () => { sys = await startSystem(); browser = await launchBrowser() })
after(async () => { await browser?.close(); await sys?.stop() })

test('the status page shows every daemon healthy', async () => {
  const page = await browser.newPage()
  await page.goto(`${sys.base}/status`, { waitUntil: 'networkidle' })
  await page.getByRole('heading', { name: 'System status' }).waitFor()
  for (const d of ['sipd', 'mediad', 'twiliod', 'notifyd', 'webd', 'database']) {
    const row = page.getByRole('row', { name: new RegExp(`^${d}`) })
    assert.match(await row.innerText(), /ok/, `${d} row`)
  }
  await screenshot(page, 'status')
})
