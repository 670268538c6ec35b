// Single sign-on in the chat client: the provider buttons of the login page, and the
// account dialog's "Sign-in methods" (account.js opens it): the account's identities,
// linking another provider (a logged-in start links instead of logging in) and
// unlinking one, changing the password and signing out everywhere.
// Every dynamic text is set with textContent.

import { api } from './api.js';
import { $, el } from './dom.js';

/** The error of a failed SSO callback (`/?sso_error=...`), once: it is removed from
 * the address bar so a reload does not show it again. */
export function takeSsoError() {
  const params = new URLSearchParams(location.search);
  const message = params.get('sso_error');
  if (message === null) return null;
  params.delete('sso_error');
  const rest = params.toString();
  history.replaceState(null, '', location.pathname + (rest ? `?${rest}` : '') + location.hash);
  return message;
}

const startUrl = (id) => `/api/auth/sso/${encodeURIComponent(id)}/start`;

let providers = [];

/** Loads the providers and shows their buttons (and hides the password form when
 * local passwords are disabled). Never throws: the password form stays usable. */
export async function setupLogin() {
  let info;
  try {
    info = await api('GET', '/api/auth/providers');
  } catch {
    return;
  }
  providers = info.providers || [];
  const list = $('sso-buttons');
  list.replaceChildren();
  for (const p of providers) {
    const a = el('a', `btn btn-outline btn-block sso-btn sso-${p.kind}`, `Continue with ${p.name}`);
    a.href = startUrl(p.id);
    a.dataset.provider = p.id;
    list.append(a);
  }
  $('sso-section').hidden = providers.length === 0;
  $('sso-divider').hidden = providers.length === 0 || info.local_passwords === false;
  if (info.local_passwords === false) {
    $('local-login').hidden = true;
    for (const input of $('local-login').querySelectorAll('input')) input.required = false;
    $('login-submit').hidden = true;
  }
}

const PLATFORM_NAMES = { web: 'Name and password', discord: 'Discord', slack: 'Slack', github: 'GitHub', matrix: 'Matrix' };

function platformName(platform) {
  if (PLATFORM_NAMES[platform]) return PLATFORM_NAMES[platform];
  if (platform.startsWith('oidc:')) {
    const p = providers.find((x) => `oidc:${x.id}` === platform);
    return p ? p.name : platform.slice(5);
  }
  return platform;
}

/** Fills the account dialog's sign-in methods: the identities and the providers
 * that can be linked. */
export async function loadIdentities() {
  $('identities-error').hidden = true;
  const links = $('identities-link');
  links.replaceChildren();
  for (const p of providers) {
    const a = el('a', 'btn btn-outline btn-small', `Link ${p.name}`);
    a.href = startUrl(p.id);
    links.append(a);
  }
  $('identities-link-section').hidden = providers.length === 0;
  await renderIdentities();
}

async function renderIdentities() {
  const list = $('identities-list');
  const error = $('identities-error');
  const r = await api('GET', '/api/me/identities');
  list.replaceChildren();
  for (const identity of r.identities || []) {
    const li = el('li', 'identity');
    const label = identity.label || identity.external_id;
    li.append(el('span', 'identity-text', `${platformName(identity.platform)} — ${label}`));
    if (identity.platform !== 'web') {
      const b = el('button', 'btn btn-ghost btn-small identity-unlink', 'Unlink');
      b.type = 'button';
      b.addEventListener('click', async () => {
        error.hidden = true;
        try {
          await api('DELETE', `/api/me/identities/${encodeURIComponent(identity.id)}`);
          await renderIdentities();
        } catch (err) {
          error.textContent = err.message || 'Could not unlink.';
          error.hidden = false;
        }
      });
      li.append(b);
    }
    list.append(li);
  }
}

/** Wires the dialog's password change and "sign out everywhere"; `signedOut` runs
 * once every session (this one included) has ended. */
export function setupAccountControls(signedOut) {
  const status = $('password-status');
  $('password-change').addEventListener('click', async () => {
    status.hidden = true;
    try {
      const r = await api('POST', '/api/me/password', {
        current_password: $('password-current').value,
        new_password: $('password-new').value,
      });
      $('password-current').value = '';
      $('password-new').value = '';
      const others = r.sessions_ended === 1 ? '1 other session' : `${r.sessions_ended} other sessions`;
      status.textContent = `Password changed; ${others} signed out.`;
      document.dispatchEvent(new CustomEvent('chorus:sessions-changed'));
    } catch (err) {
      status.textContent = err.status === 401 ? 'The current password is wrong.' : err.message || 'Could not change the password.';
    }
    status.hidden = false;
  });
  $('sign-out-everywhere').addEventListener('click', async () => {
    const error = $('sessions-error');
    error.hidden = true;
    try {
      await api('DELETE', '/api/me/sessions');
    } catch (err) {
      if (err.status !== 401) {
        error.textContent = err.message || 'Could not sign out everywhere.';
        error.hidden = false;
        return;
      }
    }
    $('account-dialog').close();
    signedOut();
  });
}
