//! AWS Bedrock Converse API, streamed (`ConverseStream`).
//!
//! Request: `POST {base_url}/model/{modelId}/converse-stream`, where `base_url`
//! defaults to `https://bedrock-runtime.{region}.amazonaws.com` and the model id (a
//! Bedrock model id or inference profile id such as
//! `anthropic.claude-3-5-sonnet-20240620-v1:0`) is percent-encoded as one path
//! segment. The JSON body has `messages` (`user`/`assistant` turns of content blocks:
//! `text`, `toolUse`, `toolResult`; consecutive turns of one role merged, tool results
//! in user turns), `system: [{text}]`, `inferenceConfig` and `toolConfig`; the
//! provider's configured `params` go into `additionalModelRequestFields` (the
//! model-specific fields, e.g. `{ top_k = 40 }` or Claude's `thinking`).
//!
//! Authentication is AWS Signature Version 4 (service `bedrock`, the configured
//! region), computed by the `aws-sigv4` crate over the method, the encoded path, the
//! `host` and `content-type` headers and the body. Credentials: `api_key` (access key
//! id) with `secret_key` and optional `session_token` from config, else the standard
//! `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN` environment
//! variables read when the provider is built.
//!
//! Response: `application/vnd.amazon.eventstream` binary frames (decoded with
//! `aws-smithy-eventstream`, see [`events`]).
//!
//! Continuation is explicit (the partial reply as an assistant turn, then a user
//! instruction not to repeat it), as for OpenAI: Converse accepts a final assistant
//! turn as a prefill only for some model families (Anthropic's), and others refuse or
//! ignore it, so one portable form is used for every model id.

mod events;

use super::wire::{self, merge_json, truncate};
use super::{
    ChatMessage, ChatRequest, ChatRole, Provider, ProviderError, ProviderErrorKind, ProviderStream,
    ToolChoice,
};
use crate::config::ProviderConfig;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use chorus_model::secret::Secret;
use futures::StreamExt;
use serde_json::{Value, json};
use std::time::{Duration, SystemTime};

/// The signing name of the Bedrock runtime.
const SIGNING_SERVICE: &str = "bedrock";

/// The instruction that turns a partial assistant reply into a continuation.
const CONTINUE_INSTRUCTION: &str = "Your previous reply was cut off. Continue it exactly where it stopped, \
starting with the next character. Do not repeat any of it and do not comment on the interruption.";

/// AWS credentials for signing.
#[derive(Clone)]
struct AwsKeys {
    access_key_id: String,
    secret_access_key: Secret,
    session_token: Option<Secret>,
}

pub struct BedrockProvider {
    client: reqwest::Client,
    base_url: String,
    region: String,
    keys: Option<AwsKeys>,
    headers: Vec<(String, Secret)>,
    params: serde_json::Map<String, Value>,
    idle_timeout: Duration,
}

impl BedrockProvider {
    /// A provider from config; credentials missing there are read from the process
    /// environment now.
    pub fn new(cfg: &ProviderConfig) -> Self {
        Self::with_env(cfg, |name| std::env::var(name).ok())
    }

    fn with_env(cfg: &ProviderConfig, env: impl Fn(&str) -> Option<String>) -> Self {
        let region = cfg
            .region
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .unwrap_or("us-east-1")
            .to_string();
        let default_url = format!("https://bedrock-runtime.{region}.amazonaws.com");
        Self {
            client: wire::client(cfg.connect_timeout_secs),
            base_url: wire::base_url(cfg.base_url.as_deref(), &default_url),
            keys: resolve_keys(cfg, env),
            region,
            headers: cfg
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            params: cfg.params.clone(),
            idle_timeout: Duration::from_secs(cfg.idle_timeout_secs),
        }
    }

    /// `{base_url}/model/{modelId}/converse-stream`, the model id percent-encoded.
    fn url(&self, model: &str) -> String {
        format!(
            "{}/model/{}/converse-stream",
            self.base_url,
            encode_path_segment(model)
        )
    }

    fn body(&self, request: &ChatRequest) -> Value {
        build_body(request, &self.params)
    }

    /// The headers SigV4 adds for this request (`authorization`, `x-amz-date`, and
    /// `x-amz-security-token` with temporary credentials).
    fn signature_headers(
        &self,
        url: &str,
        body: &[u8],
        time: SystemTime,
    ) -> Result<Vec<(String, String)>, ProviderError> {
        let keys = self.keys.as_ref().ok_or_else(|| {
            ProviderError::new(
                ProviderErrorKind::Auth,
                "no AWS credentials: set the provider's api_key (access key id) and secret_key, \
                 or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment",
            )
        })?;
        sign_request(keys, &self.region, url, body, time)
    }
}

