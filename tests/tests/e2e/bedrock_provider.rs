//! AWS Bedrock (`kind = "bedrock"`) against a fake runtime that verifies every
//! request's SigV4 signature (recomputed with `aws-sigv4` from its own copy of the
//! credentials) and answers in binary event-stream frames: the shared provider checks
//! (`provider_checks.rs`) with this provider's table, every request signed (a
//! throttled request retried once then failed with AWS's message, a mid-stream
//! `modelStreamErrorException` interrupted then continued exactly), and what only
//! Bedrock has: a wrong secret key failing with the signature error.

use crate::{finished, s};
use anyhow::{Result, ensure};
use chorus_tests::fake_bedrock::{Behaviour, RecordedRequest, SIGNATURE_MESSAGE, model_of};
use chorus_tests::provider_checks::{
    Continuation, ContinuationRequest, Expected, Filtered, RateLimitFailure, run_shared_checks,
};
use chorus_tests::{FakeBedrock, ProviderCase, ServerConfig};
use std::time::Duration;

const ACCESS_KEY_ID: &str = "AKIAFAKEE2E000000001";
const SECRET_KEY: &str = "fakeE2eSecret/K7MDENG+bPxRfiCYEXAMPLEKEY";
const REGION: &str = "eu-central-1";
const MODEL_ID: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
const MODEL: &str = "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0";

type Setup = ProviderCase<FakeBedrock>;

/// A server signing with `secret_key`, retrying once.
async fn setup(secret_key: &str) -> Result<Setup> {
    let fake = FakeBedrock::start(ACCESS_KEY_ID, SECRET_KEY, REGION).await?;
    let config = ServerConfig::new()
        .bedrock(
            "bedrock",
            &fake.base_url(),
            REGION,
            ACCESS_KEY_ID,
            secret_key,
            &[MODEL_ID],
        )
        .provider_setting("bedrock", "max_retries", 1);
    ProviderCase::start(fake, config, "bedrock", MODEL).await
}

fn check_signed(req: &RecordedRequest) -> Result<()> {
    ensure!(
        req.behaviour != Behaviour::Rejected,
        "the fake rejected the request: {:?}",
        req.rejection
    );
    let model = model_of(&req.path);
    ensure!(model.as_deref() == Some(MODEL_ID), "model {model:?}");
    ensure!(
        req.path == "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream",
        "path {:?}",
        req.path
    );
    let auth = req.header("authorization").unwrap_or_default();
    ensure!(
        auth.starts_with(&format!("AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/"))
            && auth.contains(&format!("/{REGION}/bedrock/aws4_request")),
        "authorization {auth:?}"
    );
    ensure!(req.header("x-amz-date").is_some(), "no x-amz-date");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bedrock_wrong_secret_fails_with_the_signature_error() -> Result<()> {
    let t = setup("not-the-right-secret-key").await?;
    let (sent, events) = t.send_to_finished("Say hello").await?;
    let end = finished(&events)?;
    ensure!(end.status() == Some("failed"), "finished with {}", end.data);
    let run = t.run_ended(&sent.run_id).await?;
    let error = s(&run, "error");
    ensure!(
        s(&run, "status") == "failed"
            && error.contains("403")
            && error.contains("InvalidSignatureException")
            && error.contains(SIGNATURE_MESSAGE),
        "run: {run}"
    );
    ensure!(
        error.to_lowercase().contains("auth"),
        "the error does not say it is an authentication problem: {error}"
    );
    // An auth error is not retried.
    let requests = t.fake.requests();
    ensure!(requests.len() == 1, "{} requests", requests.len());
    ensure!(
        requests[0].behaviour == Behaviour::Rejected
            && requests[0]
                .rejection
                .as_deref()
                .is_some_and(|r| r.contains("InvalidSignatureException")),
        "rejection: {:?}",
        requests[0].rejection
    );
    Ok(())
}

/// What this provider's fixtures say, for the shared checks.
const SHARED: Expected = Expected {
    provider_id: "bedrock",
    request_shape: check_signed,
    system_prompt: None,
    model_role: "assistant",
    reply: "Hello from fake Bedrock.",
    // The prompt tokens count those read from the cache: 21 + 3.
    usage: (24, 5),
    tool_call_ids: [Some("tooluse_weather_A1"), Some("tooluse_time_B2")],
    filtered: Some(Filtered {
        text: "Here is how one would",
        usage: (14, 2),
    }),
    midstream_text: "The answer is:",
    midstream_error: &[
        "modelStreamErrorException",
        "The model stream was interrupted.",
    ],
    more_midstream_failures: &[],
    continuation: Some(Continuation {
        rest: " forty-two.",
        usage: (44, 2),
        request: ContinuationRequest::Instruction,
    }),
    retry_after: Duration::from_secs(1),
    // A `ThrottlingException` names no wait: retried once (max_retries = 1), each
    // attempt signed afresh, then failed with AWS's message.
    rate_limit_failure: Some(RateLimitFailure {
        marker: "[throttle]",
        behaviour: Behaviour::Throttled,
        error: &[
            "ThrottlingException",
            "Too many requests, please wait before trying again.",
        ],
        requests: 2,
    }),
    unauthorized_error: &[
        "403",
        "UnrecognizedClientException",
        "security token included in the request is invalid",
    ],
};

#[tokio::test(flavor = "multi_thread")]
async fn bedrock_passes_the_shared_provider_checks() -> Result<()> {
    let t = setup(SECRET_KEY).await?;
    run_shared_checks(&t, MODEL, &SHARED).await
}
