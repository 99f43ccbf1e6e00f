// Time to first render of the dashboard in headless Chromium against the
// real daemons ($GOSIP_BIN_DIR, release in `make bench`): from navigation
// start to the dashboard's data on screen, cold (new browser context) and
// warm (reload). Prints numbers; asserts nothing about speed.
import { startSystem, launchBrowser } from './harness.mjs'
import { setupSystem } from './ui.mjs'

const RUNS = Number(process.env.RUNS || 10)
const sys = await startSystem()
const browser = await launchBrowser()
try {
  const api = await setupSystem(sys)
  const cookie = api.cookie.split('=')
  const cold = []
  const warm = []
  for (let i = 0; i < RUNS; i++) {
    const ctx = await browser.newContext()
    await ctx.addCookies([{ name: cookie[0], value: cookie[1], domain: '127.0.0.1', path: '/' }])
    const page = await ctx.newPage()
    for (const bucket of [cold, warm]) {
      if (bucket === cold) await page.goto(`${sys.base}/`)
      else await page.reload()
      await page.locator('[data-unread-voicemails]').waitFor()
      const t = await page.evaluate(() => window.__gosipDashboardReady)
      const fcp = await page.evaluate(() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? NaN)
      bucket.push({ t, fcp })
    }
    await ctx.close()
  }
  const stat = (xs) => { const s = [...xs].sort((a, b) => a - b); return `min ${s[0].toFixed(0)} median ${s[Math.floor(s.length / 2)].toFixed(0)} max ${s[s.length - 1].toFixed(0)}` }
  console.log(`dashboard rendered with data, cold (ms, ${RUNS} runs): ${stat(cold.map((x) => x.t))}`)
  console.log(`dashboard rendered with data, warm reload (ms): ${stat(warm.map((x) => x.t))}`)
  console.log(`first contentful paint, cold (ms): ${stat(cold.map((x) => x.fcp))}`)
} finally {
  await browser.close()
  await sys.stop()
}
