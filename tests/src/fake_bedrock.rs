//! A fake AWS Bedrock runtime on `127.0.0.1:0`.
//!
//! It answers `POST /model/{modelId}/converse-stream` (the model id percent-encoded)
//! with real `application/vnd.amazon.eventstream` binary frames, encoded by
//! `aws-smithy-eventstream` from the readable JSON fixtures of `tests/fixtures/bedrock/`
//! (each frame sent in two halves, so the client must reassemble them), and records
//! every request.
//!
//! Like AWS, it verifies the SigV4 signature of each request: it parses the
//! `Authorization` header (`AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/bedrock/aws4_request,
//! SignedHeaders=..., Signature=...`), recomputes it with `aws-sigv4` from its own copy
//! of the credentials over the method, path, signed headers and body, and refuses a
//! mismatch with HTTP 403, `x-amzn-ErrorType: InvalidSignatureException` and AWS's
//! JSON message (an unknown access key id gets `UnrecognizedClientException`).
//!
//! What it does is chosen by a marker in the last user text:
//!
//! | marker            | fixture                                                            |
//! |-------------------|--------------------------------------------------------------------|
//! | (none)            | `reply`: [`NORMAL_CHUNKS`], `end_turn`, [`NORMAL_USAGE`]           |
//! | `[tool-calls]`    | `tool_calls`: text, then two `toolUse` blocks in input fragments   |
//! | `[content-filter]` | `content_filter`: text, then `stopReason: guardrail_intervened`   |
//! | `[throttle]`      | `throttled`: 429 `ThrottlingException` ([`THROTTLE_MESSAGE`]), no wait given |
//! | `[rate-limit-once]` | `rate_limit` (429 with `retry-after: 1`) the first time, then `reply` |
//! | `[stream-error]`, `[midstream-error]` | `midstream_error`: [`MIDSTREAM_CHUNKS`], then a `modelStreamErrorException` frame |
//! | `[unauthorized]`  | `unauthorized`: 403 `UnrecognizedClientException`                  |
//! | `[unavailable]`   | `service_unavailable`: 503 `ServiceUnavailableException`            |
//!
//! A request whose history ends with the partial [`MIDSTREAM_CHUNKS`] as an assistant
//! turn followed by a user turn (Chorus's explicit continuation) gets `continuation`
//! ([`CONTINUATION_CHUNKS`], [`CONTINUATION_USAGE`]); one whose last turn carries
//! `toolResult` blocks gets `reply`.

use crate::fake_server::{FakeProvider, FakeServer, FirstTime, Recorder};
use crate::fixture::replay;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use std::time::{Duration, SystemTime};

pub const NORMAL_CHUNKS: &[&str] = &["Hello", " from", " fake", " Bedrock", "."];
/// (inputTokens, outputTokens, cacheReadInputTokens): prompt tokens are the first plus the third.
pub const NORMAL_USAGE: (u64, u64, u64) = (21, 5, 3);
pub const MIDSTREAM_CHUNKS: &[&str] = &["The answer", " is", ":"];
pub const MIDSTREAM_ERROR_TYPE: &str = "modelStreamErrorException";
pub const MIDSTREAM_ERROR_MESSAGE: &str = "The model stream was interrupted.";
pub const CONTINUATION_CHUNKS: &[&str] = &[" forty", "-two."];
pub const CONTINUATION_USAGE: (u64, u64) = (44, 2);
pub const THROTTLE_MESSAGE: &str = "Too many requests, please wait before trying again.";
pub const SIGNATURE_MESSAGE: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

