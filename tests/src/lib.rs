//! The end-to-end harness: it runs the real `chorus` binary as a child process against
//! real PostgreSQL and Redis, and talks to it only over HTTP and the CLI, the way an
//! operator and a browser would.
//!
//! - [`services`]: a fresh PostgreSQL database and a unique Redis key prefix per test,
//!   failing loudly (never skipping) when either service is unreachable.
//! - [`server`]: [`TestServer`] writes a config, spawns `chorus serve` on a free port,
//!   waits for `/healthz`, and can `kill -9` and restart it.
//! - [`client`]: [`ApiClient`], a typed wrapper over the JSON API, and a reader of a
//!   run's server-sent events that can stop after k events and resume.
//! - [`fake_server`]: [`Fake`](fake_server::Fake), one fake model API: routing,
//!   recording, the auth and URL checks of a [`Wire`](fake_server::Wire), the markers
//!   that pick a fixture, a 429 the first time, and fixture replay.
//! - [`fake_http`]: the plumbing under it and the fixtures: [`FakeServer`](fake_http::FakeServer),
//!   paced streaming replies and SSE framing.
//! - [`fake_openai`], [`fake_openai_responses`], [`fake_azure`], [`fake_anthropic`],
//!   [`fake_gemini`], [`fake_ollama`], [`fake_bedrock`]: the wire formats of OpenAI
//!   Chat Completions and Responses, Azure OpenAI (deployment URLs, `api-key`, content
//!   filter results and refusals), the Anthropic Messages API, the Gemini API, Ollama's
//!   native chat API (NDJSON) and model list, and AWS Bedrock ConverseStream (binary
//!   event-stream frames, every request's SigV4 signature verified).
//! - [`fake_tool_models`]: OpenAI and Anthropic models that call a tool, built in code;
//!   [`fake_script_model`]: an OpenAI-compatible model that streams a script slowly
//!   and continues it from any cut-off point (bound where containers reach it).
//! - [`fixture`]: the recorded replies under `tests/fixtures/PROVIDER/` the fakes replay.
//! - [`provider_case`]: [`ProviderCase`], the fake + server + client + conversation
//!   each provider test starts from, and its send-and-read steps.
//! - [`litellm`]: LiteLLM's proxy (from PyPI) on loopback with mock responses, a
//!   third-party server speaking the OpenAI and Anthropic formats.
//! - [`provider_checks`]: the checks every provider passes (reply, tool calls, usage,
//!   content filter, mid-stream error, 429 with Retry-After, rejected key), driven by
//!   one table of expectations per provider.
//! - [`oidc_provider`]: a real OpenID provider (`oidc-provider-mock` from PyPI) as a
//!   child process, and an interceptor that tampers with its answers for the failure
//!   cases; [`fake_discord`] and [`fake_github`]: local Discord and GitHub OAuth2
//!   servers in their documented wire formats; [`fake_discord_bot`]: a local Discord
//!   for the bot (REST under `/api/v10` and a gateway WebSocket, payloads from
//!   Discord's documented examples in `fixtures/discord/`); [`sso_browser`]: a cookie-keeping
//!   client that follows a login's redirects one hop at a time.
//! - [`synapse`]: a throwaway Synapse (from PyPI) on loopback, one per test process,
//!   with shared-secret registration and a low message rate limit that the human
//!   test users are exempt from; [`matrix_client`]: a human Matrix user driven by
//!   matrix-sdk (not our code), who sends, reacts and reads the bot's edited replies.
//! - [`fake_slack`]: a local Slack: the Web API methods the Slack app calls, a
//!   Socket Mode WebSocket that delivers envelopes and checks their acks, the Events
//!   API's request signing, and Slack's documented payloads as fixtures.
//! - [`private_services`]: a `redis-server` and a PostgreSQL cluster of one test,
//!   which it may kill and start again (the shared services are never restarted).
//! - [`tcp_forward`]: a port that refuses connections until the test opens it to a
//!   real service (a platform down at start that comes back).
//! - [`otlp_receiver`]: an OTLP/HTTP trace receiver, decoding with
//!   `opentelemetry-proto`'s types; [`prometheus`]: `/metrics` parsed as the
//!   Prometheus text format.
//! - [`compose`]: a Docker Compose project of `deploy/compose.yaml` with the images
//!   `scripts/container-image` builds, taken down (`down -v`) when dropped.
//! - [`wait`]: polling with a deadline, instead of sleeping and hoping.
//! - [`timing_report`]: the per-phase figures a server logs with `[telemetry] timing`
//!   on, as the benchmarks' `--timing` report.

// matrix-sdk's sync future is deep enough to overflow the default limit when spawned.
#![recursion_limit = "256"]

pub mod client;
pub mod compose;
pub mod fake_anthropic;
pub mod fake_azure;
pub mod fake_bedrock;
pub mod fake_discord;
pub mod fake_discord_bot;
pub mod fake_gemini;
pub mod fake_github;
pub mod fake_http;
pub mod fake_ollama;
pub mod fake_openai;
pub mod fake_openai_responses;
pub mod fake_script_model;
pub mod fake_server;
pub mod fake_slack;
pub mod fake_tool_models;
pub mod fixture;
pub mod litellm;
pub mod matrix_client;
pub mod oidc_provider;
pub mod otlp_receiver;
pub mod private_services;
pub mod prometheus;
pub mod provider_case;
pub mod provider_checks;
pub mod server;
pub mod services;
pub mod sso_browser;
pub mod synapse;
pub mod tcp_forward;
pub mod timing_report;
pub mod wait;

pub use client::{ApiClient, Resume, RunEvents, SentMessage, SseEvent};
pub use fake_anthropic::FakeAnthropic;
pub use fake_azure::FakeAzure;
pub use fake_bedrock::FakeBedrock;
pub use fake_gemini::FakeGemini;
pub use fake_ollama::FakeOllama;
pub use fake_openai::FakeOpenAi;
pub use fake_openai_responses::FakeOpenAiResponses;
pub use provider_case::ProviderCase;
pub use server::{ProviderSpec, ServerConfig, TestServer, chorus_bin};
pub use services::{TestDatabase, TestRedis};

/// The password every test account gets (long enough for the server's minimum).
pub const PASSWORD: &str = "correct horse battery staple";

/// A deterministic reply of `tokens` word-sized tokens for the scripted provider. It
/// mixes punctuation, repeated spaces, newlines and non-ASCII text so any dropped,
/// repeated or reordered token changes the concatenation.
pub fn script(tokens: usize) -> String {
    const WORDS: &[&str] = &[
        "Chorus",
        "keeps",
        "every",
        "event,",
        "ünïcode",
        "✓",
        "`code`",
        "and",
        "**bold**",
        "text;",
        "nothing",
        "is",
        "lost.",
    ];
    let mut out = String::new();
    for i in 0..tokens {
        out.push_str(WORDS[i % WORDS.len()]);
        out.push_str(&i.to_string());
        if i + 1 < tokens {
            out.push_str(match i % 7 {
                3 => "\n\n",
                5 => "  ",
                _ => " ",
            });
        }
    }
    out
}

/// A unique account name for one test.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Creates an account on `server` (through the CLI) and returns a client logged in
/// as it with a session cookie.
pub async fn logged_in_client(server: &TestServer, name: &str) -> anyhow::Result<ApiClient> {
    server.create_user(name, PASSWORD).await?;
    let client = server.client();
    client.login(name, PASSWORD).await?;
    Ok(client)
}
