// End-to-end test of the built-in chat client in headless Chromium: login, streaming,
// a reload in the middle of a reply (the reply must go on where it was), stop and
// continue, and that user text is never interpreted as HTML.
//
// Needs the chorus binary (CHORUS_BIN, default /var/tmp/chorus-target/debug/chorus;
// build it with `cargo build -p chorus`) and Chromium (CHROMIUM_PATH, default
// /usr/bin/chromium). Run: (cd tests/browser && npm ci) && node --test tests/browser/
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { chromium } from 'playwright-core';

const BIN = process.env.CHORUS_BIN || '/var/tmp/chorus-target/debug/chorus';
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const SCREENSHOT = '/tmp/chorus-chat.png';
const PASSWORD = 'correct horse battery';

// The scripted provider's reply: about 80 words of markdown whose rendering is easy
// to predict (paragraphs, bold, a fenced code block).
const SCRIPT = [
  'Resumable replies keep going on the server while the browser is away.',
  '',
  'Each event of a run carries a **sequence number**, so a reader that reconnects asks only for the events it missed and never sees a gap or a repeat.',
  '',
  '```rust',
  'let after = last_seen_seq;',
  '```',
  '',
  'Stopping a reply is explicit, and continuing it extends the same message from its partial text instead of starting over.',
  '',
  'The quick brown fox finished the journal exactly here.',
].join('\n');
const LAST_SENTENCE = 'The quick brown fox finished the journal exactly here.';

/** What the rendered message's text must be: the script without markdown syntax. */
const normalize = (s) => s.replace(/\s+/g, ' ').trim();
const EXPECTED_TEXT = normalize(SCRIPT.replace(/\*\*/g, '').replace(/^```.*$/gm, ''));

let tmp;
let server;
let serverLog = '';
let baseUrl;
let browser;
let page;
const dialogs = [];
const pageErrors = [];
const cspViolations = [];
const eventStreams = []; // URLs of the run event streams the page opened

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** The environment without CHORUS_* overrides that could change the test's config. */
function cleanEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('CHORUS_')) env[k] = v;
  env.RUST_LOG = env.RUST_LOG || 'info';
  return env;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns a truthy value; fails with `what` after `timeout` ms. */
async function waitFor(what, fn, timeout = 15000, interval = 50) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${String(last)})`);
    }
    await sleep(interval);
  }
}

/** The visible text of a message body, without code-block toolbars. */
async function messageText(id) {
  return page.$eval(`article.msg[data-id="${id}"] .md`, (el) => {
    const c = el.cloneNode(true);
    for (const n of c.querySelectorAll('.code-head')) n.remove();
    return c.textContent;
  });
}

async function messageStatus(id) {
  return page.$eval(`article.msg[data-id="${id}"]`, (el) => el.dataset.status);
}

/** The id of the newest assistant message on screen. */
async function lastAssistantId() {
  return waitFor('an assistant message', () =>
    page.evaluate(() => {
      const all = document.querySelectorAll('#messages article.msg.assistant');
      return all.length ? all[all.length - 1].dataset.id : null;
    }),
  );
}

/** A JSON API call made by the page itself (with its session cookie). */
async function pageApi(p) {
  return page.evaluate(async (url) => {
    const r = await fetch(url, { credentials: 'same-origin' });
    return { status: r.status, body: await r.json() };
  }, p);
}

function conversationIdFromUrl() {
  const hash = new URL(page.url()).hash.slice(1);
  return new URLSearchParams(hash).get('c');
}

async function sendMessage(text) {
  await page.click('#new-chat');
  await page.fill('#input', text);
  await page.press('#input', 'Enter');
  await waitFor('the user message on screen', () =>
    page.evaluate(
      (t) => [...document.querySelectorAll('#messages .msg.user .user-text')].some((n) => n.textContent === t),
      text,
    ),
  );
  return lastAssistantId();
}

