//! What protects the API from the browser it serves and from slow or greedy clients:
//! the same-origin check of every state change a session cookie authorizes (CSRF),
//! the request timeout, and the cap on each account's open event streams.
//!
//! The cookie is `SameSite=Lax`, which stops most cross-site requests but not
//! top-level navigations, nor a sibling subdomain, nor browsers that ignore it; so a
//! request that changes state with the cookie must also come from a page of this
//! server: its `Origin` (sent by browsers with every non-GET request) or, for a
//! navigation that carries none, its `Sec-Fetch-Site` or `Referer`. Requests with an
//! API key (`Authorization`) carry no ambient authority and are not checked: a
//! cross-site page cannot set that header without a CORS preflight, which this
//! server never grants.

use crate::extract::session_cookie;
use crate::{ApiError, AppState};
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, HOST, ORIGIN, REFERER};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chorus_model::ids::AccountId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Refuses a state-changing request (any method but GET, HEAD and OPTIONS) that
/// carries a session cookie and does not come from this server's own pages. A
/// request that brings an `Origin` must match it even without a cookie (a login from
/// another site's form is refused too).
pub async fn same_origin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe
        && !req.headers().contains_key(AUTHORIZATION)
        && let Err(e) = check(req.headers(), &state, has_session(req.headers()))
    {
        return e.into_response();
    }
    next.run(req).await
}

fn has_session(headers: &HeaderMap) -> bool {
    session_cookie(headers).is_some()
}

/// Whether a request comes from this server's own pages. With `cookie` (the request
/// would act with the session), one of `Origin`, `Sec-Fetch-Site` or `Referer` must
/// say so; without it, only a present `Origin` is checked.
pub fn check(headers: &HeaderMap, state: &AppState, cookie: bool) -> Result<(), ApiError> {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &axum::http::HeaderValue| v.to_str().ok())
    };
    let ours = |url: &str| is_own_origin(url, header(HOST.as_str()), state);
    let verdict = if let Some(origin) = header(ORIGIN.as_str()) {
        ours(origin)
    } else if !cookie {
        true
    } else if let Some(site) = header("sec-fetch-site") {
        // `none`: the user opened the URL themselves (typed, bookmarked).
        site == "same-origin" || site == "none"
    } else if let Some(referer) = header(REFERER.as_str()) {
        ours(referer)
    } else {
        false
    };
    if verdict {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "this request did not come from this server's own pages (Origin, Sec-Fetch-Site \
             or Referer); a script should authenticate with an API key instead of a cookie",
        ))
    }
}

/// Whether `url` (an origin or a full URL) is this server: `auth.public_url`'s
/// origin, or the host the request was addressed to (`Host`, any scheme, since TLS
/// may end at a proxy).
fn is_own_origin(url: &str, host: Option<&str>, state: &AppState) -> bool {
    let Ok(url) = url::Url::parse(url) else {
        return false; // "null" and garbage
    };
    if let Some(public) = &state.core.config().auth.public_url
        && let Ok(public) = url::Url::parse(public)
        && public.origin() == url.origin()
    {
        return true;
    }
    // The Host header read with the origin's scheme, so default ports compare alike.
    let Some(host) = host.and_then(|h| url::Url::parse(&format!("{}://{h}", url.scheme())).ok())
    else {
        return false;
    };
    host.host_str().is_some()
        && host.host_str() == url.host_str()
        && host.port_or_known_default() == url.port_or_known_default()
}

/// Ends a request whose handler has not answered within `server.request_timeout_secs`
/// with 503 `timeout`. It bounds the work before the response starts: an event
/// stream's body, which is meant to last, is not cut.
pub async fn timeout(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limit = Duration::from_secs(state.core.config().server.request_timeout_secs);
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the server did not answer within {} seconds; try again",
                limit.as_secs()
            ),
        )
        .into_response(),
    }
}

/// The event streams each account has open on this instance.
#[derive(Clone, Default)]
pub struct StreamSlots {
    open: Arc<Mutex<HashMap<AccountId, usize>>>,
}

/// One open stream of an account; dropping it (the stream ends or the client goes)
/// frees the slot.
pub struct StreamSlot {
    slots: StreamSlots,
    account: AccountId,
    /// Counts the stream in `chorus_sse_readers{surface="web"}` while it is open.
    _reader: chorus_core::telemetry::StreamReaderGuard,
}

impl StreamSlots {
    /// Takes a slot for `account`, or refuses with 429 `too_many_streams` when it
    /// already has `max` open.
    pub fn take(&self, account: &AccountId, max: usize) -> Result<StreamSlot, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(account.clone()).or_insert(0);
        if *n >= max {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_streams",
                format!(
                    "this account already has {max} event streams open; close one (another tab) and try again"
                ),
            ));
        }
        *n += 1;
        Ok(StreamSlot {
            slots: self.clone(),
            account: account.clone(),
            _reader: chorus_core::telemetry::StreamReaderGuard::open("web"),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.account) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.account);
            }
        }
    }
}
