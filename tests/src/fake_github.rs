//! A local GitHub for OAuth app logins, speaking the documented wire format
//! (docs.github.com, "Authorizing OAuth apps"): `GET /login/oauth/authorize` (the
//! user consents at once; PKCE `code_challenge` S256 is recorded),
//! `POST /login/oauth/access_token` (client id and secret in the form, JSON with
//! `Accept: application/json`, errors as 200 with an `error` field, as GitHub does),
//! and the REST API's `GET /user` and `GET /user/emails`.

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
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A user and their email addresses (`GET /user`, `GET /user/emails`).
#[derive(Clone, Default)]
struct Account {
    user: Value,
    emails: Value,
}

struct PendingCode {
    redirect_uri: String,
    code_challenge: Option<String>,
    account: Account,
}

#[derive(Default)]
struct Inner {
    next: Account,
    codes: HashMap<String, PendingCode>,
    tokens: HashMap<String, Account>,
    /// Whether the last token request carried a PKCE verifier that matched.
    pkce_verified: bool,
}

#[derive(Clone)]
struct Fake {
    client_id: String,
    client_secret: String,
    inner: Arc<Mutex<Inner>>,
}

pub struct FakeGithub {
    server: FakeServer,
    fake: Fake,
}

impl FakeGithub {
    pub async fn start(client_id: &str, client_secret: &str) -> anyhow::Result<Self> {
        let fake = Fake {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            inner: Arc::default(),
        };
        let app = Router::new()
            .route("/login/oauth/authorize", get(authorize))
            .route("/login/oauth/access_token", post(token))
            .route("/api/user", get(user))
            .route("/api/user/emails", get(emails))
            .with_state(fake.clone());
        Ok(Self {
            server: FakeServer::spawn(app).await?,
            fake,
        })
    }

    /// Who logs in next: a GitHub user object and its `/user/emails` list.
    pub fn set_user(&self, user: Value, emails: Value) {
        self.fake.inner.lock().unwrap().next = Account { user, emails };
    }

    /// Whether the last code exchange proved PKCE (its verifier hashed to the challenge).
    pub fn pkce_verified(&self) -> bool {
        self.fake.inner.lock().unwrap().pkce_verified
    }

    /// An `[[auth.oauth2]]` table pointing Chorus at this fake; `extra` lines are added.
    pub fn config_toml(&self, id: &str, extra: &str) -> String {
        format!(
            "[[auth.oauth2]]\nid = \"{id}\"\nname = \"GitHub\"\nkind = \"github\"\n\
             client_id = \"{}\"\nclient_secret = \"{}\"\nauthorize_url = \"{}\"\n\
             token_url = \"{}\"\napi_url = \"{}\"\n{extra}\n",
            self.fake.client_id,
            self.fake.client_secret,
            self.server.url("/login/oauth/authorize"),
            self.server.url("/login/oauth/access_token"),
            self.server.url("/api"),
        )
    }
}

async fn authorize(State(f): State<Fake>, Query(q): Query<HashMap<String, String>>) -> Response {
    let param = |k: &str| q.get(k).cloned();
    if param("client_id").as_deref() != Some(f.client_id.as_str()) {
        return (StatusCode::NOT_FOUND, "unknown client_id").into_response();
    }
    if param("code_challenge").is_some()
        && param("code_challenge_method").as_deref() != Some("S256")
    {
        return (StatusCode::BAD_REQUEST, "unsupported code_challenge_method").into_response();
    }
    let redirect_uri = param("redirect_uri").unwrap_or_default();
    let code = uuid::Uuid::new_v4().simple().to_string();
    let mut inner = f.inner.lock().unwrap();
    let account = inner.next.clone();
    inner.codes.insert(
        code.clone(),
        PendingCode {
            redirect_uri: redirect_uri.clone(),
            code_challenge: param("code_challenge"),
            account,
        },
    );
    let mut target = url::Url::parse(&redirect_uri).expect("redirect_uri");
    target
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &param("state").unwrap_or_default());
    Redirect::to(target.as_str()).into_response()
}

fn token_error(error: &str) -> Response {
    // GitHub answers token errors with 200 and an `error` field.
    Json(json!({"error": error, "error_description": error})).into_response()
}

async fn token(State(f): State<Fake>, Form(form): Form<HashMap<String, String>>) -> Response {
    let param = |k: &str| form.get(k).cloned().unwrap_or_default();
    if param("client_id") != f.client_id || param("client_secret") != f.client_secret {
        return token_error("incorrect_client_credentials");
    }
    let mut inner = f.inner.lock().unwrap();
    let Some(pending) = inner.codes.remove(&param("code")) else {
        return token_error("bad_verification_code");
    };
    if pending.redirect_uri != param("redirect_uri") {
        return token_error("redirect_uri_mismatch");
    }
    inner.pkce_verified = false;
    if let Some(challenge) = &pending.code_challenge {
        let verifier = param("code_verifier");
        let hashed = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(verifier.as_bytes()));
        if &hashed != challenge {
            return token_error("bad_verification_code");
        }
        inner.pkce_verified = true;
    }
    let access = format!("gho_{}", uuid::Uuid::new_v4().simple());
    inner.tokens.insert(access.clone(), pending.account);
    Json(json!({"access_token": access, "scope": "read:user,user:email", "token_type": "bearer"}))
        .into_response()
}

fn account(f: &Fake, headers: &HeaderMap) -> Result<Account, Box<Response>> {
    if headers.get("user-agent").is_none() {
        // GitHub rejects API requests without a User-Agent.
        return Err(Box::new(
            (StatusCode::FORBIDDEN, "User-Agent required").into_response(),
        ));
    }
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("token "))
        })
        .unwrap_or_default();
    f.inner
        .lock()
        .unwrap()
        .tokens
        .get(token)
        .cloned()
        .ok_or_else(|| {
            Box::new(
                (
                    StatusCode::UNAUTHORIZED,
                    Json(json!({"message": "Bad credentials", "status": "401"})),
                )
                    .into_response(),
            )
        })
}

async fn user(State(f): State<Fake>, headers: HeaderMap) -> Response {
    match account(&f, &headers) {
        Ok(a) => Json(a.user).into_response(),
        Err(r) => *r,
    }
}

async fn emails(State(f): State<Fake>, headers: HeaderMap) -> Response {
    match account(&f, &headers) {
        Ok(a) => Json(a.emails).into_response(),
        Err(r) => *r,
    }
}