/// Config keys when both are set, else the standard environment variables.
fn resolve_keys(cfg: &ProviderConfig, env: impl Fn(&str) -> Option<String>) -> Option<AwsKeys> {
    let non_empty = |s: Option<String>| s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let id = non_empty(cfg.api_key.as_ref().map(|k| k.expose().to_string()));
    let secret = non_empty(cfg.secret_key.as_ref().map(|k| k.expose().to_string()));
    if let (Some(id), Some(secret)) = (id, secret) {
        return Some(AwsKeys {
            access_key_id: id,
            secret_access_key: Secret::new(secret),
            session_token: non_empty(cfg.session_token.as_ref().map(|t| t.expose().to_string()))
                .map(Secret::new),
        });
    }
    let id = non_empty(env("AWS_ACCESS_KEY_ID"))?;
    let secret = non_empty(env("AWS_SECRET_ACCESS_KEY"))?;
    Some(AwsKeys {
        access_key_id: id,
        secret_access_key: Secret::new(secret),
        session_token: non_empty(env("AWS_SESSION_TOKEN")).map(Secret::new),
    })
}

/// SigV4 of `POST url` with a JSON `body` at `time`: the headers to add.
fn sign_request(
    keys: &AwsKeys,
    region: &str,
    url: &str,
    body: &[u8],
    time: SystemTime,
) -> Result<Vec<(String, String)>, ProviderError> {
    let request = Signable {
        method: "POST",
        url,
        headers: &[("content-type", "application/json")],
        body,
    };
    sigv4_headers(keys, region, SIGNING_SERVICE, &request, time)
}

/// One HTTP request to sign.
struct Signable<'a> {
    method: &'a str,
    url: &'a str,
    /// The headers to sign besides `host` (taken from the URL), `x-amz-date` and
    /// `x-amz-security-token` (added by the signer).
    headers: &'a [(&'a str, &'a str)],
    body: &'a [u8],
}

/// The headers SigV4 (by `aws-sigv4`, default settings: headers signed, body hashed,
/// the session token signed) adds to `request` for `service` in `region` at `time`.
/// Checked against AWS's published test vectors in the tests.
fn sigv4_headers(
    keys: &AwsKeys,
    region: &str,
    service: &str,
    request: &Signable<'_>,
    time: SystemTime,
) -> Result<Vec<(String, String)>, ProviderError> {
    let failed = |e: &dyn std::fmt::Display| {
        ProviderError::new(
            ProviderErrorKind::BadRequest,
            format!("cannot sign the request to {}: {e}", request.url),
        )
    };
    let identity = Credentials::new(
        keys.access_key_id.clone(),
        keys.secret_access_key.expose().to_string(),
        keys.session_token.as_ref().map(|t| t.expose().to_string()),
        None,
        "chorus-config",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| failed(&e))?
        .into();
    let signable = SignableRequest::new(
        request.method,
        request.url,
        request.headers.iter().copied(),
        SignableBody::Bytes(request.body),
    )
    .map_err(|e| failed(&e))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| failed(&e))?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect())
}

/// Percent-encodes everything but RFC 3986 unreserved characters (`:` in model ids
/// becomes `%3A`), as the AWS SDKs encode URI labels.
fn encode_path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One Converse message being built.
struct Turn {
    role: &'static str,
    content: Vec<Value>,
}

/// Adds a content block to the last turn when it has `role`, else starts a turn
/// (Converse wants alternating roles).
fn push_block(turns: &mut Vec<Turn>, role: &'static str, block: Value) {
    match turns.last_mut() {
        Some(last) if last.role == role => last.content.push(block),
        _ => turns.push(Turn {
            role,
            content: vec![block],
        }),
    }
}

/// The ConverseStream request body.
fn build_body(request: &ChatRequest, params: &serde_json::Map<String, Value>) -> Value {
    let has_tool_history = request
        .messages
        .iter()
        .any(|m| m.role == ChatRole::Tool || !m.tool_calls.is_empty());
    // Converse has no `none` choice: no tools are offered then. It refuses toolUse and
    // toolResult blocks without a toolConfig, so a history with tool blocks keeps the
    // tools (with the model's default choice); with no tools at all, that history
    // goes as text.
    let offer_tools = !request.tools.is_empty()
        && (request.tool_choice != Some(ToolChoice::None) || has_tool_history);
    let mut system = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    for m in &request.messages {
        add_message(&mut turns, &mut system, m, offer_tools);
    }
    if let Some(partial) = request.prefill.as_deref().filter(|p| !p.is_empty()) {
        push_block(&mut turns, "assistant", json!({"text": partial}));
        push_block(&mut turns, "user", json!({"text": CONTINUE_INSTRUCTION}));
    }
    let messages: Vec<Value> = turns
        .into_iter()
        .map(|t| json!({"role": t.role, "content": t.content}))
        .collect();
    let mut body = json!({"messages": messages});
    if !system.is_empty() {
        body["system"] = Value::Array(system);
    }
    let mut inference = serde_json::Map::new();
    if let Some(max) = request.max_output_tokens {
        inference.insert("maxTokens".into(), json!(max));
    }
    if let Some(t) = request.temperature {
        inference.insert("temperature".into(), json!(t));
    }
    if let Some(p) = request.top_p {
        inference.insert("topP".into(), json!(p));
    }
    if !request.stop.is_empty() {
        inference.insert("stopSequences".into(), json!(request.stop));
    }
    if !inference.is_empty() {
        body["inferenceConfig"] = Value::Object(inference);
    }
    if offer_tools {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|t| {
                json!({"toolSpec": {
                    "name": t.name,
                    "description": t.description,
                    "inputSchema": {"json": t.parameters},
                }})
            })
            .collect();
        let mut config = json!({"tools": tools});
        match &request.tool_choice {
            Some(ToolChoice::Auto) => config["toolChoice"] = json!({"auto": {}}),
            Some(ToolChoice::Required) => config["toolChoice"] = json!({"any": {}}),
            Some(ToolChoice::Tool(name)) => config["toolChoice"] = json!({"tool": {"name": name}}),
            Some(ToolChoice::None) | None => {}
        }
        body["toolConfig"] = config;
    }
    if !params.is_empty() {
        let mut extra = serde_json::Map::new();
        merge_json(&mut extra, params);
        body["additionalModelRequestFields"] = Value::Object(extra);
    }
    body
}

