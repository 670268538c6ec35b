//! A fake Azure OpenAI server on `127.0.0.1:0`.
//!
//! It serves Chat Completions per deployment, as Azure does:
//! `POST /openai/deployments/{deployment}/chat/completions?api-version=V`, with the key
//! in an `api-key` header. A request with an unknown deployment, another `api-version`
//! or a wrong key gets Azure's 404 / 400 / 401 error, so a wrong URL or auth scheme
//! fails the test with a message saying which.
//!
//! The stream is the OpenAI chunk format with Azure's additions: a first chunk with
//! empty `choices` and `prompt_filter_results`, and `content_filter_results` on every
//! choice. The replies are the fixtures of `tests/fixtures/azure/`, chosen by a marker
//! in the last user message:
//!
//! | marker                  | fixture                                                    |
//! |-------------------------|------------------------------------------------------------|
//! | (none)                  | `reply`: [`NORMAL_CHUNKS`], `stop`, usage [`NORMAL_USAGE`] |
//! | `[tool-calls]`          | `tool_calls`: two parallel calls                           |
//! | `[blocked-prompt]`      | `blocked_prompt`: 400 `content_filter` ([`PROMPT_FILTER_MESSAGE`]) |
//! | `[content-filter]`      | `content_filter`: [`FILTERED_CHUNKS`], then `finish_reason: content_filter` |
//! | `[midstream-error]`     | `midstream_error`: text, then an `error` event             |
//! | `[rate-limit-once]`     | `rate_limit` (429, `retry-after: 1`) the first time, then `reply` |
//! | `[unauthorized]`        | `unauthorized`: Azure's 401                                |

use crate::fake_openai::chat_history;
use crate::fake_server::{Fake, Incoming, Wire, roles_and_contents};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub use crate::fake_server::{Behaviour, RecordedRequest};

pub const NORMAL_CHUNKS: &[&str] = &["Hello", " from", " Azure", "."];
pub const NORMAL_USAGE: (u64, u64) = (19, 4);
pub const FILTERED_CHUNKS: &[&str] = &["Once upon", " a time"];
pub const FILTERED_USAGE: (u64, u64) = (12, 3);
/// Exactly what Azure says when its filter rejects a prompt.
pub const PROMPT_FILTER_MESSAGE: &str = "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry. To learn more about our content filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766";

/// Azure OpenAI's wire format for one resource: its deployments, `api-version` and key.
#[derive(Clone, Debug)]
pub struct AzureWire {
    deployments: Vec<String>,
    api_version: String,
    api_key: String,
}

/// The running fake. Stops when dropped.
pub type FakeAzure = Fake<AzureWire>;

impl Fake<AzureWire> {
    /// A resource serving `deployments`, accepting only `api_version` and `api_key`.
    pub async fn start(
        deployments: &[&str],
        api_version: &str,
        api_key: &str,
    ) -> anyhow::Result<Self> {
        Self::serve(AzureWire {
            deployments: deployments.iter().map(|d| d.to_string()).collect(),
            api_version: api_version.to_string(),
            api_key: api_key.to_string(),
        })
        .await
    }
}

/// The deployment of a `/openai/deployments/{deployment}/chat/completions` path.
pub fn deployment(path: &str) -> Option<&str> {
    path.strip_prefix("/openai/deployments/")?
        .strip_suffix("/chat/completions")
        .filter(|d| !d.contains('/'))
}

/// The `api-version` of a query.
pub fn api_version(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("api-version="))
}

fn azure_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

impl Wire for AzureWire {
    const FIXTURES: &'static str = "azure";

    fn is_call(&self, method: &Method, path: &str) -> bool {
        method == Method::POST && deployment(path).is_some()
    }

    fn refuse(&self, request: &Incoming<'_>) -> Option<(String, Response)> {
        let deployment = deployment(request.uri.path()).unwrap_or_default();
        let api_version = api_version(request.uri.query());
        if request.header("api-key") != Some(self.api_key.as_str()) {
            Some((
                "wrong api-key".into(),
                azure_error(
                    StatusCode::UNAUTHORIZED,
                    "401",
                    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.",
                ),
            ))
        } else if api_version != Some(self.api_version.as_str()) {
            let message = format!(
                "fake Azure: api-version {api_version:?} where {:?} was expected",
                self.api_version
            );
            Some((
                message.clone(),
                azure_error(StatusCode::NOT_FOUND, "404", &message),
            ))
        } else if !self.deployments.iter().any(|d| d == deployment) {
            let message =
                format!("The API deployment for this resource does not exist: {deployment:?}");
            Some((
                message.clone(),
                azure_error(StatusCode::NOT_FOUND, "DeploymentNotFound", &message),
            ))
        } else {
            None
        }
    }

    fn turns(&self, body: &Value) -> Vec<(String, String)> {
        roles_and_contents(&body["messages"])
    }

    fn by_history(&self, body: &Value) -> Option<Behaviour> {
        chat_history(body, None)
    }

    fn markers(&self) -> &'static [(&'static str, Behaviour)] {
        &[("[blocked-prompt]", Behaviour::BlockedPrompt)]
    }

    fn whole(&self) -> Option<fn(&str) -> Response> {
        Some(crate::fake_openai::chat_completion)
    }
}
