// Headless Chromium for pkg/proxy's RFC 8441 test, driven by playwright-core.
// Usage: node chromium.js URL CHROMIUM TIMEOUT_MS
// Loads URL (a page served over h2 by zd-queue, whose script opens a
// WebSocket and sets window.zdResult when it is done) in a fresh profile,
// waits for the result and prints it as one JSON line, with the protocol
// the page came over. Exits 1 if the page did not finish in time.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

const [url, exe, timeout] = [process.argv[2], process.argv[3], +process.argv[4]];

(async () => {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'zd-chromium-'));
  let ctx;
  try {
    ctx = await chromium.launchPersistentContext(profile, {
      executablePath: exe,
      headless: true,
      ignoreHTTPSErrors: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
        '--ignore-certificate-errors'],
    });
    const page = ctx.pages()[0] || await ctx.newPage();
    const resp = await page.goto(url, { timeout });
    const proto = await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
    await page.waitForFunction(() => window.zdResult !== undefined, null, { timeout, polling: 100 });
    const result = await page.evaluate(() => window.zdResult);
    console.log(JSON.stringify({ status: resp.status(), pageProtocol: proto, ...result }));
    await ctx.close();
    fs.rmSync(profile, { recursive: true, force: true });
  } catch (err) {
    console.log(JSON.stringify({ error: String(err && err.message || err) }));
    if (ctx) await ctx.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
    process.exit(1);
  }
})();