/// What the fake did with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    Normal,
    Throttled,
    /// `[rate-limit-once]` the first time: 429 with `retry-after: 1`.
    RateLimitedOnce,
    MidstreamError,
    Continuation,
    ToolCalls,
    ContentFilter,
    Unauthorized,
    Unavailable,
    /// Refused: bad or missing signature, unknown key, bad path.
    Rejected,
}

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// The model id, percent-decoded from the path.
    pub model: String,
    /// The raw (encoded) path.
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
    pub behaviour: Behaviour,
    /// Why the request was rejected, if it was.
    pub rejection: Option<String>,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `(role, all text blocks joined)` of every message.
    pub fn messages(&self) -> Vec<(String, String)> {
        self.body["messages"]
            .as_array()
            .map(|ms| {
                ms.iter()
                    .map(|m| (s(&m["role"]), message_text(m)))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn message_text(m: &Value) -> String {
    m["content"]
        .as_array()
        .map(|blocks| blocks.iter().filter_map(|b| b["text"].as_str()).collect())
        .unwrap_or_default()
}

#[derive(Clone)]
struct FakeState {
    access_key_id: String,
    secret_access_key: String,
    region: String,
    requests: Recorder<RecordedRequest>,
    rate_limited: FirstTime,
}

/// The running fake. Stops when dropped.
pub struct FakeBedrock {
    server: FakeServer,
    state: FakeState,
}

impl FakeBedrock {
    /// A fake that accepts requests signed with these credentials for `region`.
    pub async fn start(
        access_key_id: &str,
        secret_access_key: &str,
        region: &str,
    ) -> anyhow::Result<Self> {
        let state = FakeState {
            access_key_id: access_key_id.to_string(),
            secret_access_key: secret_access_key.to_string(),
            region: region.to_string(),
            requests: Recorder::default(),
            rate_limited: FirstTime::default(),
        };
        let app = Router::new().fallback(handle).with_state(state.clone());
        let server = FakeServer::spawn(app).await?;
        Ok(Self { server, state })
    }

    /// The `base_url` to configure.
    pub fn base_url(&self) -> String {
        self.server.url("")
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests.all()
    }
}

impl FakeProvider for FakeBedrock {
    fn request_times(&self) -> Vec<std::time::Instant> {
        self.state.requests.times()
    }
}

fn aws_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    let mut response = (status, axum::Json(json!({"message": message}))).into_response();
    if let Ok(v) = header::HeaderValue::from_str(error_type) {
        response.headers_mut().insert("x-amzn-errortype", v);
    }
    response
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `YYYYMMDDTHHMMSSZ` as a time.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    if s.len() != 16 || &s[8..9] != "T" || !s.ends_with('Z') {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (hh, mm, ss) = (n(9..11)?, n(11..13)?, n(13..15)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// Why AWS would refuse the request's signature, if it would.
fn check_signature(
    state: &FakeState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), (StatusCode, &'static str, String)> {
    let missing = |what: &str| {
        Err((
            StatusCode::FORBIDDEN,
            "MissingAuthenticationTokenException",
            format!("Missing Authentication Token ({what})"),
        ))
    };
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(auth) = get("authorization") else {
        return missing("no authorization header");
    };
    let Some(rest) = auth.strip_prefix("AWS4-HMAC-SHA256 ") else {
        return missing("not AWS4-HMAC-SHA256");
    };
    let mut credential = None;
    let mut signed_headers = None;
    for part in rest.split(", ") {
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed_headers = Some(v);
        }
    }
    let (Some(credential), Some(signed_headers)) = (credential, signed_headers) else {
        return missing("malformed authorization header");
    };
    let scope: Vec<&str> = credential.split('/').collect();
    if scope.len() != 5 || scope[0] != state.access_key_id {
        return Err((
            StatusCode::FORBIDDEN,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.".into(),
        ));
    }
    if scope[2] != state.region || scope[3] != "bedrock" || scope[4] != "aws4_request" {
        return Err((
            StatusCode::FORBIDDEN,
            "InvalidSignatureException",
            format!("Credential should be scoped to a valid region and service: {credential}"),
        ));
    }
    let signed: Vec<&str> = signed_headers.split(';').collect();
    if !signed.contains(&"host") || !signed.contains(&"x-amz-date") {
        return missing("host and x-amz-date must be signed");
    }
    let Some(time) = get("x-amz-date").and_then(parse_amz_date) else {
        return missing("no valid x-amz-date");
    };
    if !scope[1].is_empty() && get("x-amz-date").is_some_and(|d| !d.starts_with(scope[1])) {
        return Err((
            StatusCode::FORBIDDEN,
            "InvalidSignatureException",
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP".into(),
        ));
    }
    let host = get("host").unwrap_or_default();
    let url = format!(
        "http://{host}{}",
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let mut header_values = Vec::new();
    for name in &signed {
        // The signer derives `host` from the URL and adds `x-amz-date` and the token.
        if matches!(*name, "host" | "x-amz-date" | "x-amz-security-token") {
            continue;
        }
        let Some(value) = get(name) else {
            return missing("a signed header is absent");
        };
        header_values.push((*name, value));
    }
    let token = get("x-amz-security-token").map(str::to_string);
    let identity = Credentials::new(
        state.access_key_id.clone(),
        state.secret_access_key.clone(),
        token,
        None,
        "fake-bedrock",
    )
    .into();
    let internal = |e: String| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerException",
            e,
        )
    };
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&state.region)
        .name("bedrock")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| internal(e.to_string()))?
        .into();
    let signable = SignableRequest::new(
        method.as_str(),
        url,
        header_values.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| internal(e.to_string()))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| internal(e.to_string()))?
        .into_parts();
    let expected = instructions
        .headers()
        .find(|(n, _)| *n == "authorization")
        .map(|(_, v)| v.to_string())
        .unwrap_or_default();
    if expected != auth {
        return Err((
            StatusCode::FORBIDDEN,
            "InvalidSignatureException",
            SIGNATURE_MESSAGE.into(),
        ));
    }
    Ok(())
}

