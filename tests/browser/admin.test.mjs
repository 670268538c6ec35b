// The admin console in headless Chromium, as an admin uses it: log in on the chat
// client, find alice on the Accounts page, grant credits (balance and ledger change),
// suspend her while a reply streams (her session and API key are refused with a
// message saying so, the reply stops), reactivate her, stop her next live reply from
// the Runs page, restrict a model to her role on the Access page and see it leave her
// model list (not the admin's), and export the audit log as CSV with those actions in it. No script
// runs on the console's pages; every action is a plain form.
//
// Runs on the shared harness (harness.mjs: what it needs and how to run it).
// Screenshots go to $TEST_OUTPUT_DIR (default: the temp dir's chorus-admin-console/).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PASSWORD, USER, logIn, scriptedProvider, useChorus, waitFor } from './harness.mjs';

const OUT = process.env.TEST_OUTPUT_DIR || path.join(os.tmpdir(), 'chorus-admin-console');
const ADMIN = 'root';
// A long reply at 10 tokens a second: still streaming when the admin acts.
const SCRIPT = Array.from({ length: 300 }, (_, i) => `word${i}`).join(' ');

async function shot(page, name) {
  fs.mkdirSync(OUT, { recursive: true });
  await page.screenshot({ path: path.join(OUT, `${name}.png`), fullPage: true });
}

/** A JSON call made by `page` with its session (same origin, so the Origin check passes). */
function call(page, method, url, body) {
  return page.evaluate(
    async ([m, u, b]) => {
      const r = await fetch(u, {
        method: m,
        credentials: 'same-origin',
        headers: b ? { 'content-type': 'application/json' } : {},
        body: b ? JSON.stringify(b) : undefined,
      });
      const text = await r.text();
      let json = null;
      try {
        json = JSON.parse(text);
      } catch {}
      return { status: r.status, body: json, text };
    },
    [method, url, body],
  );
}

/** Alice starts a reply in a new conversation; returns its run id. */
async function startReply(alice, content) {
  const conv = await call(alice, 'POST', '/api/conversations', {});
  assert.equal(conv.status, 201, conv.text);
  const sent = await call(alice, 'POST', `/api/conversations/${conv.body.id}/messages`, { content });
  assert.equal(sent.status, 202, sent.text);
  return sent.body.run_id;
}

/** A run's status through the console's API, with the admin's cookies (the console's
 * pages allow no script to fetch anything, so this goes through Playwright). */
async function runStatus(admin, baseUrl, run) {
  const r = await admin.request.get(`${baseUrl}/api/admin/runs/${run}`);
  assert.equal(r.status(), 200, await r.text());
  return (await r.json()).status;
}

