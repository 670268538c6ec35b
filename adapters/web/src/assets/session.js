// Signing in and out: the login form, logout, and the start of the client (the app
// for a valid session, the login form otherwise, a failed single sign-on's error).

import { api } from './api.js';
import { conversationId } from './dom.js';
import { openConversation, showNewChat } from './conversation.js';
import { loadModels } from './models.js';
import { closeAllStreams } from './runs.js';
import { loadConversations, refreshBalance } from './sidebar.js';
import { takeSsoError } from './sso.js';
import { hideError, showError, state, ui } from './state.js';

/** Shows the login form (with `message`, if any), forgetting the signed-in state. */
export function toLogin(message) {
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

export async function login(event) {
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

export async function logout() {
  try {
    await api('POST', '/api/auth/logout');
  } catch {
    /* logged out anyway */
  }
  history.replaceState(null, '', location.pathname + location.search);
  toLogin('');
}

/** Starts the client: the app when the session cookie is good, else the login form. */
export async function boot() {
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
