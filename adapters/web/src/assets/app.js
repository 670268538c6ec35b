// The Chorus chat client: login, conversation list, messages, streaming replies that
// survive reloads, stop and continue. Plain ES module, no build step, no dependencies.
//
// Security: model output only ever reaches the DOM through renderMarkdown (which
// escapes everything); every other dynamic text is set with textContent.

import { renderMarkdown } from './markdown.js';
import { api, convPath, onUnauthorized, runPath } from './api.js';
import { $, conversationId, el } from './dom.js';
import { openIdentities, setupLogin, takeSsoError } from './sso.js';

const ui = {
  boot: $('boot'),
  loginView: $('login-view'),
  loginForm: $('login-form'),
  loginName: $('login-name'),
  loginPassword: $('login-password'),
  loginError: $('login-error'),
  loginSubmit: $('login-submit'),
  appView: $('app-view'),
  sidebar: $('sidebar'),
  scrim: $('scrim'),
  toggleSidebar: $('toggle-sidebar'),
  newChat: $('new-chat'),
  convList: $('conv-list'),
  convEmpty: $('conv-empty'),
  meName: $('me-name'),
  meBalance: $('me-balance'),
  logout: $('logout'),
  convTitle: $('conv-title'),
  modelSelect: $('model-select'),
  scriptedNotice: $('scripted-notice'),
  banner: $('banner'),
  bannerText: $('banner-text'),
  bannerClose: $('banner-close'),
  scroller: $('scroller'),
  emptyState: $('empty-state'),
  messages: $('messages'),
  jump: $('jump'),
  composer: $('composer'),
  input: $('input'),
  send: $('send'),
  stop: $('stop'),
};

const ACTIVE = new Set(['queued', 'streaming']);
const CONTINUABLE = new Set(['stopped', 'interrupted']);
const MODEL_KEY = 'chorus.model';
const RENDER_INTERVAL_MS = 50;
const WATCHDOG_MS = 20000;

const state = {
  me: null,
  models: [],
  defaultModel: '',
  conversations: [],
  conv: null, // the open conversation (without messages), or null for a new chat
  branch: [], // the messages shown: the branch ending at the newest message
  views: new Map(), // message id -> view
  generation: 0, // bumped whenever the open conversation changes
  sending: false,
  stick: true, // keep the view scrolled to the bottom while replies stream
};

// ---------------------------------------------------------------- banner

function showError(err) {
  if (err && err.handled) return;
  const message = typeof err === 'string' ? err : (err && err.message) || 'Something went wrong.';
  ui.bannerText.textContent = message;
  ui.banner.hidden = false;
}

function hideError() {
  ui.banner.hidden = true;
  ui.bannerText.textContent = '';
}

// ---------------------------------------------------------------- views: login / app

function toLogin(message) {
  closeAllStreams();
  state.generation++;
  state.me = null;
  state.conv = null;
  state.branch = [];
  state.conversations = [];
  ui.boot.hidden = true;
  ui.appView.hidden = true;
  ui.loginView.hidden = false;
  ui.loginError.hidden = !message;
  ui.loginError.textContent = message || '';
  ui.loginPassword.value = '';
  ui.loginSubmit.disabled = false;
  (ui.loginName.value ? ui.loginPassword : ui.loginName).focus();
}

async function login(event) {
  event.preventDefault();
  const name = ui.loginName.value.trim();
  const password = ui.loginPassword.value;
  if (!name || !password) return;
  ui.loginSubmit.disabled = true;
  ui.loginError.hidden = true;
  try {
    const r = await api('POST', '/api/auth/login', { name, password });
    state.me = r.account || null;
    ui.loginPassword.value = '';
    await startApp();
  } catch (err) {
    ui.loginError.textContent =
      err.status === 401 ? 'Wrong name or password.' : err.message || 'Sign-in failed.';
    ui.loginError.hidden = false;
    ui.loginPassword.select();
  } finally {
    ui.loginSubmit.disabled = false;
  }
}

async function logout() {
  try {
    await api('POST', '/api/auth/logout');
  } catch {
    /* logged out anyway */
  }
  history.replaceState(null, '', location.pathname + location.search);
  toLogin('');
}

