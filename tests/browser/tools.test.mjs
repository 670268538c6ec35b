// The tools panel of the chat client in headless Chromium, against the real
// @modelcontextprotocol/server-everything (npm, tests/mcp): choosing a chat's tools,
// starting from an MCP prompt, attaching a resource, and a reply whose tool call and
// result are shown as they happen.
//
// Runs on the shared harness (harness.mjs), and needs `npm ci` in tests/mcp as well
// (scripts/provision/30-mcp.sh): a missing one fails the test.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { conversationId, lastAssistant, logIn, pageApi, scriptedProvider, useChorus, waitFor } from './harness.mjs';

const EVERYTHING = path.join(
  path.dirname(fileURLToPath(import.meta.url)),
  '..', 'mcp', 'node_modules', '@modelcontextprotocol', 'server-everything', 'dist', 'index.js',
);
const SCRIPT = '@call everything__echo {"message": "from the browser"}\nThe echo said: {{tool_results}}';

describe('tools panel in headless Chromium', { timeout: 120000 }, () => {
  const chorus = useChorus({
    requires: [
      [
        '@modelcontextprotocol/server-everything',
        EVERYTHING,
        'run `npm ci` in tests/mcp (scripts/provision/30-mcp.sh)',
      ],
    ],
    config: () => [
      ...scriptedProvider({ text: SCRIPT, tokensPerSecond: 50 }),
      '',
      '[[mcp.servers]]',
      'id = "everything"',
      'command = "node"',
      `args = [${JSON.stringify(EVERYTHING)}, "stdio"]`,
    ],
    viewport: { width: 1280, height: 900 },
    timeout: 20000,
    shutdownMs: 12000, // chorus stops its MCP servers first
  });

  test('choose tools, use a prompt, attach a resource, see the tool call', async () => {
    const { page } = chorus;
    await page.goto(chorus.baseUrl + '/');
    await logIn(page);

    // A first message without tools: the script's calls are skipped.
    await page.fill('#input', 'hello');
    await page.press('#input', 'Enter');
    await waitFor('the first reply', async () => (await lastAssistant(page))?.status === 'complete', 20000);
    assert.equal((await lastAssistant(page)).text.trim(), 'The echo said:');

    // Choose the server's tools for this chat.
    await page.click('#tools-toggle');
    await page.waitForSelector('#tools-panel', { state: 'visible' });
    const box = await page.waitForSelector('input[data-server="everything"]');
    assert.equal(await box.isChecked(), false);
    await box.check();
    await waitFor('the selection to be saved', async () => /saved/.test(await page.textContent('#tools-status')));
    const conv = conversationId(page);
    const saved = await pageApi(page, `/api/conversations/${conv}/tools`);
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
      const m = await lastAssistant(page);
      return m && m.status === 'complete' && m.text.includes('Echo: from the browser');
    }, 30000);
    const m = await lastAssistant(page);
    assert.equal(m.text.trim(), 'The echo said: Echo: from the browser');
    assert.equal(m.tools.length, 1, JSON.stringify(m.tools));
    assert.match(m.tools[0], /everything__echo → Echo: from the browser/);

    // After a reload the call and its result are still shown, from the stored steps.
    await page.reload();
    await waitFor('the reloaded reply', async () => {
      const r = await lastAssistant(page);
      return r && r.id === m.id && r.text.includes('Echo: from the browser');
    });
    const reloaded = await lastAssistant(page);
    assert.equal(reloaded.tools.length, 1, JSON.stringify(reloaded.tools));
    assert.match(reloaded.tools[0], /everything__echo → Echo: from the browser/);
    assert.deepEqual(chorus.pageErrors, []);
    assert.deepEqual(chorus.cspViolations, []);
  });
});