fn choose(body: &Value, rate_limited: &FirstTime) -> Behaviour {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let n = messages.len();
    let answers_calls = messages
        .last()
        .and_then(|m| m["content"].as_array())
        .is_some_and(|blocks| blocks.iter().any(|b| b.get("toolResult").is_some()));
    if answers_calls {
        return Behaviour::Normal;
    }
    if n >= 2
        && messages[n - 1]["role"] == "user"
        && messages[n - 2]["role"] == "assistant"
        && message_text(&messages[n - 2]) == MIDSTREAM_CHUNKS.concat()
    {
        return Behaviour::Continuation;
    }
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(message_text)
        .unwrap_or_default();
    let markers = [
        ("[throttle]", Behaviour::Throttled),
        ("[stream-error]", Behaviour::MidstreamError),
        ("[midstream-error]", Behaviour::MidstreamError),
        ("[tool-calls]", Behaviour::ToolCalls),
        ("[content-filter]", Behaviour::ContentFilter),
        ("[unauthorized]", Behaviour::Unauthorized),
        ("[unavailable]", Behaviour::Unavailable),
    ];
    if let Some((_, b)) = markers.iter().find(|(m, _)| last_user.contains(m)) {
        *b
    } else if last_user.contains("[rate-limit-once]") && rate_limited.first() {
        Behaviour::RateLimitedOnce
    } else {
        Behaviour::Normal
    }
}

async fn handle(
    State(state): State<FakeState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let model = path
        .strip_prefix("/model/")
        .and_then(|p| p.strip_suffix("/converse-stream"))
        .filter(|m| !m.contains('/'))
        .map(percent_decode);
    let json_body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut rejection = None;
    let mut refusal = None;
    if method != Method::POST || model.is_none() {
        rejection = Some(format!("unknown operation {method} {path}"));
        refusal = Some(aws_error(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            "Unknown operation",
        ));
    } else if let Err((status, kind, message)) =
        check_signature(&state, &method, &uri, &headers, &body)
    {
        rejection = Some(format!("{kind}: {message}"));
        refusal = Some(aws_error(status, kind, &message));
    }
    let behaviour = if refusal.is_some() {
        Behaviour::Rejected
    } else {
        choose(&json_body, &state.rate_limited)
    };
    state.requests.push(RecordedRequest {
        model: model.unwrap_or_default(),
        path,
        headers,
        body: json_body,
        behaviour,
        rejection,
    });
    if let Some(response) = refusal {
        return response;
    }
    let fixture = match behaviour {
        Behaviour::Rejected => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Behaviour::Normal => "reply",
        Behaviour::Throttled => "throttled",
        Behaviour::RateLimitedOnce => "rate_limit",
        Behaviour::MidstreamError => "midstream_error",
        Behaviour::Continuation => "continuation",
        Behaviour::ToolCalls => "tool_calls",
        Behaviour::ContentFilter => "content_filter",
        Behaviour::Unauthorized => "unauthorized",
        Behaviour::Unavailable => "service_unavailable",
    };
    replay("bedrock", fixture, None)
}