async function boot() {
  const ssoError = takeSsoError();
  try {
    state.me = await api('GET', '/api/me');
  } catch (err) {
    if (err.status === 401) {
      // api() showed the login form; a failed single sign-on says why.
      if (ssoError) {
        ui.loginError.textContent = ssoError;
        ui.loginError.hidden = false;
      }
      return;
    }
    ui.boot.textContent = `${err.message} Retrying…`;
    setTimeout(boot, 3000);
    return;
  }
  await startApp();
  if (ssoError) showError(ssoError);
}

/** Shows the account's balance when quotas are enforced (a failure just hides it). */
async function refreshBalance() {
  try {
    const u = await api('GET', '/api/me/usage?days=1');
    ui.meBalance.textContent = `${Number(u.balance).toFixed(2)} credits`;
    ui.meBalance.hidden = !u.quota_enabled;
  } catch {
    ui.meBalance.hidden = true;
  }
}

async function startApp() {
  ui.boot.hidden = true;
  ui.loginView.hidden = true;
  ui.appView.hidden = false;
  ui.meName.textContent = state.me ? state.me.name : '';
  refreshBalance();
  hideError();
  await Promise.all([loadModels(), loadConversations()]);
  const id = conversationId();
  if (id) await openConversation(id);
  else showNewChat();
  ui.input.focus();
}

// ---------------------------------------------------------------- models

async function loadModels() {
  let r;
  try {
    r = await api('GET', '/api/models');
  } catch (err) {
    showError(err);
    return;
  }
  state.models = r.models || [];
  state.defaultModel = r.default_model || '';
  ui.modelSelect.replaceChildren(
    ...state.models.map((m) => {
      const o = document.createElement('option');
      o.value = m.id;
      o.textContent = m.label || m.id;
      return o;
    }),
  );
  ui.modelSelect.disabled = state.models.length === 0;
  ui.scriptedNotice.hidden = !(state.models.length > 0 && state.models.every((m) => m.scripted));
  selectModel(localStorage.getItem(MODEL_KEY) || state.defaultModel);
}

function selectModel(id) {
  if (id && state.models.some((m) => m.id === id)) ui.modelSelect.value = id;
  else if (state.models.some((m) => m.id === state.defaultModel)) ui.modelSelect.value = state.defaultModel;
}

function selectedModel() {
  return ui.modelSelect.value || undefined;
}

function modelLabel(id) {
  const m = state.models.find((x) => x.id === id);
  return m ? m.label || m.id : id || '';
}

// ---------------------------------------------------------------- conversation list

async function loadConversations() {
  try {
    const r = await api('GET', '/api/conversations');
    state.conversations = r.conversations || [];
  } catch (err) {
    showError(err);
    return;
  }
  renderConversationList();
}

function dayGroup(ms) {
  const now = new Date();
  const startOfToday = new Date(now.getFullYear(), now.getMonth(), now.getDate()).getTime();
  const day = 86400000;
  if (ms >= startOfToday) return 'Today';
  if (ms >= startOfToday - day) return 'Yesterday';
  if (ms >= startOfToday - 7 * day) return 'Previous 7 days';
  if (ms >= startOfToday - 30 * day) return 'Previous 30 days';
  return 'Older';
}

function renderConversationList() {
  const items = [];
  let group = null;
  for (const c of state.conversations) {
    const g = dayGroup(c.updated_at || c.created_at || 0);
    if (g !== group) {
      group = g;
      const h = document.createElement('li');
      h.className = 'conv-group';
      h.textContent = g;
      items.push(h);
    }
    const li = document.createElement('li');
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'conv-item';
    b.dataset.id = c.id;
    b.title = c.title;
    if (state.conv && state.conv.id === c.id) {
      b.classList.add('active');
      b.setAttribute('aria-current', 'page');
    }
    b.textContent = c.title || 'Untitled';
    li.append(b);
    items.push(li);
  }
  ui.convList.replaceChildren(...items);
  ui.convEmpty.hidden = state.conversations.length > 0;
}

// ---------------------------------------------------------------- routing

function onHashChange() {
  if (!state.me) return;
  const id = conversationId();
  if (id && (!state.conv || state.conv.id !== id)) openConversation(id);
  else if (!id && state.conv) showNewChat();
}

function setSidebar(open) {
  document.body.classList.toggle('sidebar-open', open);
  ui.scrim.hidden = !open;
  ui.toggleSidebar.setAttribute('aria-expanded', String(open));
}

// ---------------------------------------------------------------- opening a conversation

