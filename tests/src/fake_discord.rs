//! A local Discord for OAuth2 logins, speaking the documented wire format
//! (discord.com/developers/docs/topics/oauth2): `GET /oauth2/authorize` (the user
//! consents at once and is redirected back with `code` and `state`),
//! `POST /api/oauth2/token` (form body, client credentials by HTTP Basic or in the
//! form; PKCE's `code_verifier` checked against the authorization's S256
//! `code_challenge`) and `GET /api/users/@me` (the user object).

use crate::fake_server::FakeServer;
use axum::Form;
use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Inner {
    /// The Discord user who consents at the next authorization.
    user: Value,
    /// code → (redirect_uri, PKCE code_challenge, user)
    codes: HashMap<String, (String, Option<String>, Value)>,
    /// Whether the last code exchange proved PKCE.
    pkce_verified: bool,
    /// access token → user
    tokens: HashMap<String, Value>,
}

#[derive(Clone)]
struct Fake {
    client_id: String,
    client_secret: String,
    inner: Arc<Mutex<Inner>>,
}

/// The fake; settings for Chorus come from [`FakeDiscord::config_toml`].
pub struct FakeDiscord {
    server: FakeServer,
    fake: Fake,
}

impl FakeDiscord {
    pub async fn start(client_id: &str, client_secret: &str) -> anyhow::Result<Self> {
        let fake = Fake {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            inner: Arc::default(),
        };
        let app = Router::new()
            .route("/oauth2/authorize", get(authorize))
            .route("/api/oauth2/token", post(token))
            .route("/api/users/@me", get(me))
            .with_state(fake.clone());
        Ok(Self {
            server: FakeServer::spawn(app).await?,
            fake,
        })
    }

    /// Who logs in next: a Discord user object (`id`, `username`, `email`, `verified`...).
    pub fn set_user(&self, user: Value) {
        self.fake.inner.lock().unwrap().user = user;
    }

    /// Whether the last code exchange carried a `code_verifier` matching its
    /// authorization's S256 `code_challenge`.
    pub fn pkce_verified(&self) -> bool {
        self.fake.inner.lock().unwrap().pkce_verified
    }

    /// An `[[auth.oauth2]]` table pointing Chorus at this fake.
    pub fn config_toml(&self, id: &str) -> String {
        format!(
            "[[auth.oauth2]]\nid = \"{id}\"\nname = \"Discord\"\nkind = \"discord\"\n\
             client_id = \"{}\"\nclient_secret = \"{}\"\nauthorize_url = \"{}\"\n\
             token_url = \"{}\"\napi_url = \"{}\"\n",
            self.fake.client_id,
            self.fake.client_secret,
            self.server.url("/oauth2/authorize"),
            self.server.url("/api/oauth2/token"),
            self.server.url("/api"),
        )
    }
}

fn error(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({"error": error}))).into_response()
}

async fn authorize(State(f): State<Fake>, Query(q): Query<HashMap<String, String>>) -> Response {
    let param = |k: &str| q.get(k).cloned().unwrap_or_default();
    if param("client_id") != f.client_id || param("response_type") != "code" {
        return error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    if !param("scope").split(' ').any(|s| s == "identify") {
        return error(StatusCode::BAD_REQUEST, "invalid_scope");
    }
    let challenge = q.get("code_challenge").cloned();
    if challenge.is_some() && param("code_challenge_method") != "S256" {
        return error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    let redirect_uri = param("redirect_uri");
    let code = uuid::Uuid::new_v4().simple().to_string();
    let user = f.inner.lock().unwrap().user.clone();
    f.inner
        .lock()
        .unwrap()
        .codes
        .insert(code.clone(), (redirect_uri.clone(), challenge, user));
    let mut target = url::Url::parse(&redirect_uri).expect("redirect_uri");
    target
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &param("state"));
    Redirect::to(target.as_str()).into_response()
}

async fn token(
    State(f): State<Fake>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let param = |k: &str| form.get(k).cloned().unwrap_or_default();
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let credentials =
        basic.unwrap_or_else(|| format!("{}:{}", param("client_id"), param("client_secret")));
    if credentials != format!("{}:{}", f.client_id, f.client_secret) {
        return error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    if param("grant_type") != "authorization_code" {
        return error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    let Some((redirect_uri, challenge, user)) =
        f.inner.lock().unwrap().codes.remove(&param("code"))
    else {
        return error(StatusCode::BAD_REQUEST, "invalid_grant");
    };
    if redirect_uri != param("redirect_uri") {
        return error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    let mut pkce_verified = false;
    if let Some(challenge) = challenge {
        use sha2::Digest as _;
        let hashed = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(param("code_verifier").as_bytes()));
        if hashed != challenge {
            return error(StatusCode::BAD_REQUEST, "invalid_grant");
        }
        pkce_verified = true;
    }
    f.inner.lock().unwrap().pkce_verified = pkce_verified;
    let access = uuid::Uuid::new_v4().simple().to_string();
    f.inner.lock().unwrap().tokens.insert(access.clone(), user);
    Json(json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": 604800,
        "refresh_token": uuid::Uuid::new_v4().simple().to_string(),
        "scope": "identify email"
    }))
    .into_response()
}

async fn me(State(f): State<Fake>, headers: HeaderMap) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    match f.inner.lock().unwrap().tokens.get(token) {
        Some(user) => Json(user.clone()).into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "401: Unauthorized", "code": 0})),
        )
            .into_response(),
    }
}
