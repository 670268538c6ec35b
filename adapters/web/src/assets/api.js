// The chat client's one way to the JSON API: a fetch wrapper that sends and reads
// JSON with the session cookie, and turns every failure into an ApiError with the
// server's error code and message. A 401 (other than a wrong password) is handed to
// the handler the app sets, which shows the login form.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
    this.handled = false; // true when the app already reacted (a 401 showed the login form)
  }
}

let unauthorized = () => {};

/** Sets what a 401 does; `handler` gets the ApiError (its code says why). */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

/** Calls the API; resolves with the JSON body (null when there is none). */
export async function api(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'network', 'Cannot reach the server. Check your connection and try again.');
  }
  if (!res.ok) {
    let code = 'http_' + res.status;
    let message = `${res.status} ${res.statusText || 'error'}`;
    try {
      const j = await res.json();
      if (j && j.error) {
        code = j.error.code || code;
        message = j.error.message || message;
      }
    } catch {
      /* not JSON */
    }
    const err = new ApiError(res.status, code, message);
    // A wrong password (a login, a password change) is not a lost session.
    if (res.status === 401 && code !== 'invalid_credentials') {
      err.handled = true;
      unauthorized(err);
    }
    throw err;
  }
  if (res.status === 204) return null;
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

export const runPath = (id) => `/api/runs/${encodeURIComponent(id)}`;
export const convPath = (id) => `/api/conversations/${encodeURIComponent(id)}`;
