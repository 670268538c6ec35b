// The admin console in headless Chromium, as an admin uses it: log in on the chat
// client; alice links her Discord account (single sign-on against a local Discord
// speaking OAuth2's documented wire format); the admin finds her on the Accounts page
// by her Discord user id, grants credits (balance and ledger change), sets her own
// auto-refill, suspends her while a reply streams (her session and API key are
// refused with a message saying so, the reply stops), reactivates her, stops her next
// live reply from the Runs page, sees the replies on the Overview's charts and the
// provider on the Providers page, restarts the MCP server (the real
// @modelcontextprotocol/server-everything) on the Tools page and sees it connect again,
// restricts a model to her role on the Access page and sees it leave her model list
// (not the admin's), and exports the audit log as CSV with those actions in it. No script runs on the console's pages; every action is a
// plain form.
//
// Runs on the shared harness (harness.mjs: what it needs and how to run it).
// Screenshots go to $TEST_OUTPUT_DIR (default: the temp dir's chorus-admin-console/).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PASSWORD, USER, logIn, scriptedProvider, useChorus, waitFor } from './harness.mjs';

const OUT = process.env.TEST_OUTPUT_DIR || path.join(os.tmpdir(), 'chorus-admin-console');
const ADMIN = 'root';
const EVERYTHING = path.join(
  path.dirname(fileURLToPath(import.meta.url)),
  '..', 'mcp', 'node_modules', '@modelcontextprotocol', 'server-everything', 'dist', 'index.js',
);
// A long reply at 10 tokens a second: still streaming when the admin acts.
const SCRIPT = Array.from({ length: 300 }, (_, i) => `word${i}`).join(' ');

// Alice's Discord account, as the local Discord reports it.
const DISCORD_USER = {
  id: '80351110224678999',
  username: 'alice_d',
  discriminator: '0',
  global_name: 'Alice',
  avatar: null,
  email: null,
  verified: false,
};

/** A local Discord for OAuth2 (discord.com/developers/docs/topics/oauth2):
 * `GET /oauth2/authorize` consents at once and redirects back with `code` and `state`,
 * `POST /api/oauth2/token` exchanges a code for a token, `GET /api/users/@me` answers
 * the token's user. */
