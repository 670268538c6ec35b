// The chat client's account dialog in headless Chromium: balance and usage drawn as
// charts after a priced reply, a link code issued with its expiry and redeemed from
// another web account (which then signs in to this one), an API key created with
// one scope, used, and revoked, another browser's session listed and ended, and a
// password change that signs the other sessions out.
//
// Runs on the shared harness (harness.mjs: what it needs and how to run it). The
// Matrix side of linking (a code from this dialog redeemed by a Matrix user on a real
// Synapse) is tests/tests/e2e/account_link_matrix.rs, which drives account_link.mjs.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { PASSWORD, USER, lastAssistant, logIn, pageApi, scriptedProvider, useChorus, waitFor } from './harness.mjs';

const SCREENSHOT = '/tmp/chorus-account.png';
const NEW_PASSWORD = 'a brand new passphrase';
const FIREFOX = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:130.0) Gecko/20100101 Firefox/130.0';

/** Logs in outside the page (another browser); returns its session cookie. */
async function loginElsewhere(baseUrl, name, password, userAgent = FIREFOX) {
  const r = await fetch(`${baseUrl}/api/auth/login`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'User-Agent': userAgent },
    body: JSON.stringify({ name, password }),
  });
  assert.equal(r.status, 200, `login of ${name} elsewhere: ${await r.text()}`);
  return r.headers.get('set-cookie').split(';')[0];
}

/** GET `path` with a cookie or an API key; the status and JSON body. */
async function getWith(baseUrl, path, { cookie, key, userAgent = FIREFOX }) {
  const headers = { 'User-Agent': userAgent };
  if (cookie) headers.Cookie = cookie;
  if (key) headers.Authorization = `Bearer ${key}`;
  const r = await fetch(`${baseUrl}${path}`, { headers });
  return { status: r.status, body: await r.json().catch(() => null) };
}

async function openAccount(page) {
  await page.click('#open-account');
  await page.waitForSelector('#account-dialog', { state: 'visible' });
}

async function closeAccount(page) {
  await page.click('#account-close');
  await page.waitForSelector('#account-dialog', { state: 'hidden' });
}