fn add_message(turns: &mut Vec<Turn>, system: &mut Vec<Value>, m: &ChatMessage, tools: bool) {
    match m.role {
        ChatRole::System => {
            if !m.content.is_empty() {
                system.push(json!({"text": m.content}));
            }
        }
        ChatRole::User => {
            if !m.content.is_empty() {
                push_block(turns, "user", json!({"text": m.content}));
            }
        }
        ChatRole::Assistant => {
            if !m.content.is_empty() {
                push_block(turns, "assistant", json!({"text": m.content}));
            }
            for call in &m.tool_calls {
                let input = if call.arguments.is_object() {
                    call.arguments.clone()
                } else {
                    json!({})
                };
                let block = if tools {
                    json!({"toolUse": {"toolUseId": call.id, "name": call.name, "input": input}})
                } else {
                    json!({"text": format!("[called tool {} with {}]", call.name, input)})
                };
                push_block(turns, "assistant", block);
            }
        }
        ChatRole::Tool => {
            // Bedrock refuses blank text blocks.
            let output = if m.content.is_empty() {
                "(no output)"
            } else {
                m.content.as_str()
            };
            let block = if tools {
                json!({"toolResult": {
                    "toolUseId": m.tool_call_id.as_deref().unwrap_or_default(),
                    "content": [{"text": output}],
                    "status": if m.is_error { "error" } else { "success" },
                }})
            } else {
                let name = m.tool_name.as_deref().unwrap_or("tool");
                json!({"text": format!("[result of {name}]\n{output}")})
            };
            push_block(turns, "user", block);
        }
    }
}

#[async_trait::async_trait]
impl Provider for BedrockProvider {
    async fn stream(&self, request: ChatRequest) -> Result<ProviderStream, ProviderError> {
        let url = self.url(&request.model);
        let body = serde_json::to_vec(&self.body(&request)).map_err(|e| {
            ProviderError::new(ProviderErrorKind::BadRequest, format!("request body: {e}"))
        })?;
        let signature = self.signature_headers(&url, &body, SystemTime::now())?;
        let mut req = self
            .client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        for (name, value) in signature {
            req = req.header(name, value);
        }
        let req = wire::with_headers(req, &self.headers);
        let response = wire::send(req, self.idle_timeout).await?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = wire::retry_after_header(response.headers());
            let error_type = response
                .headers()
                .get("x-amzn-errortype")
                .and_then(|v| v.to_str().ok())
                .map(|v| v.split(':').next().unwrap_or_default().to_string());
            let text = response.text().await.unwrap_or_default();
            let mut err = http_error(status.as_u16(), error_type.as_deref(), &text);
            err.retry_after = retry_after;
            return Err(err);
        }
        Ok(events::stream(
            response.bytes_stream().boxed(),
            self.idle_timeout,
        ))
    }
}

/// The error of a non-2xx answer, with AWS's message from the `{"message": ...}` body
/// and the exception name from `x-amzn-ErrorType`.
fn http_error(status: u16, error_type: Option<&str>, body: &str) -> ProviderError {
    let kind = match status {
        // ModelErrorException: the model failed on this request; another try may pass.
        424 => ProviderErrorKind::Server,
        _ => wire::status_kind(status),
    };
    let parsed = serde_json::from_str::<Value>(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v.get("message").or_else(|| v.get("Message")))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| truncate(body, 300).to_string());
    let name = error_type
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .or_else(|| {
            parsed
                .as_ref()
                .and_then(|v| v.get("__type"))
                .and_then(Value::as_str)
                .map(|t| t.rsplit('#').next().unwrap_or(t).to_string())
        });
    match name {
        Some(name) => ProviderError::new(kind, format!("HTTP {status} {name}: {message}")),
        None => ProviderError::new(kind, format!("HTTP {status}: {message}")),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod sigv4_tests;
