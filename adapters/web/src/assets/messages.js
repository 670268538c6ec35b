// Message rendering: a view per message (the user's text; the assistant's markdown,
// reasoning, tool calls and results, status line, Continue and Copy buttons, token
// usage), redrawn at most every RENDER_INTERVAL_MS while a reply streams.
//
// Security: model output only ever reaches the DOM through renderMarkdown (which
// escapes everything); every other dynamic text is set with textContent.

import { el } from './dom.js';
import { renderMarkdown } from './markdown.js';
import { modelLabel } from './models.js';
import { ACTIVE, scrollToBottom, state } from './state.js';

const CONTINUABLE = new Set(['stopped', 'interrupted']);
const RENDER_INTERVAL_MS = 50;

function timeTitle(ms) {
  return ms ? new Date(ms).toLocaleString() : '';
}

function article(m, role, label) {
  const root = el('article', `msg ${role}`);
  root.dataset.id = m.id;
  root.setAttribute('aria-label', label);
  return root;
}

/** The view of a message of the user's: its text, as text. */
export function userView(m) {
  const root = article(m, 'user', 'Your message');
  const bubble = el('div', 'bubble');
  bubble.title = timeTitle(m.created_at);
  bubble.append(el('div', 'user-text', m.content));
  root.append(bubble);
  return { role: 'user', id: m.id, root, message: m };
}

/** The view of a reply: filled in by renderNow as its run streams (see runs.js). */
export function assistantView(m) {
  const root = article(m, 'assistant', 'Assistant message');
  const avatar = el('div', 'avatar', '◆');
  avatar.setAttribute('aria-hidden', 'true');
  const main = el('div', 'msg-main');
  const head = el('div', 'msg-head');
  const who = el('span', 'who', 'Chorus');
  const model = el('span', 'model-tag', modelLabel(m.model));
  model.title = timeTitle(m.created_at);
  head.append(who, model);

  const reasoning = el('details', 'reasoning');
  reasoning.hidden = true;
  reasoning.append(el('summary', '', 'Reasoning'), el('div', 'reasoning-text'));

  const body = el('div', 'md');
  const toolList = el('ul', 'tool-calls');
  toolList.hidden = true;
  const foot = el('div', 'msg-foot');
  const status = el('span', 'run-status');
  status.setAttribute('role', 'status');
  // Continue (or Retry) calls runs.js; app.js listens for its clicks on #messages.
  const cont = el('button', 'btn btn-outline btn-small continue', 'Continue');
  cont.type = 'button';
  cont.hidden = true;
  const copy = el('button', 'btn btn-ghost btn-small copy', 'Copy');
  copy.type = 'button';
  copy.hidden = true;
  const usage = el('span', 'usage');
  foot.append(status, cont, copy, usage);
  main.append(head, reasoning, toolList, body, foot);
  root.append(avatar, main);

  const runStatus = m.run_status || (m.run_id ? 'queued' : 'complete');
  const view = {
    role: 'assistant',
    id: m.id,
    root,
    body,
    modelEl: model,
    reasoningEl: reasoning,
    toolsEl: toolList,
    statusEl: status,
    continueBtn: cont,
    copyBtn: copy,
    usageEl: usage,
    model: m.model || '',
    runId: m.run_id || null,
    status: runStatus,
    // The message text before the current run, and the current run's text. For a
    // message loaded from the server, the whole content is the prefix until the run
    // view (or a `started` event) says otherwise.
    prefix: m.content || '',
    text: '',
    reasoning: '',
    usage:
      m.run_completion_tokens != null
        ? {
            prompt_tokens: m.run_prompt_tokens || 0,
            completion_tokens: m.run_completion_tokens,
            estimated: false,
          }
        : null,
    error: m.run_error || null,
    reason: m.run_finish_reason || null, // why the last run ended (`length`: cut off)
    reconnecting: false,
    stopping: false,
    es: null,
    lastSeq: 0,
    lastEventAt: 0,
    failures: 0,
    renderTimer: null,
    retryTimer: null,
    watchdog: null,
  };
  copy.addEventListener('click', () => copyText(view.prefix + view.text, copy));
  return view;
}

// A tool call of a reply, one line, later replaced by its result.
export function showToolCall(view, d) {
  const li = el('li', '', `🔧 ${d.name} ${JSON.stringify(d.arguments || {})} …`);
  li.dataset.call = d.id || '';
  view.toolsEl.append(li);
  view.toolsEl.hidden = false;
}

