// The open conversation: opening one (from the URL, #c=ID) with its branch of
// messages and any reply still going, a new chat, and sending a message.

import { api, convPath } from './api.js';
import { conversationId } from './dom.js';
import { assistantView, renderNow, showToolCall, showToolResult, userView } from './messages.js';
import { selectedModel, selectModel, selectRememberedModel } from './models.js';
import { closeAllStreams, followRun, loadRunError, resumeRun } from './runs.js';
import { loadConversations, renderConversationList } from './sidebar.js';
import { ACTIVE, activeView, autoGrow, scrollToBottom, showError, state, ui, updateComposer } from './state.js';

/** Opens the conversation the URL names (#c=ID), or a new chat. */
export function onHashChange() {
  if (!state.me) return;
  const id = conversationId();
  if (id && (!state.conv || state.conv.id !== id)) openConversation(id);
  else if (!id && state.conv) showNewChat();
}

/** An empty chat; the first message sent creates its conversation. */
export function showNewChat() {
  state.generation++;
  closeAllStreams();
  state.conv = null;
  state.branch = [];
  state.views.clear();
  if (location.hash) history.pushState(null, '', location.pathname + location.search);
  selectRememberedModel();
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

/** Shows a conversation, and follows its reply if one is going. */
export async function openConversation(id) {
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

function titleFrom(text) {
  const t = text.replace(/\s+/g, ' ').trim();
  return t.length > 40 ? t.slice(0, 40).trimEnd() + '…' : t;
}

/** Sends the composer's text (creating the conversation for a new chat) and follows the reply. */
export async function send() {
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
