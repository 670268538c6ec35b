// The run stream reader: follows a run's events (SSE through EventSource, which
// reconnects by itself with Last-Event-ID) into its message view, asks the server how
// the run is doing when the stream errs or goes quiet, and stops and continues runs.

import { api, runPath } from './api.js';
import { renderFooter, renderNow, scheduleRender, showToolCall, showToolResult } from './messages.js';
import { loadConversations, refreshBalance } from './sidebar.js';
import { ACTIVE, activeView, showError, state, updateComposer } from './state.js';

const WATCHDOG_MS = 20000;

function stopFollowing(view) {
  if (view.es) view.es.close();
  view.es = null;
  clearTimeout(view.retryTimer);
  view.retryTimer = null;
  clearInterval(view.watchdog);
  view.watchdog = null;
}

export function closeAllStreams() {
  for (const v of state.views.values()) {
    if (v.role !== 'assistant') continue;
    stopFollowing(v);
    clearTimeout(v.renderTimer);
    v.renderTimer = null;
  }
}

/** Follows a run's events after `after`, rendering into the view, until `finished`. */
export function followRun(view, runId, after) {
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
  // The reply's text and its reasoning, piece by piece.
  for (const [event, field] of [['delta', 'text'], ['reasoning', 'reasoning']]) {
    es.addEventListener(event, (e) => {
      if (!mine()) return;
      view[field] += take(e).text || '';
      if (view.status === 'queued') view.status = 'streaming';
      scheduleRender(view);
    });
  }
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
      retryLater(view);
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
export async function resumeRun(view) {
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
    retryLater(view);
    return;
  }
  if (gen !== state.generation || view.runId !== runId) return;
  applyRunView(view, rv);
}

/** Resumes the run after a pause that grows with each failure in a row (up to 10 s). */
function retryLater(view) {
  view.failures++;
  view.reconnecting = true;
  renderFooter(view);
  view.retryTimer = setTimeout(() => resumeRun(view), Math.min(1000 * view.failures, 10000));
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

export async function loadRunError(view) {
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

export async function stopRun() {
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

export async function continueRun(view) {
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