async function startFakeDiscord(user) {
  const codes = new Set();
  const tokens = new Set();
  const json = (res, status, body) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://discord.local');
    if (req.method === 'GET' && url.pathname === '/oauth2/authorize') {
      if (!(url.searchParams.get('scope') || '').split(' ').includes('identify')) {
        return json(res, 400, { error: 'invalid_scope' });
      }
      const code = crypto.randomUUID();
      codes.add(code);
      const back = new URL(url.searchParams.get('redirect_uri'));
      back.searchParams.set('code', code);
      back.searchParams.set('state', url.searchParams.get('state'));
      res.writeHead(302, { location: back.toString() });
      return res.end();
    }
    if (req.method === 'POST' && url.pathname === '/api/oauth2/token') {
      let body = '';
      for await (const chunk of req) body += chunk;
      const form = new URLSearchParams(body);
      if (form.get('grant_type') !== 'authorization_code' || !codes.delete(form.get('code'))) {
        return json(res, 400, { error: 'invalid_grant' });
      }
      const access = crypto.randomUUID();
      tokens.add(access);
      return json(res, 200, { access_token: access, token_type: 'Bearer', expires_in: 604800, scope: 'identify' });
    }
    if (req.method === 'GET' && url.pathname === '/api/users/@me') {
      const token = (req.headers.authorization || '').replace(/^Bearer /, '');
      return tokens.has(token) ? json(res, 200, user) : json(res, 401, { message: '401: Unauthorized', code: 0 });
    }
    return json(res, 404, { message: '404: Not Found', code: 0 });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${server.address().port}` };
}

const discord = await startFakeDiscord(DISCORD_USER);
after(() => discord.server.close());

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
    requires: [
      [
        '@modelcontextprotocol/server-everything',
        EVERYTHING,
        'run `npm ci` in tests/mcp (scripts/provision/30-mcp.sh)',
      ],
    ],
    shutdownMs: 12000, // chorus stops its MCP servers first
    config: ({ baseUrl }) => [
      '[auth]',
      `public_url = "${baseUrl}"`,
      '[[auth.oauth2]]',
      'id = "discord"',
      'name = "Discord"',
      'kind = "discord"',
      'client_id = "1234567890"',
      'client_secret = "browser-test-secret"',
      `authorize_url = "${discord.url}/oauth2/authorize"`,
      `token_url = "${discord.url}/api/oauth2/token"`,
      `api_url = "${discord.url}/api"`,
      '',
      // Two models, so that one can be taken away from a role.
      ...scriptedProvider({ text: SCRIPT, tokensPerSecond: 10 }).map((line) =>
        line.startsWith('models = ') ? 'models = ["demo", "big"]' : line,
      ),
      '',
      '[[mcp.servers]]',
      'id = "everything"',
      'command = "node"',
      `args = [${JSON.stringify(EVERYTHING)}, "stdio"]`,
    ],
  });

  test('find by Discord id, grant, refill, suspend, reactivate, stop a run, charts, providers, audit', async () => {
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

    // Alice links her Discord account from her account dialog.
    await alice.click('#open-account');
    await alice.click('#identities-link a');
    await alice.waitForSelector('#app-view', { state: 'visible' });
    const identities = await call(alice, 'GET', '/api/me/identities');
    assert.ok(
      JSON.stringify(identities.body).includes(DISCORD_USER.id),
      `Discord is not linked: ${identities.text}`,
    );

    // The admin logs in on the chat client, then opens the console.
    await page.goto(baseUrl);
    await page.fill('#login-name', ADMIN);
    await page.fill('#login-password', PASSWORD);
    await page.click('#login-submit');
    await page.waitForSelector('#app-view', { state: 'visible' });
    await page.goto(`${baseUrl}/admin`);
    await page.waitForSelector('#streaming-now');
    await shot(page, '1-overview');

    // Accounts: search by her Discord user id, open alice.
    await page.click('nav a[href="/admin/accounts"]');
    await page.fill('input[name="q"]', DISCORD_USER.id);
    await page.click('form.filters button[type="submit"]');
    assert.equal(await page.locator('#accounts tr').count(), 2, 'one account found, under the header');
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
    assert.match(await page.textContent('#identities'), new RegExp(`discord.*${DISCORD_USER.id}`, 's'));

    // Her own auto-refill: 2 credits at most every 12 hours.
    await page.fill('#refill-form input[name="amount"]', '2');
    await page.fill('#refill-form input[name="interval_hours"]', '12');
    await page.click('#refill-form button[type="submit"]');
    await page.waitForSelector('.notice');
    assert.match(await page.textContent('#refill'), /2 credits .* every 12 h \(its own\)/);
    assert.equal(await page.inputValue('#refill-form input[name="amount"]'), '2');

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

    // The overview charts the replies that ended, on every instance.
    await page.goto(`${baseUrl}/admin`);
    for (const [chart, bars] of [['#chart-hour', 60], ['#chart-day', 24], ['#chart-month', 30]]) {
      assert.equal(await page.locator(`${chart} rect`).count(), bars, chart);
    }
    const today = await page.locator('#chart-month rect').last().getAttribute('data-value');
    assert.ok(Number(today) >= 2, `today's bar shows ${today} replies`);
    await shot(page, '6-overview-charts');

    // Providers and models: the scripted provider with its attempts, its model's price.
    await page.click('nav a[href="/admin/providers"]');
    await page.waitForSelector('#providers tr[data-provider="scripted"]');
    assert.match(await page.textContent('#models'), /scripted\/demo/);
    await shot(page, '7-providers');

    // Tools: the MCP server connected with its tools; restarted, it connects again.
    await page.click('nav a[href="/admin/tools"]');
    const mcpRow = 'tr[data-server="everything"]';
    const mcpState = async () => {
      await page.reload();
      return {
        state: await page.textContent(`${mcpRow} .state`),
        restarts: Number(await page.textContent(`${mcpRow} .restarts`)),
      };
    };
    await waitFor('the MCP server connected', async () => (await mcpState()).state === 'connected', 30000, 300);
    const restartsBefore = (await mcpState()).restarts;
    assert.match(await page.textContent(mcpRow), /echo/);
    await shot(page, '7b-tools');
    await page.click(`${mcpRow} button`);
    await page.waitForSelector('.notice');
    await waitFor(
      'the MCP server restarted',
      async () => {
        const s = await mcpState();
        return s.state === 'connected' && s.restarts > restartsBefore;
      },
      30000,
      300,
    );
    await shot(page, '7c-tools-restarted');

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

    // A group gives scripted/big back to alice alone: made on the Access page, alice
    // added from her account's page, then removed from the group's page.
    await page.goto(`${baseUrl}/admin/access`);
    await page.fill('#create-group input[name="name"]', 'big models');
    await page.click('#create-group button[type="submit"]');
    await page.waitForSelector('#group-models');
    await page.fill('#group-models textarea[name="names"]', 'scripted/big');
    await page.click('#group-models button[type="submit"]');
    await page.waitForSelector('.notice');
    assert.equal(await page.textContent('#group-models .effective'), 'scripted/big');
    const groupUrl = page.url().split('?')[0];
    await page.goto(accountUrl);
    await page.selectOption('#add-to-group select[name="group"]', { label: 'big models' });
    await page.click('#add-to-group button[type="submit"]');
    await page.waitForSelector('#account-groups');
    assert.match(await page.textContent('#account-groups'), /big models/);
    assert.deepEqual(await aliceModels(), ['scripted/demo', 'scripted/big']);
    await page.goto(groupUrl);
    assert.match(await page.textContent('#members'), new RegExp(USER));
    await shot(page, '5d-group');
    await page.click('#members button[type="submit"]');
    await page.waitForSelector('.notice');
    assert.equal(await page.locator('#members').count(), 0, 'no member left');
    assert.deepEqual(await aliceModels(), ['scripted/demo']);

    // The audit log on screen, and as CSV with every action.
    await page.goto(`${baseUrl}/admin/audit`);
    await page.waitForSelector('#audit');
    await shot(page, '8-audit');
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#csv')]);
    const csv = fs.readFileSync(await download.path(), 'utf8');
    fs.mkdirSync(OUT, { recursive: true });
    fs.writeFileSync(path.join(OUT, 'audit.csv'), csv);
    for (const action of ['grant', 'set_refill', 'suspend', 'reactivate', 'stop_run', 'suspended_attempt', 'set_access', 'create_access_group', 'set_group_access', 'add_to_group', 'remove_from_group', 'restart_mcp_server']) {
      assert.ok(csv.includes(`,${action},`), `no ${action} in the CSV:\n${csv}`);
    }
    assert.ok(csv.includes('browser grant'), 'the grant note is not in the CSV');

    await page.goto(accountUrl);
    assert.deepEqual(chorus.pageErrors, []);
    assert.deepEqual(chorus.cspViolations, []);
    await aliceContext.close();
  });
});