function showNewChat() {
  state.generation++;
  closeAllStreams();
  state.conv = null;
  state.branch = [];
  state.views.clear();
  if (location.hash) history.pushState(null, '', location.pathname + location.search);
  selectModel(localStorage.getItem(MODEL_KEY) || state.defaultModel);
  renderConversation();
  renderConversationList();
  ui.input.focus();
}

/** The branch that ends at the newest message, oldest first. */
function branchOf(messages) {
  if (!messages || !messages.length) return [];
  const byId = new Map(messages.map((m) => [m.id, m]));
  const out = [];
  const seen = new Set();
  let m = messages[messages.length - 1];
  while (m && !seen.has(m.id)) {
    seen.add(m.id);
    out.push(m);
    m = m.parent_id ? byId.get(m.parent_id) : null;
  }
  return out.reverse();
}

async function openConversation(id) {
  const gen = ++state.generation;
  closeAllStreams();
  let conv;
  try {
    conv = await api('GET', convPath(id));
  } catch (err) {
    if (gen !== state.generation) return;
    if (err.status === 404) {
      showError('That conversation does not exist (or is not yours).');
      showNewChat();
    } else showError(err);
    return;
  }
  if (gen !== state.generation) return;
  const { messages, ...rest } = conv;
  state.conv = rest;
  state.branch = branchOf(messages);
  const lastModel = [...state.branch].reverse().find((m) => m.role === 'assistant' && m.model);
  selectModel((lastModel && lastModel.model) || rest.model);
  state.stick = true;
  renderConversation();
  renderConversationList();
  for (const m of state.branch) {
    const view = state.views.get(m.id);
    if (!view || view.role !== 'assistant' || !view.runId) continue;
    if (ACTIVE.has(view.status)) resumeRun(view);
    else if (view.status === 'failed' && !view.error) loadRunError(view);
  }
}

function renderConversation() {
  state.views.clear();
  const nodes = state.branch.map((m) => {
    const view = m.role === 'assistant' ? assistantView(m) : userView(m);
    state.views.set(m.id, view);
    return view.root;
  });
  ui.messages.replaceChildren(...nodes);
  const steps = (state.conv && state.conv.tool_steps) || {};
  for (const view of state.views.values()) {
    if (view.role !== 'assistant') continue;
    for (const step of steps[view.id] || []) {
      for (const c of step.calls) showToolCall(view, { id: c.id, name: c.name, arguments: c.arguments });
      for (const r of step.results) showToolResult(view, r);
    }
    renderNow(view);
  }
  const title = state.conv ? state.conv.title : 'New chat';
  ui.convTitle.textContent = title;
  document.title = state.conv ? `${title} · Chorus` : 'Chorus';
  ui.emptyState.hidden = state.branch.length > 0;
  updateComposer();
  scrollToBottom();
}

// ---------------------------------------------------------------- message views

function timeTitle(ms) {
  return ms ? new Date(ms).toLocaleString() : '';
}

function userView(m) {
  const root = el('article', 'msg user');
  root.dataset.id = m.id;
  root.setAttribute('aria-label', 'Your message');
  const bubble = el('div', 'bubble');
  bubble.title = timeTitle(m.created_at);
  bubble.append(el('div', 'user-text', m.content));
  root.append(bubble);
  return { role: 'user', id: m.id, root, message: m };
}

function assistantView(m) {
  const root = el('article', 'msg assistant');
  root.dataset.id = m.id;
  root.setAttribute('aria-label', 'Assistant message');
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
  cont.addEventListener('click', () => continueRun(view));
  copy.addEventListener('click', () => copyText(view.prefix + view.text, copy));
  return view;
}

// A tool call of a reply, one line, later replaced by its result.
function showToolCall(view, d) {
  const li = el('li', '', `🔧 ${d.name} ${JSON.stringify(d.arguments || {})} …`);
  li.dataset.call = d.id || '';
  view.toolsEl.append(li);
  view.toolsEl.hidden = false;
}

function showToolResult(view, d) {
  const li = [...view.toolsEl.children].find((x) => x.dataset.call === d.call_id) || el('li');
  const out = String(d.output || '');
  li.dataset.call = d.call_id || '';
  li.textContent = `🔧 ${d.name} → ${out.length > 300 ? `${out.slice(0, 300)}…` : out}`;
  li.classList.toggle('error', !!d.is_error);
  if (!li.parentNode) view.toolsEl.append(li);
  view.toolsEl.hidden = false;
}