describe('account dialog in headless Chromium', { timeout: 120000 }, () => {
  const chorus = useChorus({
    config: () => [
      '[accounts]',
      'default_balance = 10.0',
      '',
      '[quota]',
      'enabled = true',
      'reserve_output_tokens = 64',
      // Credits per million tokens: every reply costs something.
      'default_prompt_price = 1000.0',
      'default_completion_price = 2000.0',
      '',
      ...scriptedProvider({ text: 'A short priced reply for the usage chart.', tokensPerSecond: 200 }),
    ],
    viewport: { width: 1280, height: 900 },
    timeout: 15000,
  });

  test('balance and usage are drawn as charts', async () => {
    const { page } = chorus;
    await page.goto(chorus.baseUrl + '/');
    await logIn(page);
    await page.fill('#input', 'hello');
    await page.press('#input', 'Enter');
    await waitFor('the reply', async () => (await lastAssistant(page))?.status === 'complete', 20000);

    const usage = (await pageApi(page, '/api/me/usage?days=30')).body;
    assert.ok(usage.balance < 10 && usage.balance > 0, JSON.stringify(usage));
    const today = usage.balance_by_day[usage.balance_by_day.length - 1].date;
    const spent = usage.by_day.find((d) => d.key === today);
    assert.ok(spent && spent.cost > 0 && spent.runs === 1, JSON.stringify(usage.by_day));

    await openAccount(page);
    await waitFor('the charts', () => page.$('#usage-chart svg .chart-dot'));
    const summary = await page.textContent('#usage-summary');
    assert.match(summary, /Last 30 days: 1 reply/);
    assert.ok(summary.includes(`Balance: ${Number(usage.balance.toFixed(4))} credits`), summary);
    // One bar and one point a day; today's bar is the reply's cost, the line ends at
    // the balance now and starts at zero (the account was made today).
    const bars = await page.$$eval('#usage-chart .chart-bar', (all) =>
      all.map((b) => ({ date: b.dataset.date, cost: Number(b.dataset.cost), height: Number(b.getAttribute('height')) })),
    );
    assert.equal(bars.length, 30);
    const todayBar = bars.find((b) => b.date === today);
    assert.equal(todayBar.cost, spent.cost);
    assert.ok(todayBar.height > 0);
    assert.ok(bars.filter((b) => b.date !== today).every((b) => b.cost === 0 && b.height === 0));
    const dots = await page.$$eval('#usage-chart .chart-dot', (all) =>
      all.map((d) => ({ date: d.dataset.date, balance: Number(d.dataset.balance) })),
    );
    assert.equal(dots.length, 30);
    assert.deepEqual(dots[29], { date: today, balance: usage.balance });
    assert.equal(dots[0].balance, 0);
    assert.match(await page.textContent('#usage-models'), /scripted\/demo: 1 reply/);
    // A shorter window redraws.
    await page.selectOption('#usage-days', '7');
    await waitFor('a 7-day chart', async () => (await page.$$('#usage-chart .chart-bar')).length === 7);
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    await closeAccount(page);
  });

  test('a link code is shown with its expiry and redeemed from another account', async () => {
    const { page } = chorus;
    await openAccount(page);
    const before = Date.now();
    await page.click('#link-issue');
    await page.waitForSelector('#link-issued', { state: 'visible' });
    const code = (await page.textContent('#link-code')).trim();
    assert.match(code, /^[A-Z0-9]{4}-[A-Z0-9]{4}$/);
    const expiresAt = Number(await page.getAttribute('#link-issued', 'data-expires-at'));
    assert.ok(expiresAt > before + 9 * 60000 && expiresAt <= Date.now() + 10 * 60000, String(expiresAt));
    assert.match(await page.textContent('#link-expiry'), /works once, until .* \((10:00|9:\d\d) left\)/);

    // Bob redeems it in his own browser: his account joins alice's and he signs in
    // again, to alice's account (with his own name and password).
    chorus.createUser('bob', 'bob password 123');
    const bob = await chorus.newPage();
    await bob.goto(chorus.baseUrl + '/');
    await logIn(bob, 'bob', 'bob password 123');
    assert.equal(await bob.textContent('#me-name'), 'bob');
    await openAccount(bob);
    await bob.fill('#link-redeem-code', 'WRONG-CODE');
    await bob.click('#link-redeem-submit');
    await waitFor('the refusal of a wrong code', async () =>
      (await bob.isVisible('#link-status')) && /wrong|invalid|code/i.test(await bob.textContent('#link-status')),
    );
    await bob.fill('#link-redeem-code', code);
    await bob.click('#link-redeem-submit');
    await bob.waitForSelector('#login-view', { state: 'visible' });
    assert.match(await bob.textContent('#login-error'), /Linked/);
    await logIn(bob, 'bob', 'bob password 123');
    assert.equal(await bob.textContent('#me-name'), USER);
    await bob.context().close();

    // Alice's sign-in methods now include bob's name and password; the code is used.
    await closeAccount(page);
    await openAccount(page);
    await waitFor('bob among the sign-in methods', async () =>
      /Name and password — bob/.test(await page.textContent('#identities-list')),
    );
    await closeAccount(page);
  });

  test('an API key is created with one scope, shown once, used and revoked', async () => {
    const { page, baseUrl } = chorus;
    await openAccount(page);
    await page.fill('#key-name', 'read-only script');
    await page.uncheck('#key-scope-chat');
    await page.click('#key-create');
    await page.waitForSelector('#key-created', { state: 'visible' });
    const key = (await page.textContent('#key-secret')).trim();
    assert.match(key, /^chorus_/);
    const item = page.locator('#key-list li.key-item', { hasText: 'read-only script' });
    await item.waitFor();
    const listed = await item.textContent();
    assert.match(listed, / — read — /);
    assert.ok(!listed.includes(key), 'the list shows only the prefix');

    // The key reads but may not chat.
    const me = await getWith(baseUrl, '/api/me', { key });
    assert.equal(me.status, 200);
    assert.equal(me.body.name, USER);
    const write = await fetch(`${baseUrl}/api/conversations`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
      body: '{}',
    });
    assert.equal(write.status, 403);
    assert.equal((await write.json()).error.code, 'insufficient_scope');

    // Shown once: closed and opened again, the dialog no longer holds it.
    await closeAccount(page);
    await openAccount(page);
    assert.equal(await page.isVisible('#key-created'), false);
    assert.ok(!(await page.content()).includes(key));

    await item.locator('button.key-revoke').click();
    await waitFor('the key shown revoked', async () => /revoked/.test(await item.textContent()));
    assert.equal(await item.locator('button.key-revoke').count(), 0);
    assert.equal((await getWith(baseUrl, '/api/me', { key })).status, 401);
    await closeAccount(page);
  });

  test('another browser is listed and signed out', async () => {
    const { page, baseUrl } = chorus;
    const other = await loginElsewhere(baseUrl, USER, PASSWORD);
    assert.equal((await getWith(baseUrl, '/api/me', { cookie: other })).status, 200);

    await openAccount(page);
    const firefox = page.locator('#session-list li.session-item', { hasText: 'Firefox on Windows' });
    await firefox.waitFor();
    // This browser, bob's (signed in to this account since the link) and Firefox.
    const sessions = (await pageApi(page, '/api/me/sessions')).body.sessions;
    assert.equal(await page.locator('#session-list li.session-item').count(), sessions.length);
    assert.equal(sessions.length, 3, JSON.stringify(sessions));
    const current = page.locator('#session-list li[data-current="true"]');
    assert.equal(await current.count(), 1);
    assert.match(await current.textContent(), /Chrome on Linux.*this browser/);
    assert.equal(await current.locator('button').count(), 0);

    await firefox.locator('button.session-revoke').click();
    await waitFor('the other session gone', async () => (await firefox.count()) === 0);
    assert.equal(await page.locator('#session-list li.session-item').count(), 2);
    const after = await getWith(baseUrl, '/api/me', { cookie: other });
    assert.equal(after.status, 401);
    // This browser is still signed in.
    assert.equal((await pageApi(page, '/api/me')).status, 200);
    await closeAccount(page);
  });

  test('a password change signs the other sessions out', async () => {
    const { page, baseUrl } = chorus;
    const other = await loginElsewhere(baseUrl, USER, PASSWORD);
    assert.equal((await getWith(baseUrl, '/api/me', { cookie: other })).status, 200);
    await openAccount(page);
    // This browser, bob's and the new one.
    await waitFor('three sessions listed', async () => (await page.$$('#session-list li.session-item')).length === 3);

    await page.fill('#password-current', 'not my password');
    await page.fill('#password-new', NEW_PASSWORD);
    await page.click('#password-change');
    await waitFor('the refusal', async () => /current password is wrong/.test(await page.textContent('#password-status')));

    await page.fill('#password-current', PASSWORD);
    await page.fill('#password-new', NEW_PASSWORD);
    await page.click('#password-change');
    await waitFor('the change', async () => /Password changed; 2 other sessions signed out/.test(await page.textContent('#password-status')));
    await waitFor('one session listed', async () => (await page.$$('#session-list li.session-item')).length === 1);
    assert.equal((await getWith(baseUrl, '/api/me', { cookie: other })).status, 401);

    // The old password no longer logs in; the new one does; this browser stays in.
    const old = await fetch(`${baseUrl}/api/auth/login`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: USER, password: PASSWORD }),
    });
    assert.equal(old.status, 401);
    await loginElsewhere(baseUrl, USER, NEW_PASSWORD);
    await closeAccount(page);
    await page.reload();
    await page.waitForSelector('#app-view', { state: 'visible' });
    assert.equal(await page.textContent('#me-name'), USER);

    assert.deepEqual(chorus.pageErrors, []);
    assert.deepEqual(chorus.cspViolations, []);
    assert.deepEqual(chorus.dialogs, []);
  });
});
