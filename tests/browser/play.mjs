// Opens a page in Debian's headless Chromium and prints the page's
// window.__result as JSON. Usage: node play.mjs URL
import { chromium } from 'playwright-core';

const url = process.argv[2];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  // The machine's network is closed: no background traffic, no sandbox as root.
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=no-user-gesture-required',
  ],
});
try {
  const page = await browser.newPage();
  const console_lines = [];
  page.on('console', (m) => console_lines.push(m.text()));
  page.on('pageerror', (e) => console_lines.push('pageerror: ' + e.message));
  await page.goto(url);
  await page.waitForFunction(() => window.__result, null, { timeout: 40000 });
  const result = await page.evaluate(() => window.__result);
  result.console = console_lines.slice(-20);
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
