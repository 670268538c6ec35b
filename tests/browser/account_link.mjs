// Drives the chat client's account dialog in headless Chromium for the Rust
// end-to-end test tests/tests/e2e/account_link_matrix.rs, which owns the chorus
// server and the Matrix user on a real Synapse. Not a test file of its own (node
// --test does not pick it up): it talks to its caller in JSON lines.
//
//   env CHORUS_URL, CHORUS_USER, CHORUS_PASSWORD (the web account), CHROMIUM_PATH
//   (default /usr/bin/chromium), SCREENSHOT (where to save the last screen, optional)
//   stdout 1: {"code", "expires_at", "expiry"}  the link code the dialog shows
//   stdin  1: "linked"                           once the Matrix user redeemed it
//   stdout 2: {"conversations", "identities", "page_errors", "csp_violations"}
//             the conversation list and sign-in methods after a reload
// Anything going wrong prints {"error"} and exits 1.
import { chromium } from 'playwright-core';
import readline from 'node:readline';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function nextLine() {
  const { value, done } = await lines.next();
  if (done) throw new Error('the caller closed stdin');
  return value.trim();
}

let browser;
try {
  const url = env('CHORUS_URL');
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    headless: true,
    args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  });
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  page.setDefaultTimeout(20000);
  const pageErrors = [];
  const cspViolations = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) cspViolations.push(m.text());
  });

  await page.goto(url + '/');
  await page.fill('#login-name', env('CHORUS_USER'));
  await page.fill('#login-password', env('CHORUS_PASSWORD'));
  await page.click('#login-submit');
  await page.waitForSelector('#app-view', { state: 'visible' });

  await page.click('#open-account');
  await page.click('#link-issue');
  await page.waitForSelector('#link-issued', { state: 'visible' });
  out({
    code: (await page.textContent('#link-code')).trim(),
    expires_at: Number(await page.getAttribute('#link-issued', 'data-expires-at')),
    expiry: await page.textContent('#link-expiry'),
  });

  const command = await nextLine();
  if (command !== 'linked') throw new Error(`unexpected command ${JSON.stringify(command)}`);
  await page.click('#account-close');
  await page.reload();
  await page.waitForSelector('#app-view', { state: 'visible' });
  await page.waitForSelector('#conv-list .conv-item');
  const conversations = await page.$$eval('#conv-list .conv-item', (all) => all.map((b) => b.textContent));
  await page.click('#open-account');
  await page.waitForSelector('#identities-list li');
  const identities = await page.$$eval('#identities-list li .identity-text', (all) => all.map((li) => li.textContent));
  if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT });
  out({ conversations, identities, page_errors: pageErrors, csp_violations: cspViolations });
  await browser.close();
  process.exit(0);
} catch (e) {
  out({ error: String(e && e.stack ? e.stack : e) });
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
}
