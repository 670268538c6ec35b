//! A fake AWS Bedrock runtime on `127.0.0.1:0`.
//!
//! It answers `POST /model/{modelId}/converse-stream` (the model id percent-encoded)
//! with real `application/vnd.amazon.eventstream` binary frames, encoded by
//! `aws-smithy-eventstream` from the readable JSON fixtures of `tests/fixtures/bedrock/`
//! (each frame sent in two halves, so the client must reassemble them). Routing,
//! recording and replay are [`Fake`]'s; this module holds the wire format.
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
//! | `[midstream-error]` | `midstream_error`: [`MIDSTREAM_CHUNKS`], then a `modelStreamErrorException` frame |
//! | `[unauthorized]`  | `unauthorized`: 403 `UnrecognizedClientException`                  |
//! | `[unavailable]`   | `service_unavailable`: 503 `ServiceUnavailableException`            |
//!
//! A request whose history ends with the partial [`MIDSTREAM_CHUNKS`] as an assistant
//! turn followed by a user turn (Chorus's explicit continuation) gets `continuation`
//! ([`CONTINUATION_CHUNKS`], [`CONTINUATION_USAGE`]); one whose last turn carries
//! `toolResult` blocks gets `reply`.

use crate::fake_server::{Fake, Incoming, Wire};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime};

pub use crate::fake_server::{Behaviour, RecordedRequest};

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

/// Bedrock's ConverseStream wire format, accepting requests signed with one set of
/// credentials for one region.
#[derive(Clone, Debug)]
pub struct BedrockWire {
    access_key_id: String,
    secret_access_key: String,
    region: String,
}

/// The running fake. Stops when dropped.
pub type FakeBedrock = Fake<BedrockWire>;

impl Fake<BedrockWire> {
    /// A fake that accepts requests signed with these credentials for `region`.
    pub async fn start(
        access_key_id: &str,
        secret_access_key: &str,
        region: &str,
    ) -> anyhow::Result<Self> {
        Self::serve(BedrockWire {
            access_key_id: access_key_id.to_string(),
            secret_access_key: secret_access_key.to_string(),
            region: region.to_string(),
        })
        .await
    }
}

/// The model id of a `/model/{modelId}/converse-stream` path, percent-decoded.
pub fn model_of(path: &str) -> Option<String> {
    path.strip_prefix("/model/")
        .and_then(|p| p.strip_suffix("/converse-stream"))
        .filter(|m| !m.contains('/'))
        .map(percent_decode)
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
    state: &BedrockWire,
    request: &Incoming<'_>,
) -> Result<(), (StatusCode, &'static str, String)> {
    let (method, uri, body) = (request.method, request.uri, request.bytes);
    let missing = |what: &str| {
        Err((
            StatusCode::FORBIDDEN,
            "MissingAuthenticationTokenException",
            format!("Missing Authentication Token ({what})"),
        ))
    };
    let get = |name: &str| request.header(name);
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

impl Wire for BedrockWire {
    const FIXTURES: &'static str = "bedrock";

    /// Every request: a wrong path or method is refused with AWS's answer.
    fn is_call(&self, _method: &Method, _path: &str) -> bool {
        true
    }

    fn bad_json(&self, error: &serde_json::Error) -> Response {
        aws_error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            &format!("invalid JSON: {error}"),
        )
    }

    fn refuse(&self, request: &Incoming<'_>) -> Option<(String, Response)> {
        let path = request.uri.path();
        if request.method != Method::POST || model_of(path).is_none() {
            let why = format!("unknown operation {} {path}", request.method);
            let response = aws_error(
                StatusCode::NOT_FOUND,
                "UnknownOperationException",
                "Unknown operation",
            );
            return Some((why, response));
        }
        let (status, kind, message) = check_signature(self, request).err()?;
        Some((
            format!("{kind}: {message}"),
            aws_error(status, kind, &message),
        ))
    }

    /// `(role, all text blocks joined)` of every message.
    fn turns(&self, body: &Value) -> Vec<(String, String)> {
        let messages = body["messages"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        messages
            .iter()
            .map(|m| (s(&m["role"]), message_text(m)))
            .collect()
    }

    fn by_history(&self, body: &Value) -> Option<Behaviour> {
        let messages = body["messages"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        match messages {
            [.., last]
                if last["content"]
                    .as_array()
                    .is_some_and(|blocks| blocks.iter().any(|b| b.get("toolResult").is_some())) =>
            {
                Some(Behaviour::Normal)
            }
            [.., partial, next]
                if next["role"] == "user"
                    && partial["role"] == "assistant"
                    && message_text(partial) == MIDSTREAM_CHUNKS.concat() =>
            {
                Some(Behaviour::Continuation)
            }
            _ => None,
        }
    }

    fn markers(&self) -> &'static [(&'static str, Behaviour)] {
        &[
            ("[throttle]", Behaviour::Throttled),
            ("[unavailable]", Behaviour::Unavailable),
        ]
    }
}
