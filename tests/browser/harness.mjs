// The harness the browser tests share: a chorus server of its own (a config the test
// writes, a fresh data directory, the account alice), headless Chromium on a page
// that records what must never happen (uncaught errors, Content Security Policy
// violations, dialogs), and helpers that read the chat client's page.
//
// Needs the chorus binary (CHORUS_BIN, default /var/tmp/chorus-target/debug/chorus;
// build it with `cargo build -p chorus`) and Chromium (CHROMIUM_PATH, default
// /usr/bin/chromium); a missing one fails the test, never skips it.
// Run: (cd tests/browser && npm ci) && node --test tests/browser/
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { chromium } from 'playwright-core';

const BIN = process.env.CHORUS_BIN || '/var/tmp/chorus-target/debug/chorus';
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const USER = 'alice';
export const PASSWORD = 'correct horse battery';

/** Polls `fn` until it returns a truthy value; fails with `what` after `timeout` ms. */
export async function waitFor(what, fn, timeout = 15000, interval = 50) {
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
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** The config lines of a scripted provider `scripted` with the model `demo`. */
export function scriptedProvider({ text, tokensPerSecond }) {
  return [
    '[[providers]]',
    'id = "scripted"',
    'kind = "scripted"',
    'models = ["demo"]',
    `tokens_per_second = ${tokensPerSecond}`,
    `text = ${JSON.stringify(text)}`,
  ];
}

/**
 * Starts chorus and Chromium before the tests of the enclosing `describe`, and stops
 * them after. Options:
 * - `config({ port, baseUrl })`: the config's lines after `[server] listen`;
 * - `requires`: more files the test needs, as `[what, path, hint]`;
 * - `viewport`, `timeout` (the page's default timeout, ms), `shutdownMs` (how long
 *   chorus may take to stop before it is killed).
 * Returns an object that holds, once the tests run: `baseUrl`, `page`, `cli(args,
 * input)` (the chorus CLI on this server's config and data), and what the
 * page recorded: `pageErrors`, `cspViolations`, `dialogs` (their messages) and
 * `eventStreams` (the URLs of the run event streams it opened); `newPage()` opens
 * another browser (a fresh context: its own cookies) recording into the same lists,
 * and `createUser(name, password)` adds an account with the CLI.
 */
export function useChorus({ config, requires = [], viewport, timeout, shutdownMs = 5000 }) {
  const h = { baseUrl: null, page: null, pageErrors: [], cspViolations: [], dialogs: [], eventStreams: [] };
  let tmp;
  h.newPage = async () => {
    const page = await (await browser.newContext({ viewport })).newPage();
    record(page, h);
    if (timeout) page.setDefaultTimeout(timeout);
    return page;
  };
  h.createUser = (name, password) => createUser(tmp, name, password);
  let server;
  let browser;

  before(async () => {
    for (const [what, p, hint] of [
      ['chorus binary', BIN, 'build it with `cargo build -p chorus` or set CHORUS_BIN'],
      ['Chromium', CHROMIUM, 'install it (apt-get install chromium) or set CHROMIUM_PATH'],
      ...requires,
    ]) {
      if (!fs.existsSync(p)) throw new Error(`${what} not found at ${p}: ${hint}`);
    }
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'chorus-browser-'));
    const port = await freePort();
    h.baseUrl = `http://127.0.0.1:${port}`;
    const lines = ['[server]', `listen = "127.0.0.1:${port}"`, '', ...config({ port, baseUrl: h.baseUrl })];
    server = await startServer(tmp, lines, h.baseUrl);
    h.cli = (args, input) => cli(tmp, args, input);
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
    h.page = await (await browser.newContext({ viewport })).newPage();
    record(h.page, h);
    if (timeout) h.page.setDefaultTimeout(timeout);
  });

  after(async () => {
    if (browser) await browser.close().catch(() => {});
    if (server) await stopServer(server, shutdownMs);
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  return h;
}

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

/** Runs `chorus ARGS` on the test's config and data (e.g. `user create NAME --admin`). */
function cli(tmp, args, input) {
  const run = spawnSync(
    BIN,
    ['--config', path.join(tmp, 'chorus.toml'), '--data-dir', path.join(tmp, 'data'), ...args],
    { input, env: cleanEnv(), encoding: 'utf8', timeout: 30000 },
  );
  assert.equal(run.status, 0, `chorus ${args.join(' ')} failed (${run.status}):\n${run.stdout}\n${run.stderr}`);
  return run.stdout;
}

/** Creates an account with `chorus user create` on the test's config and data. */
function createUser(tmp, name, password) {
  cli(tmp, ['user', 'create', name, '--password-stdin'], `${password}\n`);
}

/** Writes the config, creates the account alice and serves until /healthz answers. */
async function startServer(tmp, configLines, baseUrl) {
  const config = path.join(tmp, 'chorus.toml');
  const dataDir = path.join(tmp, 'data');
  fs.writeFileSync(config, [...configLines, ''].join('\n'));
  createUser(tmp, USER, PASSWORD);

  const server = spawn(BIN, ['--config', config, '--data-dir', dataDir, 'serve'], {
    env: cleanEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  server.stdout.on('data', (d) => (log += d));
  server.stderr.on('data', (d) => (log += d));
  let exited = null;
  server.on('exit', (code, signal) => (exited = { code, signal }));
  await waitFor(
    'GET /healthz = 200',
    async () => {
      if (exited) throw new Error(`server exited early (${JSON.stringify(exited)}):\n${log}`);
      const r = await fetch(`${baseUrl}/healthz`).catch(() => null);
      return r && r.status === 200;
    },
    20000,
    100,
  ).catch((e) => {
    throw new Error(`${e.message}\nserver log:\n${log}`);
  });
  return server;
}

/** SIGTERM, then SIGKILL if the server has not exited within `graceMs`. */
async function stopServer(server, graceMs) {
  if (server.exitCode !== null || server.signalCode !== null) return;
  const exited = new Promise((r) => server.once('exit', r));
  server.kill('SIGTERM');
  const timer = setTimeout(() => server.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** Records the page's uncaught errors, CSP violations, dialogs and run event streams. */
function record(page, h) {
  page.on('dialog', (d) => {
    h.dialogs.push(d.message());
    d.dismiss().catch(() => {});
  });
  page.on('pageerror', (e) => h.pageErrors.push(String(e)));
  page.on('request', (r) => {
    if (/\/api\/runs\/[^/]+\/events/.test(r.url())) h.eventStreams.push(r.url());
  });
  page.on('console', (m) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) h.cspViolations.push(m.text());
  });
}

// ---------------------------------------------------------------- reading the page

/** Signs in (as alice unless told) through the login form (already on screen) and
 * waits for the app. */
export async function logIn(page, name = USER, password = PASSWORD) {
  await page.fill('#login-name', name);
  await page.fill('#login-password', password);
  await page.click('#login-submit');
  await page.waitForSelector('#app-view', { state: 'visible' });
}

/** A JSON API call made by the page itself (with its session cookie). */
export async function pageApi(page, url) {
  return page.evaluate(async (u) => {
    const r = await fetch(u, { credentials: 'same-origin' });
    return { status: r.status, body: await r.json() };
  }, url);
}

/** The open conversation's id, from the URL (#c=ID). */
export function conversationId(page) {
  return new URLSearchParams(new URL(page.url()).hash.slice(1)).get('c');
}

/** The visible text of a message body, without code-block toolbars. */
export async function messageText(page, id) {
  return page.$eval(`article.msg[data-id="${id}"] .md`, (el) => {
    const c = el.cloneNode(true);
    for (const n of c.querySelectorAll('.code-head')) n.remove();
    return c.textContent;
  });
}

/** A message's run status, as the page shows it (`data-status`). */
export async function messageStatus(page, id) {
  return page.$eval(`article.msg[data-id="${id}"]`, (el) => el.dataset.status);
}

/** The newest assistant message on screen (id, status, text, tool lines), or null. */
export async function lastAssistant(page) {
  return page.evaluate(() => {
    const all = document.querySelectorAll('#messages article.msg.assistant');
    const last = all[all.length - 1];
    if (!last) return null;
    return {
      id: last.dataset.id,
      status: last.dataset.status,
      text: last.querySelector('.md').textContent,
      tools: [...last.querySelectorAll('.tool-calls li')].map((l) => l.textContent),
    };
  });
}
