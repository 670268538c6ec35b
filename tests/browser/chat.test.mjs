// End-to-end test of the built-in chat client in headless Chromium: login, streaming,
// a reload in the middle of a reply (the reply must go on where it was), stop and
// continue, and that user text is never interpreted as HTML.
//
// Runs on the shared harness (harness.mjs: what it needs and how to run it).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  conversationId,
  lastAssistant,
  logIn,
  messageStatus,
  messageText,
  pageApi,
  scriptedProvider,
  useChorus,
  waitFor,
} from './harness.mjs';

const SCREENSHOT = '/tmp/chorus-chat.png';

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

/** The id of the newest assistant message on screen, once there is one. */
async function lastAssistantId(page) {
  return (await waitFor('an assistant message', () => lastAssistant(page))).id;
}

async function sendMessage(page, text) {
  await page.click('#new-chat');
  await page.fill('#input', text);
  await page.press('#input', 'Enter');
  await waitFor('the user message on screen', () =>
    page.evaluate(
      (t) => [...document.querySelectorAll('#messages .msg.user .user-text')].some((n) => n.textContent === t),
      text,
    ),
  );
  return lastAssistantId(page);
}

describe('chat client in headless Chromium', { timeout: 90000 }, () => {
  const chorus = useChorus({
    config: ({ baseUrl }) => [
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
      ...scriptedProvider({ text: SCRIPT, tokensPerSecond: 12 }),
    ],
    viewport: { width: 1280, height: 800 },
    timeout: 15000,
  });

  test('logs in through the form', async () => {
    const { page } = chorus;
    // A failed single sign-on comes back as ?sso_error=: shown once, then dropped from the URL.
    await page.goto(chorus.baseUrl + '/?sso_error=' + encodeURIComponent('the ID token was rejected: nonce mismatch'));
    await page.waitForSelector('#login-error', { state: 'visible' });
    assert.match(await page.textContent('#login-error'), /ID token was rejected: nonce mismatch/);
    assert.equal(new URL(page.url()).search, '');

    await page.goto(chorus.baseUrl + '/');
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

    await logIn(page);
    assert.equal(await page.textContent('#me-name'), 'alice');
    // Only the scripted provider is configured, and the client says so.
    assert.ok(await page.isVisible('#scripted-notice'));
    assert.match(await page.textContent('#scripted-notice'), /scripted demo provider/);
    assert.equal(await page.inputValue('#model-select'), 'scripted/demo');

    // The account dialog's sign-in methods list the local login and offer to link
    // Discord.
    await page.click('#open-account');
    await page.waitForSelector('#identities-list li', { state: 'visible' });
    assert.match(await page.textContent('#identities-list'), /Name and password — alice/);
    assert.equal(
      await page.getAttribute('#identities-link a', 'href'),
      '/api/auth/sso/discord/start',
    );
    await page.click('#account-close');
    await page.waitForSelector('#account-dialog', { state: 'hidden' });
  });

  test('a reply goes on after a reload in the middle of it', async () => {
    const { page } = chorus;
    const id = await sendMessage(page, 'How do resumable replies work?');
    const convId = conversationId(page);
    assert.ok(convId, `conversation id in the URL hash: ${page.url()}`);

    // Some, but not all, of the reply is on screen: reload now.
    await waitFor(
      'part of the reply',
      async () => {
        const t = normalize(await messageText(page, id));
        return t.includes('sequence number') && !t.includes(LAST_SENTENCE);
      },
      15000,
      25,
    );
    assert.equal(await messageStatus(page, id), 'streaming');
    const streamsBefore = chorus.eventStreams.length;
    await page.reload();

    // The conversation reopens from the hash, with the reply still going...
    await page.waitForSelector(`article.msg[data-id="${id}"]`);
    const statusAfterReload = await messageStatus(page, id);
    const textAfterReload = normalize(await messageText(page, id));
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
    await waitFor('the event stream to reopen', () => chorus.eventStreams.length > streamsBefore);
    const resumed = new URL(chorus.eventStreams[streamsBefore]);
    assert.ok(Number(resumed.searchParams.get('after')) > 0, `resumed from ${resumed}`);

    // ...and finishes with exactly the script's text: no gap, no repeat.
    await waitFor('the reply to complete', async () => (await messageStatus(page, id)) === 'complete', 20000);
    const rendered = normalize(await messageText(page, id));
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
    const conv = await pageApi(page, `/api/conversations/${convId}`);
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
    const { page } = chorus;
    const payload = '<img src=x onerror=alert(1)>';
    const id = await sendMessage(page, payload);
    const userText = await page.$$eval('#messages .msg.user .user-text', (n) => n.map((x) => x.textContent));
    assert.deepEqual(userText, [payload]);
    assert.equal(await page.$$eval('#messages img', (n) => n.length), 0);
    // The title (sidebar, header) is text too.
    assert.equal(await page.textContent('#conv-title'), payload);
    assert.equal(await page.$$eval('img', (n) => n.length), 0);
    // End the reply so the next test starts clean.
    await waitFor('the reply to start', async () => (await messageText(page, id)).length > 0);
    await page.click('#stop');
    await waitFor('the reply to stop', async () => (await messageStatus(page, id)) === 'stopped');
    assert.deepEqual(chorus.dialogs, [], 'no script ran');
  });

  test('Stop, then Continue extends the same message to the full text', async () => {
    const { page } = chorus;
    const id = await sendMessage(page, 'Tell me about journals');
    await waitFor(
      'a partial reply',
      async () => normalize(await messageText(page, id)).includes('reconnects'),
      15000,
      25,
    );
    assert.ok(await page.isVisible('#stop'), 'the Stop button shows while streaming');
    assert.ok(!(await page.isVisible('#send')), 'the Send button is replaced by Stop');
    await page.getByRole('button', { name: 'Stop', exact: true }).click();

    await waitFor('the status to show stopped', async () => (await messageStatus(page, id)) === 'stopped');
    const article = `article.msg[data-id="${id}"]`;
    assert.equal(await page.textContent(`${article} .run-status`), 'Stopped');
    const cont = page.locator(`${article} button.continue`);
    assert.ok(await cont.isVisible(), 'a Continue button is shown');
    assert.equal(await cont.textContent(), 'Continue');
    assert.ok(await page.isVisible('#send'), 'Send is back after stopping');

    const partial = normalize(await messageText(page, id));
    assert.ok(partial.length > 0 && partial !== EXPECTED_TEXT, `partial text: ${partial}`);
    const convId = conversationId(page);
    const before = await pageApi(page, `/api/conversations/${convId}`);
    const stopped = before.body.messages.find((m) => m.id === id);
    assert.equal(stopped.run_status, 'stopped');
    assert.ok(SCRIPT.startsWith(stopped.content) && stopped.content.length < SCRIPT.length);

    await cont.click();
    await waitFor('the continued reply to stream', async () =>
      ['queued', 'streaming'].includes(await messageStatus(page, id)),
    );
    assert.ok(!(await cont.isVisible()), 'Continue hides while the continuation runs');
    await waitFor('the continued reply to complete', async () => (await messageStatus(page, id)) === 'complete', 20000);

    // Still one assistant message, now holding the whole script.
    assert.equal(await page.$$eval('#messages article.msg.assistant', (n) => n.length), 1);
    assert.equal(normalize(await messageText(page, id)), EXPECTED_TEXT);
    const afterCont = await pageApi(page, `/api/conversations/${convId}`);
    const done = afterCont.body.messages.find((m) => m.id === id);
    assert.equal(done.content, SCRIPT);
    assert.equal(done.run_status, 'complete');
    assert.equal(await page.textContent(`${article} .run-status`), '');

    await page.screenshot({ path: SCREENSHOT });
    assert.deepEqual(chorus.pageErrors, [], 'no uncaught errors in the page');
    assert.deepEqual(chorus.cspViolations, [], 'no Content Security Policy violations');
    assert.deepEqual(chorus.dialogs, [], 'no dialogs opened');
  });
});