export function showToolResult(view, d) {
  const li = [...view.toolsEl.children].find((x) => x.dataset.call === d.call_id) || el('li');
  const out = String(d.output || '');
  li.dataset.call = d.call_id || '';
  li.textContent = `🔧 ${d.name} → ${out.length > 300 ? `${out.slice(0, 300)}…` : out}`;
  li.classList.toggle('error', !!d.is_error);
  if (!li.parentNode) view.toolsEl.append(li);
  view.toolsEl.hidden = false;
}

export function scheduleRender(view) {
  if (view.renderTimer) return;
  view.renderTimer = setTimeout(() => {
    view.renderTimer = null;
    requestAnimationFrame(() => renderNow(view));
  }, RENDER_INTERVAL_MS);
}

export function renderNow(view) {
  if (view.renderTimer) {
    clearTimeout(view.renderTimer);
    view.renderTimer = null;
  }
  const full = view.prefix + view.text;
  view.body.innerHTML = renderMarkdown(full);
  enhanceCodeBlocks(view.body);
  if (view.reasoning) {
    view.reasoningEl.hidden = false;
    view.reasoningEl.lastElementChild.textContent = view.reasoning;
  } else {
    view.reasoningEl.hidden = true;
  }
  view.modelEl.textContent = modelLabel(view.model);
  renderFooter(view);
  if (state.stick) scrollToBottom();
}

export function renderFooter(view) {
  const active = ACTIVE.has(view.status);
  view.root.dataset.status = view.status;
  view.root.classList.toggle('active', active);
  view.root.classList.toggle('pending', active && !(view.prefix + view.text));
  let status = '';
  switch (view.status) {
    case 'queued':
      status = view.stopping ? 'Stopping…' : 'Waiting for the model…';
      break;
    case 'streaming':
      status = view.stopping ? 'Stopping…' : 'Generating…';
      break;
    case 'stopped':
      status = 'Stopped';
      break;
    case 'interrupted':
      status = 'Interrupted';
      break;
    case 'failed':
      status = view.error ? `Failed: ${view.error}` : 'Failed';
      break;
    case 'complete':
      status = view.reason === 'length' ? 'Cut off at the length limit' : '';
      break;
    default:
      status = '';
  }
  if (active && view.reconnecting) status += ' (reconnecting…)';
  view.statusEl.textContent = status;
  view.statusEl.className = `run-status status-${view.status}`;
  view.continueBtn.hidden = !view.runId || !canContinue(view);
  view.continueBtn.textContent = view.status === 'failed' ? 'Retry' : 'Continue';
  view.copyBtn.hidden = active || !(view.prefix + view.text);
  if (view.usage) {
    const u = view.usage;
    view.usageEl.textContent =
      `${u.prompt_tokens} prompt · ${u.completion_tokens} completion tokens` +
      (u.estimated ? ' (estimated)' : '');
  } else view.usageEl.textContent = '';
}

/** Stopped, interrupted, failed (retry) or cut off at the token limit. */
function canContinue(view) {
  return (
    CONTINUABLE.has(view.status) ||
    view.status === 'failed' ||
    (view.status === 'complete' && view.reason === 'length')
  );
}

function enhanceCodeBlocks(root) {
  for (const pre of root.querySelectorAll('pre')) {
    const code = pre.firstElementChild;
    const match = code && /(?:^|\s)language-(\S+)/.exec(code.className);
    const wrap = el('div', 'code-block');
    const head = el('div', 'code-head');
    head.append(el('span', 'code-lang', match ? match[1] : 'text'));
    const btn = el('button', 'code-copy', 'Copy');
    btn.type = 'button';
    btn.setAttribute('aria-label', 'Copy code');
    head.append(btn);
    pre.replaceWith(wrap);
    wrap.append(head, pre);
  }
}

export async function copyText(text, button) {
  let ok = false;
  try {
    await navigator.clipboard.writeText(text);
    ok = true;
  } catch {
    // Not a secure context: fall back to a hidden selection.
    const ta = document.createElement('textarea');
    ta.value = text;
    ta.className = 'offscreen';
    document.body.append(ta);
    ta.select();
    try {
      ok = document.execCommand('copy');
    } catch {
      ok = false;
    }
    ta.remove();
  }
  const label = button.textContent;
  button.textContent = ok ? 'Copied' : 'Copy failed';
  setTimeout(() => {
    button.textContent = label;
  }, 1500);
}
