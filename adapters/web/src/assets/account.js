// The account dialog: what the JSON API offers a person about their own account, on
// one screen. Balance and usage as charts (chart.js), link codes (issue one and see
// it expire, or redeem another account's), sign-in methods (sso.js), API keys
// (created with scopes and shown once, listed, revoked), the signed-in browsers (end
// one, or all) and the password (sso.js). Every dynamic text is set with textContent.

import { api } from './api.js';
import { $, el } from './dom.js';
import { drawUsage, fmtCredits } from './chart.js';
import { loadIdentities } from './sso.js';

let linkTimer = null;

/** Shows `err` in the section's error line `id`. */
function showIn(id, err) {
  if (err && err.handled) return;
  const p = $(id);
  p.textContent = (err && err.message) || String(err);
  p.hidden = false;
}

const when = (ms) => new Date(ms).toLocaleString();

/** Opens the account dialog and loads every section. */
export async function openAccount() {
  const dialog = $('account-dialog');
  for (const id of ['usage-error', 'keys-error', 'sessions-error', 'identities-error']) $(id).hidden = true;
  $('link-status').hidden = true;
  $('password-status').hidden = true;
  $('key-created').hidden = true;
  $('key-secret').textContent = '';
  if (!dialog.open) dialog.showModal();
  await Promise.all([
    loadUsage().catch((e) => showIn('usage-error', e)),
    loadIdentities().catch((e) => showIn('identities-error', e)),
    loadKeys().catch((e) => showIn('keys-error', e)),
    loadSessions().catch((e) => showIn('sessions-error', e)),
  ]);
}

// ---------------------------------------------------------------- usage

async function loadUsage() {
  const days = Number($('usage-days').value) || 30;
  const u = await api('GET', `/api/me/usage?days=${days}`);
  const runs = (u.by_day || []).reduce((n, d) => n + d.runs, 0);
  const spent = (u.by_day || []).reduce((n, d) => n + d.cost, 0);
  const replies = runs === 1 ? '1 reply' : `${runs} replies`;
  $('usage-summary').textContent =
    `Balance: ${fmtCredits(u.balance)} credits. Last ${u.days} days: ${replies}, ${fmtCredits(spent)} credits spent.` +
    (u.quota_enabled ? '' : ' Balances are not enforced on this server.');
  drawUsage($('usage-chart'), u);
  $('usage-models').replaceChildren(
    ...(u.by_model || []).map((m) =>
      el(
        'li',
        'account-item',
        `${m.key || 'unknown model'}: ${m.runs} ${m.runs === 1 ? 'reply' : 'replies'}, ` +
          `${m.prompt_tokens} prompt + ${m.completion_tokens} completion tokens, ${fmtCredits(m.cost)} credits`,
      ),
    ),
  );
}

// ---------------------------------------------------------------- link codes

function showLinkCode(issued) {
  clearInterval(linkTimer);
  $('link-code').textContent = issued.code;
  $('link-issued').hidden = false;
  const tick = () => {
    const left = Math.round((issued.expires_at - Date.now()) / 1000);
    const expiry = $('link-expiry');
    if (left <= 0) {
      expiry.textContent = 'expired; get a new code';
      $('link-issued').classList.add('expired');
      clearInterval(linkTimer);
      return;
    }
    const mm = Math.floor(left / 60);
    const ss = String(left % 60).padStart(2, '0');
    expiry.textContent = `works once, until ${new Date(issued.expires_at).toLocaleTimeString()} (${mm}:${ss} left)`;
  };
  $('link-issued').classList.remove('expired');
  $('link-issued').dataset.expiresAt = String(issued.expires_at);
  tick();
  linkTimer = setInterval(tick, 1000);
}

async function issueLinkCode() {
  const status = $('link-status');
  status.hidden = true;
  try {
    showLinkCode(await api('POST', '/api/link-codes'));
  } catch (err) {
    if (err.handled) return;
    status.textContent = err.message || 'Could not get a link code.';
    status.hidden = false;
  }
}

async function redeemLinkCode(signedOut) {
  const status = $('link-status');
  const code = $('link-redeem-code').value.trim();
  status.hidden = true;
  if (!code) return;
  try {
    await api('POST', '/api/link-codes/redeem', { code });
  } catch (err) {
    if (err.handled) return;
    status.textContent = err.message || 'Could not redeem the code.';
    status.hidden = false;
    return;
  }
  // This account joined the issuer's: its session ended with it.
  $('link-redeem-code').value = '';
  $('account-dialog').close();
  signedOut('Linked: this account joined the one that issued the code. Sign in again to use it.');
}

// ---------------------------------------------------------------- API keys

