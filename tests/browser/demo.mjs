// Drives the /demo page of `vodkms dev` in Debian's headless Chromium and
// prints the page's window.vodkmsDemo as JSON once both its videos are
// playing past 2 s, refused, or failed. Usage: node demo.mjs URL signin USER PASSWORD | node demo.mjs URL anonymous
import { chromium } from 'playwright-core';

const [url, action, user, password] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=no-user-gesture-required',
  ],
});
try {
  const page = await browser.newPage();
  await page.goto(url);
  if (action === 'signin') {
    await page.fill('#username', user);
    await page.fill('#password', password);
    await page.click('#signin');
  } else {
    await page.click('#anonymous');
  }
  // Both videos: the AES-128 one and the CMAF one with Clear Key.
  await page.waitForFunction((signingIn) => {
    const settled = (d) => (d.state === 'playing' && d.currentTime > 2) || d.state === 'refused' || d.state === 'error';
    const d = window.vodkmsDemo;
    // A refused sign-in never starts the CMAF video; an anonymous viewer's
    // does start, and its refusal may come after the AES-128 one's.
    const neverStarted = signingIn && d.state === 'refused' && d.cmaf.state === 'idle';
    return settled(d) && (settled(d.cmaf) || neverStarted);
  }, action === 'signin', { timeout: 40000 });
  const demo = await page.evaluate(() => window.vodkmsDemo);
  demo.status = await page.textContent('#status');
  console.log(JSON.stringify(demo));
} finally {
  await browser.close();
}
