// The Chorus chat client's entry point: wires the page's controls to the modules that
// do the work, then starts. Plain ES modules, no build step, no dependencies:
//   api.js, dom.js    the JSON API wrapper and DOM helpers (shared with tools.js, sso.js)
//   state.js          the page's elements and the client's shared state
//   session.js        login, logout and the start of the client
//   sidebar.js        the conversation list, the account's name and balance
//   models.js         the model picker
//   conversation.js   the open conversation: opening, a new chat, sending
//   messages.js       rendering messages (markdown.js renders model output safely)
//   runs.js           following a reply's event stream, stop and continue
//   account.js        the account dialog (usage charts from chart.js, link codes,
//                     API keys, sessions; sign-in methods and password from sso.js)
// tools.js (the Tools panel) is a page script of its own.

import { onUnauthorized } from './api.js';
import { $ } from './dom.js';
import { onHashChange, send, showNewChat } from './conversation.js';
import { copyText } from './messages.js';
import { rememberModel } from './models.js';
import { continueRun, stopRun } from './runs.js';
import { boot, login, logout, toLogin } from './session.js';
import { setSidebar } from './sidebar.js';
import { openAccount, setupAccount } from './account.js';
import { setupAccountControls, setupLogin } from './sso.js';
import { autoGrow, hideError, nearBottom, scrollToBottom, showError, state, ui, updateComposer } from './state.js';

ui.loginForm.addEventListener('submit', login);
ui.logout.addEventListener('click', logout);
$('open-account').addEventListener('click', () => openAccount().catch(showError));
setupAccountControls(() => toLogin(''));
setupAccount((message) => toLogin(message || ''));
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
ui.modelSelect.addEventListener('change', rememberModel);
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
// The buttons inside messages: a code block's Copy, and a reply's Continue (or Retry).
ui.messages.addEventListener('click', (e) => {
  const b = e.target.closest('.code-copy');
  if (b) {
    const code = b.closest('.code-block')?.querySelector('pre code');
    if (code) copyText(code.textContent, b);
    return;
  }
  const cont = e.target.closest('button.continue');
  const view = cont && state.views.get(cont.closest('article.msg').dataset.id);
  if (view) continueRun(view);
});
window.addEventListener('hashchange', onHashChange);
// A 401 from any API call (an expired or revoked session) shows the login form.
onUnauthorized((err) =>
  toLogin(err.code === 'session_expired' ? 'Your session expired. Please sign in again.' : ''),
);

setupLogin();
boot();