async function loadKeys() {
  const r = await api('GET', '/api/keys');
  const items = (r.api_keys || []).map((k) => {
    const li = el('li', 'account-item key-item');
    li.dataset.id = k.id;
    li.dataset.name = k.name;
    const used = k.last_used_at ? `last used ${when(k.last_used_at)}` : 'never used';
    const text = el(
      'span',
      'account-item-text',
      `${k.name} — ${k.prefix}… — ${(k.scopes || []).join(', ')} — created ${when(k.created_at)}, ${used}`,
    );
    li.append(text);
    if (k.revoked_at) {
      li.classList.add('revoked');
      li.append(el('span', 'account-badge', `revoked ${when(k.revoked_at)}`));
    } else {
      const b = el('button', 'btn btn-ghost btn-small key-revoke', 'Revoke');
      b.type = 'button';
      b.addEventListener('click', async () => {
        $('keys-error').hidden = true;
        try {
          await api('DELETE', `/api/keys/${encodeURIComponent(k.id)}`);
          await loadKeys();
        } catch (err) {
          showIn('keys-error', err);
        }
      });
      li.append(b);
    }
    return li;
  });
  $('key-list').replaceChildren(...items);
  if (items.length === 0) $('key-list').append(el('li', 'account-item account-empty', 'No API keys yet.'));
}

async function createKey() {
  $('keys-error').hidden = true;
  const name = $('key-name').value.trim();
  if (!name) return;
  const scopes = $('key-scope-chat').checked ? ['read', 'chat'] : ['read'];
  try {
    const r = await api('POST', '/api/keys', { name, scopes });
    $('key-secret').textContent = r.key;
    $('key-created').hidden = false;
    $('key-name').value = '';
    await loadKeys();
  } catch (err) {
    showIn('keys-error', err);
  }
}

// ---------------------------------------------------------------- sessions

/** "Chrome on Linux" from a User-Agent, roughly; the raw string is the item's title. */
export function browserName(ua) {
  if (!ua) return 'Unknown browser';
  const browser =
    [
      [/Edg\//, 'Edge'],
      [/OPR\//, 'Opera'],
      [/Firefox\//, 'Firefox'],
      [/Chrom(e|ium)\//, 'Chrome'],
      [/Safari\//, 'Safari'],
      [/curl\//, 'curl'],
    ].find(([re]) => re.test(ua))?.[1] || 'Browser';
  const os =
    [
      [/Android/, 'Android'],
      [/iPhone|iPad/, 'iOS'],
      [/Windows/, 'Windows'],
      [/Mac OS X|Macintosh/, 'macOS'],
      [/Linux/, 'Linux'],
    ].find(([re]) => re.test(ua))?.[1];
  return os ? `${browser} on ${os}` : browser;
}

async function loadSessions() {
  const r = await api('GET', '/api/me/sessions');
  const items = (r.sessions || []).map((s) => {
    const li = el('li', 'account-item session-item');
    li.dataset.id = s.id;
    if (s.current) li.dataset.current = 'true';
    const seen = s.last_seen_at ? `active ${when(s.last_seen_at)}` : 'not used since';
    const text = el('span', 'account-item-text', `${browserName(s.user_agent)} — signed in ${when(s.created_at)}, ${seen}`);
    if (s.user_agent) text.title = s.user_agent;
    li.append(text);
    if (s.current) {
      li.append(el('span', 'account-badge', 'this browser'));
    } else {
      const b = el('button', 'btn btn-ghost btn-small session-revoke', 'Sign out');
      b.type = 'button';
      b.addEventListener('click', async () => {
        $('sessions-error').hidden = true;
        try {
          await api('DELETE', `/api/me/sessions/${encodeURIComponent(s.id)}`);
          await loadSessions();
        } catch (err) {
          showIn('sessions-error', err);
        }
      });
      li.append(b);
    }
    return li;
  });
  $('session-list').replaceChildren(...items);
}

// ---------------------------------------------------------------- wiring

/** Wires the dialog's controls; `signedOut(message)` shows the login form once this
 * browser's session has ended (a redeemed link code ends it). */
export function setupAccount(signedOut) {
  $('usage-days').addEventListener('change', () => loadUsage().catch((e) => showIn('usage-error', e)));
  $('link-issue').addEventListener('click', issueLinkCode);
  $('link-redeem').addEventListener('submit', (e) => {
    e.preventDefault();
    redeemLinkCode(signedOut);
  });
  $('key-form').addEventListener('submit', (e) => {
    e.preventDefault();
    createKey();
  });
  $('key-copy').addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText($('key-secret').textContent);
      $('key-copy').textContent = 'Copied';
    } catch {
      $('key-copy').textContent = 'Select and copy';
    }
    setTimeout(() => ($('key-copy').textContent = 'Copy'), 1500);
  });
  // A password change ends the other sessions: show the list as it is now.
  document.addEventListener('chorus:sessions-changed', () =>
    loadSessions().catch((e) => showIn('sessions-error', e)),
  );
  $('account-dialog').addEventListener('close', () => {
    // The key is shown once: it does not stay on the page.
    $('key-secret').textContent = '';
    $('key-created').hidden = true;
  });
}