function scheduleRender(view) {
  if (view.renderTimer) return;
  view.renderTimer = setTimeout(() => {
    view.renderTimer = null;
    requestAnimationFrame(() => renderNow(view));
  }, RENDER_INTERVAL_MS);
}

function renderNow(view) {
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

function renderFooter(view) {
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

async function copyText(text, button) {
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

// ---------------------------------------------------------------- runs

function activeView() {
  for (const v of state.views.values()) if (v.role === 'assistant' && ACTIVE.has(v.status)) return v;
  return null;
}

function stopFollowing(view) {
  if (view.es) view.es.close();
  view.es = null;
  clearTimeout(view.retryTimer);
  view.retryTimer = null;
  clearInterval(view.watchdog);
  view.watchdog = null;
}

function closeAllStreams() {
  for (const v of state.views.values()) {
    if (v.role !== 'assistant') continue;
    stopFollowing(v);
    clearTimeout(v.renderTimer);
    v.renderTimer = null;
  }
}

/** Follows a run's events after `after`, rendering into the view, until `finished`. */
function followRun(view, runId, after) {
  stopFollowing(view);
  view.runId = runId;
  view.lastSeq = after;
  view.lastEventAt = Date.now();
  const es = new EventSource(`${runPath(runId)}/events?after=${after}`);
  view.es = es;
  const mine = () => view.es === es;
  const take = (e) => {
    view.lastEventAt = Date.now();
    view.reconnecting = false;
    view.failures = 0;
    const seq = parseInt(e.lastEventId, 10);
    if (Number.isFinite(seq)) view.lastSeq = seq;
    try {
      return JSON.parse(e.data);
    } catch {
      return {};
    }
  };

  es.addEventListener('open', () => {
    if (!mine()) return;
    if (view.reconnecting) {
      view.reconnecting = false;
      renderFooter(view);
    }
  });
  es.addEventListener('started', (e) => {
    if (!mine()) return;
    const d = take(e);
    if (typeof d.prefix === 'string') view.prefix = d.prefix;
    if (d.model) view.model = d.model;
    view.text = '';
    view.reasoning = '';
    if (!d.prefix) view.toolsEl.replaceChildren();
    view.status = 'streaming';
    scheduleRender(view);
  });
  es.addEventListener('delta', (e) => {
    if (!mine()) return;
    const d = take(e);
    view.text += d.text || '';
    if (view.status === 'queued') view.status = 'streaming';
    scheduleRender(view);
  });
  es.addEventListener('reasoning', (e) => {
    if (!mine()) return;
    const d = take(e);
    view.reasoning += d.text || '';
    if (view.status === 'queued') view.status = 'streaming';
    scheduleRender(view);
  });
  // Tool calls and their results, one line each, in the run's order.
  es.addEventListener('tool_call', (e) => {
    if (mine()) showToolCall(view, take(e));
  });
  es.addEventListener('tool_result', (e) => {
    if (mine()) showToolResult(view, take(e));
  });
  es.addEventListener('snapshot', (e) => {
    if (!mine()) return;
    const d = take(e);
    view.text = d.text || '';
    scheduleRender(view);
  });
  es.addEventListener('usage', (e) => {
    if (!mine()) return;
    view.usage = take(e);
    scheduleRender(view);
  });
  es.addEventListener('finished', (e) => {
    if (!mine()) return;
    const d = take(e);
    stopFollowing(view); // closes the EventSource so it does not reconnect
    view.status = d.status || 'complete';
    view.error = d.error || null;
    view.reason = d.reason || null;
    view.stopping = false;
    renderNow(view);
    runEnded(view);
    refreshBalance();
  });
  es.addEventListener('journal_error', () => {
    if (!mine()) return;
    // The server could not read the run's journal: reconnect shortly.
    es.close();
    view.es = null;
    view.reconnecting = true;
    renderFooter(view);
    view.retryTimer = setTimeout(() => followRun(view, runId, view.lastSeq), 1000);
  });
  es.addEventListener('error', () => {
    if (!mine()) return;
    if (es.readyState === EventSource.CLOSED) {
      // The server refused the stream (an HTTP error): find out why, then retry.
      view.es = null;
      view.reconnecting = true;
      renderFooter(view);
      view.failures++;
      const delay = Math.min(1000 * view.failures, 10000);
      view.retryTimer = setTimeout(() => resumeRun(view), delay);
    } else {
      // The browser reconnects by itself, sending Last-Event-ID. A stream that ended
      // without `finished` may mean the run is over: ask.
      view.reconnecting = true;
      renderFooter(view);
      checkRun(view, runId);
    }
  });

  // A stream can go quiet for good if the run ended in a way the stream missed; every
  // so often, ask the server how the run is doing.
  view.watchdog = setInterval(() => {
    if (mine() && Date.now() - view.lastEventAt > WATCHDOG_MS) checkRun(view, runId);
  }, WATCHDOG_MS / 2);
  updateComposer();
}

async function checkRun(view, runId) {
  const gen = state.generation;
  let rv;
  try {
    rv = await api('GET', runPath(runId));
  } catch {
    return;
  }
  if (gen !== state.generation || view.runId !== runId || !view.es) return;
  view.lastEventAt = Date.now();
  if (!ACTIVE.has(rv.status)) applyRunView(view, rv);
}

/** Shows a run's state as the server has it now, then follows it if it is going. */
async function resumeRun(view) {
  const gen = state.generation;
  const runId = view.runId;
  let rv;
  try {
    rv = await api('GET', runPath(runId));
  } catch (err) {
    if (gen !== state.generation || err.handled) return;
    if (err.status === 404) {
      view.status = 'failed';
      view.error = 'this reply is no longer available';
      renderNow(view);
      updateComposer();
      return;
    }
    view.failures++;
    view.reconnecting = true;
    renderFooter(view);
    view.retryTimer = setTimeout(() => resumeRun(view), Math.min(1000 * view.failures, 10000));
    return;
  }
  if (gen !== state.generation || view.runId !== runId) return;
  applyRunView(view, rv);
}

function applyRunView(view, rv) {
  view.prefix = rv.prefix || '';
  view.text = rv.text || '';
  view.status = rv.status;
  view.error = rv.error || null;
  view.reason = rv.finish_reason || null;
  if (rv.model) view.model = rv.model;
  if (ACTIVE.has(rv.status)) {
    renderNow(view);
    followRun(view, rv.id, rv.seq || 0);
  } else {
    stopFollowing(view);
    view.stopping = false;
    view.reconnecting = false;
    if (rv.completion_tokens != null && !view.usage) {
      view.usage = {
        prompt_tokens: rv.prompt_tokens || 0,
        completion_tokens: rv.completion_tokens,
        estimated: false,
      };
    }
    renderNow(view);
    runEnded(view);
  }
}

async function loadRunError(view) {
  try {
    const rv = await api('GET', runPath(view.runId));
    view.error = rv.error || rv.finish_reason || null;
    renderFooter(view);
  } catch {
    /* the status alone will do */
  }
}

function runEnded(view) {
  updateComposer();
  loadConversations();
}

async function stopRun() {
  const view = activeView();
  if (!view || !view.runId) return;
  view.stopping = true;
  renderFooter(view);
  updateComposer();
  try {
    await api('POST', `${runPath(view.runId)}/stop`);
  } catch (err) {
    view.stopping = false;
    renderFooter(view);
    updateComposer();
    showError(err);
  }
  // The `finished` event ends the run on screen.
}

async function continueRun(view) {
  if (!view.runId || activeView()) return;
  view.continueBtn.disabled = true;
  try {
    const r = await api('POST', `${runPath(view.runId)}/continue`);
    // The new run extends this message: what is shown so far is its prefix.
    view.prefix += view.text;
    view.text = '';
    view.usage = null;
    view.error = null;
    view.reason = null;
    view.status = 'queued';
    state.stick = true;
    renderNow(view);
    followRun(view, r.run_id, 0);
  } catch (err) {
    showError(err);
  } finally {
    view.continueBtn.disabled = false;
  }
}

// ---------------------------------------------------------------- sending

function titleFrom(text) {
  const t = text.replace(/\s+/g, ' ').trim();
  return t.length > 40 ? t.slice(0, 40).trimEnd() + '…' : t;
}

async function send() {
  const content = ui.input.value;
  if (!content.trim() || state.sending || activeView()) return;
  // A conversation named in the URL that is still loading: wait for it.
  const wanted = conversationId();
  if (wanted && (!state.conv || state.conv.id !== wanted)) return;
  state.sending = true;
  updateComposer();
  const gen = state.generation;
  try {
    let conv = state.conv;
    if (!conv) {
      conv = await api('POST', '/api/conversations', {
        title: titleFrom(content),
        model: selectedModel(),
      });
      if (gen !== state.generation) return;
      state.generation++;
      state.conv = conv;
      state.branch = [];
      location.hash = `c=${encodeURIComponent(conv.id)}`;
    }
    const convGen = state.generation;
    const last = state.branch[state.branch.length - 1];
    const body = { content, model: selectedModel() };
    if (last) body.parent_id = last.id;
    const r = await api('POST', `${convPath(conv.id)}/messages`, body);
    if (convGen !== state.generation) return;
    ui.input.value = '';
    autoGrow();
    const now = Date.now();
    const user = { id: r.message_id, parent_id: last ? last.id : null, role: 'user', content, created_at: now };
    const reply = {
      id: r.assistant_message_id,
      parent_id: r.message_id,
      role: 'assistant',
      content: '',
      model: body.model || conv.model,
      created_at: now,
      run_id: r.run_id,
      run_status: 'queued',
    };
    state.branch.push(user, reply);
    const uv = userView(user);
    const av = assistantView(reply);
    state.views.set(user.id, uv);
    state.views.set(reply.id, av);
    ui.messages.append(uv.root, av.root);
    ui.emptyState.hidden = true;
    ui.convTitle.textContent = conv.title;
    document.title = `${conv.title} · Chorus`;
    state.stick = true;
    renderNow(av);
    followRun(av, r.run_id, 0);
    loadConversations();
  } catch (err) {
    showError(err);
  } finally {
    state.sending = false;
    updateComposer();
  }
}

function updateComposer() {
  const active = activeView();
  ui.send.hidden = !!active;
  ui.stop.hidden = !active;
  ui.stop.disabled = !!(active && active.stopping);
  ui.stop.textContent = active && active.stopping ? 'Stopping…' : 'Stop';
  ui.send.disabled = state.sending || !ui.input.value.trim();
}

function autoGrow() {
  // CSS `field-sizing: content` grows the box where supported; rows is the fallback.
  const lines = ui.input.value.split('\n').length;
  ui.input.rows = Math.min(Math.max(lines, 1), 10);
}

// ---------------------------------------------------------------- scrolling

function nearBottom() {
  const s = ui.scroller;
  return s.scrollHeight - s.scrollTop - s.clientHeight < 48;
}

function scrollToBottom() {
  ui.scroller.scrollTop = ui.scroller.scrollHeight;
  ui.jump.hidden = true;
}

// ---------------------------------------------------------------- wiring

ui.loginForm.addEventListener('submit', login);
ui.logout.addEventListener('click', logout);
$('open-identities').addEventListener('click', () => openIdentities().catch(showError));
ui.bannerClose.addEventListener('click', hideError);
ui.newChat.addEventListener('click', () => {
  setSidebar(false);
  showNewChat();
});
ui.convList.addEventListener('click', (e) => {
  const b = e.target.closest('.conv-item');
  if (!b) return;
  setSidebar(false);
  const id = b.dataset.id;
  if (state.conv && state.conv.id === id) return;
  location.hash = `c=${encodeURIComponent(id)}`;
});
ui.toggleSidebar.addEventListener('click', () =>
  setSidebar(!document.body.classList.contains('sidebar-open')),
);
ui.scrim.addEventListener('click', () => setSidebar(false));
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape') setSidebar(false);
});
ui.modelSelect.addEventListener('change', () => {
  localStorage.setItem(MODEL_KEY, ui.modelSelect.value);
});
ui.composer.addEventListener('submit', (e) => {
  e.preventDefault();
  send();
});
ui.input.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    send();
  }
});
ui.input.addEventListener('input', () => {
  autoGrow();
  updateComposer();
});
ui.stop.addEventListener('click', stopRun);
ui.scroller.addEventListener('scroll', () => {
  state.stick = nearBottom();
  ui.jump.hidden = state.stick || state.branch.length === 0;
});
ui.scroller.addEventListener('wheel', (e) => {
  if (e.deltaY < 0) state.stick = false;
});
ui.jump.addEventListener('click', () => {
  state.stick = true;
  scrollToBottom();
});
ui.messages.addEventListener('click', (e) => {
  const b = e.target.closest('.code-copy');
  if (!b) return;
  const code = b.closest('.code-block')?.querySelector('pre code');
  if (code) copyText(code.textContent, b);
});
window.addEventListener('hashchange', onHashChange);
onUnauthorized((err) =>
  toLogin(err.code === 'session_expired' ? 'Your session expired. Please sign in again.' : ''),
);

setupLogin();
boot();
