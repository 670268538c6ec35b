// The chat client's shared state: the page's elements, what is signed in and open
// (the conversation, its messages' views, whether a reply is going), and the small
// helpers most parts use: the error banner, the composer's buttons, scrolling the
// messages.

import { $ } from './dom.js';

/** The page's elements the client works with. */
export const ui = {
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

/** The statuses of a run that is still going. */
export const ACTIVE = new Set(['queued', 'streaming']);

/** What is signed in and open, shared by every part of the client. */
export const state = {
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

/** Shows an error in the banner above the messages (not one the app already handled). */
export function showError(err) {
  if (err && err.handled) return;
  const message = typeof err === 'string' ? err : (err && err.message) || 'Something went wrong.';
  ui.bannerText.textContent = message;
  ui.banner.hidden = false;
}

export function hideError() {
  ui.banner.hidden = true;
  ui.bannerText.textContent = '';
}

/** The assistant message whose run is going, if any (at most one at a time). */
export function activeView() {
  for (const v of state.views.values()) if (v.role === 'assistant' && ACTIVE.has(v.status)) return v;
  return null;
}

/** Send or Stop, as the open conversation's state says. */
export function updateComposer() {
  const active = activeView();
  ui.send.hidden = !!active;
  ui.stop.hidden = !active;
  ui.stop.disabled = !!(active && active.stopping);
  ui.stop.textContent = active && active.stopping ? 'Stopping…' : 'Stop';
  ui.send.disabled = state.sending || !ui.input.value.trim();
}

export function autoGrow() {
  // CSS `field-sizing: content` grows the box where supported; rows is the fallback.
  const lines = ui.input.value.split('\n').length;
  ui.input.rows = Math.min(Math.max(lines, 1), 10);
}

/** Whether the messages are scrolled (nearly) to the bottom. */
export function nearBottom() {
  const s = ui.scroller;
  return s.scrollHeight - s.scrollTop - s.clientHeight < 48;
}

export function scrollToBottom() {
  ui.scroller.scrollTop = ui.scroller.scrollHeight;
  ui.jump.hidden = true;
}
