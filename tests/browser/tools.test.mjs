// The tools panel of the chat client in headless Chromium, against the real
// @modelcontextprotocol/server-everything (npm, tests/mcp): choosing a chat's tools,
// starting from an MCP prompt, attaching a resource, and a reply whose tool call and
// result are shown as they happen.
//
// Needs the chorus binary (CHORUS_BIN), Chromium and `npm ci` in tests/mcp
// (scripts/provision/30-mcp.sh); a missing one fails the test.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const BIN = process.env.CHORUS_BIN || '/var/tmp/chorus-target/debug/chorus';
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const PASSWORD = 'correct horse battery';
const EVERYTHING = path.join(
  path.dirname(fileURLToPath(import.meta.url)),
  '..', 'mcp', 'node_modules', '@modelcontextprotocol', 'server-everything', 'dist', 'index.js',
);
const SCRIPT = '@call everything__echo {"message": "from the browser"}\nThe echo said: {{tool_results}}';

let tmp;
let server;
let serverLog = '';
let baseUrl;
let browser;
let page;
const pageErrors = [];
const cspViolations = [];

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

async function pageApi(p) {
  return page.evaluate(async (url) => {
    const r = await fetch(url, { credentials: 'same-origin' });
    return { status: r.status, body: await r.json() };
  }, p);
}

async function lastAssistant() {
  return page.evaluate(() => {
    const all = document.querySelectorAll('#messages article.msg.assistant');
    const last = all[all.length - 1];
    return last ? { id: last.dataset.id, status: last.dataset.status, text: last.querySelector('.md').textContent, tools: [...last.querySelectorAll('.tool-calls li')].map((l) => l.textContent) } : null;
  });
}

describe('tools panel in headless Chromium', { timeout: 120000 }, () => {
  before(async () => {
    for (const [what, p, hint] of [
      ['chorus binary', BIN, 'build it with `cargo build -p chorus` or set CHORUS_BIN'],
      ['Chromium', CHROMIUM, 'install it (apt-get install chromium) or set CHROMIUM_PATH'],
      ['@modelcontextprotocol/server-everything', EVERYTHING, 'run `npm ci` in tests/mcp (scripts/provision/30-mcp.sh)'],
    ]) {
      if (!fs.existsSync(p)) throw new Error(`${what} not found at ${p}: ${hint}`);
    }
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'chorus-browser-tools-'));
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
        '[[providers]]',
        'id = "scripted"',
        'kind = "scripted"',
        'models = ["demo"]',
        'tokens_per_second = 50',
        `text = ${JSON.stringify(SCRIPT)}`,
        '',
        '[[mcp.servers]]',
        'id = "everything"',
        'command = "node"',
        `args = [${JSON.stringify(EVERYTHING)}, "stdio"]`,
        '',
      ].join('\n'),
    );
    const create = spawnSync(
      BIN,
      ['--config', config, '--data-dir', dataDir, 'user', 'create', 'alice', '--password-stdin'],
      { input: `${PASSWORD}\n`, env: cleanEnv(), encoding: 'utf8', timeout: 30000 },
    );
    assert.equal(create.status, 0, `user create failed:\n${create.stdout}\n${create.stderr}`);
    server = spawn(BIN, ['--config', config, '--data-dir', dataDir, 'serve'], {
      env: cleanEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    server.stdout.on('data', (d) => (serverLog += d));
    server.stderr.on('data', (d) => (serverLog += d));
    await waitFor('GET /healthz = 200', async () => {
      const r = await fetch(`${baseUrl}/healthz`).catch(() => null);
      return r && r.status === 200;
    }, 20000, 100);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
    });
    page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
    page.setDefaultTimeout(20000);
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    page.on('console', (m) => {
      if (/Content Security Policy|Refused to/i.test(m.text())) cspViolations.push(m.text());
    });
  });

  after(async () => {
    if (browser) await browser.close().catch(() => {});
    if (server && server.exitCode === null && server.signalCode === null) {
      server.kill('SIGTERM');
      const done = new Promise((r) => server.once('exit', r));
      await Promise.race([done, sleep(12000).then(() => server.kill('SIGKILL'))]);
    }
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('choose tools, use a prompt, attach a resource, see the tool call', async () => {
    await page.goto(baseUrl + '/');
    await page.fill('#login-name', 'alice');
    await page.fill('#login-password', PASSWORD);
    await page.click('#login-submit');
    await page.waitForSelector('#app-view', { state: 'visible' });

    // A first message without tools: the script's calls are skipped.
    await page.fill('#input', 'hello');
    await page.press('#input', 'Enter');
    await waitFor('the first reply', async () => (await lastAssistant())?.status === 'complete', 20000);
    assert.equal((await lastAssistant()).text.trim(), 'The echo said:');

    // Choose the server's tools for this chat.
    await page.click('#tools-toggle');
    await page.waitForSelector('#tools-panel', { state: 'visible' });
    const box = await page.waitForSelector('input[data-server="everything"]');
    assert.equal(await box.isChecked(), false);
    await box.check();
    await waitFor('the selection to be saved', async () => /saved/.test(await page.textContent('#tools-status')));
    const conv = new URLSearchParams(new URL(page.url()).hash.slice(1)).get('c');
    const saved = await pageApi(`/api/conversations/${conv}/tools`);
    assert.deepEqual(saved.body.tools, ['everything']);

    // Start from an MCP prompt with an argument.
    const promptRow = page.locator('#tools-prompts form', { hasText: 'everything: args-prompt' });
    await promptRow.locator('input[data-name="city"]').fill('Lyon');
    await promptRow.locator('button').click();
    await waitFor('the prompt in the message box', async () => (await page.inputValue('#input')) === "What's weather in Lyon?");

    // Attach a resource's text.
    await page.locator('#tools-resources .tools-row').first().locator('button').click();
    await waitFor('the resource in the message box', async () => (await page.inputValue('#input')).includes('[resource demo://'));

    // Send: the reply calls the tool, and the call and its result are shown.
    await page.fill('#input', 'again');
    await page.click('#tools-toggle');
    await page.press('#input', 'Enter');
    await waitFor('the tool reply', async () => {
      const m = await lastAssistant();
      return m && m.status === 'complete' && m.text.includes('Echo: from the browser');
    }, 30000);
    const m = await lastAssistant();
    assert.equal(m.text.trim(), 'The echo said: Echo: from the browser');
    assert.equal(m.tools.length, 1, JSON.stringify(m.tools));
    assert.match(m.tools[0], /everything__echo → Echo: from the browser/);

    // After a reload the call and its result are still shown, from the stored steps.
    await page.reload();
    await waitFor('the reloaded reply', async () => {
      const r = await lastAssistant();
      return r && r.id === m.id && r.text.includes('Echo: from the browser');
    });
    const reloaded = await lastAssistant();
    assert.equal(reloaded.tools.length, 1, JSON.stringify(reloaded.tools));
    assert.match(reloaded.tools[0], /everything__echo → Echo: from the browser/);
    assert.deepEqual(pageErrors, []);
    assert.deepEqual(cspViolations, []);
  });
});