describe('admin console in headless Chromium', { timeout: 120000 }, () => {
  const chorus = useChorus({
    // Two models, so that one can be taken away from a role.
    config: () =>
      scriptedProvider({ text: SCRIPT, tokensPerSecond: 10 }).map((line) =>
        line.startsWith('models = ') ? 'models = ["demo", "big"]' : line,
      ),
  });

  test('find, grant, suspend, reactivate, stop a run, export the audit log', async () => {
    const { page, baseUrl } = chorus;
    chorus.cli(['user', 'create', ADMIN, '--admin', '--password-stdin'], `${PASSWORD}\n`);

    // Alice, in her own browser: logged in, with an API key.
    const aliceContext = await page.context().browser().newContext();
    const alice = await aliceContext.newPage();
    await alice.goto(baseUrl);
    await logIn(alice);
    const key = await call(alice, 'POST', '/api/keys', { name: 'script' });
    assert.equal(key.status, 201, key.text);
    const apiKey = key.body.key;
    const withKey = () => fetch(`${baseUrl}/api/conversations`, { headers: { authorization: `Bearer ${apiKey}` } });
    assert.equal((await withKey()).status, 200);

    // The admin logs in on the chat client, then opens the console.
    await page.goto(baseUrl);
    await page.fill('#login-name', ADMIN);
    await page.fill('#login-password', PASSWORD);
    await page.click('#login-submit');
    await page.waitForSelector('#app-view', { state: 'visible' });
    await page.goto(`${baseUrl}/admin`);
    await page.waitForSelector('#streaming-now');
    await shot(page, '1-overview');

    // Accounts: search, open alice.
    await page.click('nav a[href="/admin/accounts"]');
    await page.fill('input[name="q"]', USER);
    await page.click('form.filters button[type="submit"]');
    await page.click(`#accounts a:text-is("${USER}")`);
    await page.waitForSelector('#summary');
    const accountUrl = page.url();
    const balanceBefore = await page.textContent('#balance');

    // Grant credits with a note: the balance and the ledger change.
    await page.fill('#grant input[name="amount"]', '7.5');
    await page.fill('#grant input[name="note"]', 'browser grant');
    await page.click('#grant button[type="submit"]');
    await page.waitForSelector('.notice');
    assert.equal(Number(await page.textContent('#balance')), Number(balanceBefore) + 7.5);
    assert.match(await page.textContent('#ledger tr:nth-child(2)'), /grant.*7\.5.*browser grant/s);
    await shot(page, '2-granted');

    // Suspend while alice's reply streams.
    const run = await startReply(alice, 'Tell me a long story');
    await waitFor('alice\'s reply streaming', async () => (await runStatus(page, baseUrl, run)) === 'streaming');
    await page.click('form[action$="/suspend"] button');
    await page.waitForSelector('#status.status-suspended');
    await shot(page, '3-suspended');
    await waitFor('the reply stopped', async () => (await runStatus(page, baseUrl, run)) === 'stopped');
    const me = await call(alice, 'GET', '/api/me');
    assert.equal(me.status, 403, me.text);
    assert.match(me.body.error.message, /suspended/);
    const byKey = await withKey();
    assert.equal(byKey.status, 403);
    assert.match(await byKey.text(), /suspended/);
    await alice.reload();
    await shot(alice, '4-alice-suspended');

    // Reactivate: her session and key work again.
    await page.click('form[action$="/reactivate"] button');
    await page.waitForSelector('#status.status-active');
    assert.equal((await call(alice, 'GET', '/api/me')).status, 200);
    assert.equal((await withKey()).status, 200);

    // Runs: alice's next live reply, stopped from the list.
    const live = await startReply(alice, 'Another long one');
    await page.goto(`${baseUrl}/admin/runs?status=active`);
    await page.waitForSelector(`tr[data-run="${live}"]`);
    await shot(page, '5-runs');
    await page.click(`tr[data-run="${live}"] button`);
    await page.waitForSelector('.notice');
    await waitFor('the live reply stopped', async () => (await runStatus(page, baseUrl, live)) === 'stopped');

    // Access: the user role may use scripted/demo only; alice's model picker loses
    // scripted/big (the admin's list keeps it).
    const aliceModels = async () => {
      await alice.reload();
      await alice.waitForSelector('#model-select option', { state: 'attached' });
      return alice.$$eval('#model-select option', (options) => options.map((o) => o.value));
    };
    assert.deepEqual(await aliceModels(), ['scripted/demo', 'scripted/big']);
    await page.click('nav a[href="/admin/access"]');
    await page.waitForSelector('#user-models');
    await page.check('#user-models input[name="mode"][value="only"]');
    await page.fill('#user-models textarea[name="names"]', 'scripted/demo');
    await page.click('#user-models button[type="submit"]');
    await page.waitForSelector('.notice');
    assert.equal(await page.textContent('#user-models .effective'), 'scripted/demo');
    assert.equal(await page.textContent('#admin-models .effective'), 'every one');
    await shot(page, '5b-access');
    assert.deepEqual(await aliceModels(), ['scripted/demo']);
    await shot(alice, '5c-alice-models');
    const adminModels = await page.request.get(`${baseUrl}/api/models`);
    assert.deepEqual(
      (await adminModels.json()).models.map((m) => m.id),
      ['scripted/demo', 'scripted/big'],
    );

    // The audit log on screen, and as CSV with every action.
    await page.goto(`${baseUrl}/admin/audit`);
    await page.waitForSelector('#audit');
    await shot(page, '6-audit');
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#csv')]);
    const csv = fs.readFileSync(await download.path(), 'utf8');
    fs.mkdirSync(OUT, { recursive: true });
    fs.writeFileSync(path.join(OUT, 'audit.csv'), csv);
    for (const action of ['grant', 'suspend', 'reactivate', 'stop_run', 'suspended_attempt', 'set_access']) {
      assert.ok(csv.includes(`,${action},`), `no ${action} in the CSV:\n${csv}`);
    }
    assert.ok(csv.includes('browser grant'), 'the grant note is not in the CSV');

    await page.goto(accountUrl);
    assert.deepEqual(chorus.pageErrors, []);
    assert.deepEqual(chorus.cspViolations, []);
    await aliceContext.close();
  });
});