describe('chat client in headless Chromium', { timeout: 90000 }, () => {
  before(async () => {
    // Fail, never skip, when a prerequisite is missing.
    if (!fs.existsSync(BIN)) {
      throw new Error(`chorus binary not found at ${BIN}: build it with \`cargo build -p chorus\` or set CHORUS_BIN`);
    }
    if (!fs.existsSync(CHROMIUM)) {
      throw new Error(`Chromium not found at ${CHROMIUM}: install it (apt-get install chromium) or set CHROMIUM_PATH`);
    }

    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'chorus-browser-'));
    const port = await freePort();
    baseUrl = `http://127.0.0.1:${port}`;
    const config = path.join(tmp, 'chorus.toml');
    const dataDir = path.join(tmp, 'data');
    fs.writeFileSync(
      config,
      [
        '[server]',
        `listen = "127.0.0.1:${port}"`,
        '',
        // A single sign-on provider, so the login page shows its button (the SSO flow
        // itself is tested end to end in the Rust suite).
        '[auth]',
        `public_url = "${baseUrl}"`,
        '[[auth.oauth2]]',
        'id = "discord"',
        'name = "Discord"',
        'kind = "discord"',
        'client_id = "1234567890"',
        'client_secret = "browser-test-secret"',
        '',
        '[[providers]]',
        'id = "scripted"',
        'kind = "scripted"',
        'models = ["demo"]',
        'tokens_per_second = 12',
        `text = ${JSON.stringify(SCRIPT)}`,
        '',
      ].join('\n'),
    );

    const create = spawnSync(
      BIN,
      ['--config', config, '--data-dir', dataDir, 'user', 'create', 'alice', '--password-stdin'],
      { input: `${PASSWORD}\n`, env: cleanEnv(), encoding: 'utf8', timeout: 30000 },
    );
    assert.equal(
      create.status,
      0,
      `user create failed (${create.status}):\n${create.stdout}\n${create.stderr}`,
    );

    server = spawn(BIN, ['--config', config, '--data-dir', dataDir, 'serve'], {
      env: cleanEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    server.stdout.on('data', (d) => (serverLog += d));
    server.stderr.on('data', (d) => (serverLog += d));
    let exited = null;
    server.on('exit', (code, signal) => (exited = { code, signal }));
    await waitFor(
      'GET /healthz = 200',
      async () => {
        if (exited) throw new Error(`server exited early (${JSON.stringify(exited)}):\n${serverLog}`);
        const r = await fetch(`${baseUrl}/healthz`).catch(() => null);
        return r && r.status === 200;
      },
      20000,
      100,
    ).catch((e) => {
      throw new Error(`${e.message}\nserver log:\n${serverLog}`);
    });

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless=new',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    page = await context.newPage();
    page.setDefaultTimeout(15000);
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      d.dismiss().catch(() => {});
    });
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    page.on('request', (r) => {
      if (/\/api\/runs\/[^/]+\/events/.test(r.url())) eventStreams.push(r.url());
    });
    page.on('console', (m) => {
      if (/Content Security Policy|Refused to/i.test(m.text())) cspViolations.push(m.text());
    });
  });

  after(async () => {
    try {
      if (browser) await browser.close();
    } catch {
      /* already gone */
    }
    if (server && server.exitCode === null && server.signalCode === null) {
      server.kill('SIGTERM');
      const done = new Promise((r) => server.once('exit', r));
      const timer = sleep(5000).then(() => server.kill('SIGKILL'));
      await Promise.race([done, timer]);
    }
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('logs in through the form', async () => {
    // A failed single sign-on comes back as ?sso_error=: shown once, then dropped from the URL.
    await page.goto(baseUrl + '/?sso_error=' + encodeURIComponent('the ID token was rejected: nonce mismatch'));
    await page.waitForSelector('#login-error', { state: 'visible' });
    assert.match(await page.textContent('#login-error'), /ID token was rejected: nonce mismatch/);
    assert.equal(new URL(page.url()).search, '');

    await page.goto(baseUrl + '/');
    await page.waitForSelector('#login-form', { state: 'visible' });
    // The configured SSO provider has its button, pointing at the start of its flow.
    const sso = await page.waitForSelector('a.sso-btn[data-provider="discord"]', { state: 'visible' });
    assert.equal(await sso.getAttribute('href'), '/api/auth/sso/discord/start');
    assert.match(await sso.textContent(), /Continue with Discord/);
    await page.fill('#login-name', 'alice');
    await page.fill('#login-password', 'wrong password');
    await page.click('#login-submit');
    await page.waitForSelector('#login-error', { state: 'visible' });
    assert.match(await page.textContent('#login-error'), /wrong name or password/i);

    await page.fill('#login-password', PASSWORD);
    await page.click('#login-submit');
    await page.waitForSelector('#app-view', { state: 'visible' });
    assert.equal(await page.textContent('#me-name'), 'alice');
    // Only the scripted provider is configured, and the client says so.
    assert.ok(await page.isVisible('#scripted-notice'));
    assert.match(await page.textContent('#scripted-notice'), /scripted demo provider/);
    assert.equal(await page.inputValue('#model-select'), 'scripted/demo');

    // The sign-in methods dialog lists the local login and offers to link Discord.
    await page.click('#open-identities');
    await page.waitForSelector('#identities-list li', { state: 'visible' });
    assert.match(await page.textContent('#identities-list'), /Name and password — alice/);
    assert.equal(
      await page.getAttribute('#identities-link a', 'href'),
      '/api/auth/sso/discord/start',
    );
    await page.click('#identities-dialog button[type="submit"]');
    await page.waitForSelector('#identities-dialog', { state: 'hidden' });
  });

  test('a reply goes on after a reload in the middle of it', async () => {
    const id = await sendMessage('How do resumable replies work?');
    const convId = conversationIdFromUrl();
    assert.ok(convId, `conversation id in the URL hash: ${page.url()}`);

    // Some, but not all, of the reply is on screen: reload now.
    await waitFor(
      'part of the reply',
      async () => {
        const t = normalize(await messageText(id));
        return t.includes('sequence number') && !t.includes(LAST_SENTENCE);
      },
      15000,
      25,
    );
    assert.equal(await messageStatus(id), 'streaming');
    const streamsBefore = eventStreams.length;
    await page.reload();

    // The conversation reopens from the hash, with the reply still going...
    await page.waitForSelector(`article.msg[data-id="${id}"]`);
    const statusAfterReload = await messageStatus(id);
    const textAfterReload = normalize(await messageText(id));
    assert.ok(
      ['queued', 'streaming'].includes(statusAfterReload),
      `status right after the reload: ${statusAfterReload} (${textAfterReload})`,
    );
    assert.ok(!textAfterReload.includes(LAST_SENTENCE), 'the reply was not over before the reload');
    assert.ok(
      EXPECTED_TEXT.startsWith(textAfterReload.slice(0, 40)),
      `text after reload is a prefix of the script: ${textAfterReload}`,
    );

    // ...and its stream resumes after the events already shown, not from the start.
    await waitFor('the event stream to reopen', () => eventStreams.length > streamsBefore);
    const resumed = new URL(eventStreams[streamsBefore]);
    assert.ok(Number(resumed.searchParams.get('after')) > 0, `resumed from ${resumed}`);

    // ...and finishes with exactly the script's text: no gap, no repeat.
    await waitFor('the reply to complete', async () => (await messageStatus(id)) === 'complete', 20000);
    const rendered = normalize(await messageText(id));
    assert.equal(rendered, EXPECTED_TEXT);
    for (const phrase of ['Resumable replies keep going', 'sequence number', 'instead of starting over', LAST_SENTENCE]) {
      assert.ok(rendered.includes(phrase), `rendered text includes ${phrase}`);
    }

    // The markdown is rendered: bold as <strong>, the fence as <pre><code>.
    const msg = `article.msg[data-id="${id}"] .md`;
    assert.equal(await page.textContent(`${msg} strong`), 'sequence number');
    assert.equal(await page.textContent(`${msg} pre > code`), 'let after = last_seen_seq;');
    assert.match(await page.getAttribute(`${msg} pre > code`, 'class'), /language-rust/);
    assert.equal(await page.$$eval(`${msg} script, ${msg} img`, (n) => n.length), 0);

    // The stored message is the whole script, and it is the one on screen.
    const conv = await pageApi(`/api/conversations/${convId}`);
    assert.equal(conv.status, 200);
    const stored = conv.body.messages.find((m) => m.id === id);
    assert.equal(stored.content, SCRIPT);
    assert.equal(stored.run_status, 'complete');
    assert.equal(conv.body.messages.filter((m) => m.role === 'assistant').length, 1);

    // The usage of the run is shown under the message.
    assert.match(await page.textContent(`article.msg[data-id="${id}"] .usage`), /completion tokens/);
    // The conversation is in the sidebar, titled from the first message.
    assert.ok(
      await page.isVisible(`.conv-item.active[data-id="${convId}"]`),
      'the open conversation is highlighted in the sidebar',
    );
    assert.equal(await page.textContent('.conv-item.active'), 'How do resumable replies work?');
  });

  test('user text is shown as text, never as HTML', async () => {
    const payload = '<img src=x onerror=alert(1)>';
    const id = await sendMessage(payload);
    const userText = await page.$$eval('#messages .msg.user .user-text', (n) => n.map((x) => x.textContent));
    assert.deepEqual(userText, [payload]);
    assert.equal(await page.$$eval('#messages img', (n) => n.length), 0);
    // The title (sidebar, header) is text too.
    assert.equal(await page.textContent('#conv-title'), payload);
    assert.equal(await page.$$eval('img', (n) => n.length), 0);
    // End the reply so the next test starts clean.
    await waitFor('the reply to start', async () => (await messageText(id)).length > 0);
    await page.click('#stop');
    await waitFor('the reply to stop', async () => (await messageStatus(id)) === 'stopped');
    assert.deepEqual(dialogs, [], 'no script ran');
  });

  test('Stop, then Continue extends the same message to the full text', async () => {
    const id = await sendMessage('Tell me about journals');
    await waitFor(
      'a partial reply',
      async () => normalize(await messageText(id)).includes('reconnects'),
      15000,
      25,
    );
    assert.ok(await page.isVisible('#stop'), 'the Stop button shows while streaming');
    assert.ok(!(await page.isVisible('#send')), 'the Send button is replaced by Stop');
    await page.getByRole('button', { name: 'Stop', exact: true }).click();

    await waitFor('the status to show stopped', async () => (await messageStatus(id)) === 'stopped');
    const article = `article.msg[data-id="${id}"]`;
    assert.equal(await page.textContent(`${article} .run-status`), 'Stopped');
    const cont = page.locator(`${article} button.continue`);
    assert.ok(await cont.isVisible(), 'a Continue button is shown');
    assert.equal(await cont.textContent(), 'Continue');
    assert.ok(await page.isVisible('#send'), 'Send is back after stopping');

    const partial = normalize(await messageText(id));
    assert.ok(partial.length > 0 && partial !== EXPECTED_TEXT, `partial text: ${partial}`);
    const convId = conversationIdFromUrl();
    const before = await pageApi(`/api/conversations/${convId}`);
    const stopped = before.body.messages.find((m) => m.id === id);
    assert.equal(stopped.run_status, 'stopped');
    assert.ok(SCRIPT.startsWith(stopped.content) && stopped.content.length < SCRIPT.length);

    await cont.click();
    await waitFor('the continued reply to stream', async () =>
      ['queued', 'streaming'].includes(await messageStatus(id)),
    );
    assert.ok(!(await cont.isVisible()), 'Continue hides while the continuation runs');
    await waitFor('the continued reply to complete', async () => (await messageStatus(id)) === 'complete', 20000);

    // Still one assistant message, now holding the whole script.
    assert.equal(await page.$$eval('#messages article.msg.assistant', (n) => n.length), 1);
    assert.equal(normalize(await messageText(id)), EXPECTED_TEXT);
    const afterCont = await pageApi(`/api/conversations/${convId}`);
    const done = afterCont.body.messages.find((m) => m.id === id);
    assert.equal(done.content, SCRIPT);
    assert.equal(done.run_status, 'complete');
    assert.equal(await page.textContent(`${article} .run-status`), '');

    await page.screenshot({ path: SCREENSHOT });
    assert.deepEqual(pageErrors, [], 'no uncaught errors in the page');
    assert.deepEqual(cspViolations, [], 'no Content Security Policy violations');
    assert.deepEqual(dialogs, [], 'no dialogs opened');
  });
});
