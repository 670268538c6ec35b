// The sidebar: the account's conversations grouped by day (the open one highlighted),
// the account's name and balance, and opening and closing it on narrow screens.

import { api } from './api.js';
import { el } from './dom.js';
import { showError, state, ui } from './state.js';

export async function loadConversations() {
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

/** The conversation list, grouped by day, with the open one highlighted. */
export function renderConversationList() {
  const items = [];
  let group = null;
  for (const c of state.conversations) {
    const g = dayGroup(c.updated_at || c.created_at || 0);
    if (g !== group) {
      group = g;
      items.push(el('li', 'conv-group', g));
    }
    const b = el('button', 'conv-item', c.title || 'Untitled');
    b.type = 'button';
    b.dataset.id = c.id;
    b.title = c.title;
    if (state.conv && state.conv.id === c.id) {
      b.classList.add('active');
      b.setAttribute('aria-current', 'page');
    }
    const li = el('li');
    li.append(b);
    items.push(li);
  }
  ui.convList.replaceChildren(...items);
  ui.convEmpty.hidden = state.conversations.length > 0;
}

/** Opens or closes the sidebar (on narrow screens it slides over the chat). */
export function setSidebar(open) {
  document.body.classList.toggle('sidebar-open', open);
  ui.scrim.hidden = !open;
  ui.toggleSidebar.setAttribute('aria-expanded', String(open));
}

/** Shows the account's balance when quotas are enforced (a failure just hides it). */
export async function refreshBalance() {
  try {
    const u = await api('GET', '/api/me/usage?days=1');
    ui.meBalance.textContent = `${Number(u.balance).toFixed(2)} credits`;
    ui.meBalance.hidden = !u.quota_enabled;
  } catch {
    ui.meBalance.hidden = true;
  }
}
