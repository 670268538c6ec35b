//! A provider call opened before its run was admitted, so that the admission's write
//! and the model's first tokens overlap instead of adding up (the gateway's
//! `[gateway] early_upstream`).
//!
//! Only the call is early: nothing it streams reaches the journal, a reader or the
//! run's text before the run exists, since the run task reads the stream only once
//! it was spawned, which happens after the admission committed. The bytes wait in the
//! connection meanwhile. A refused or failed admission drops the [`EarlyStream`],
//! which aborts the call: the upstream sees its request cancelled before anything was
//! read from it.

use chorus_providers::{ChatRequest, ProviderError, ProviderErrorKind, ProviderStream, Target};
use std::time::Instant;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

/// The stream of the first attempt on a model chain's first target, being opened.
pub(crate) struct EarlyStream {
    /// The target it was opened on (`provider/model`): only that attempt uses it.
    model_ref: String,
    /// When the request went out: the attempt's start, for its first-token deadline
    /// and the provider's time to first token.
    started: Instant,
    opening: AbortOnDropHandle<Result<ProviderStream, ProviderError>>,
}

impl EarlyStream {
    /// Sends `request` (the run's request as its first attempt would send it) to
    /// `target` from a task of its own.
    pub(crate) fn open(target: &Target, mut request: ChatRequest) -> Self {
        request.model = target.model.clone();
        let provider = target.provider.clone();
        Self {
            model_ref: target.model_ref.clone(),
            started: Instant::now(),
            // In the span of the request that asked for it (the reply's trace).
            opening: AbortOnDropHandle::new(tokio::spawn(
                async move { provider.stream(request).await }.instrument(tracing::Span::current()),
            )),
        }
    }

    /// Whether this is the stream of an attempt on `target`.
    pub(crate) fn is_for(&self, target: &Target) -> bool {
        self.model_ref == target.model_ref
    }

    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// The opened stream, or the error opening it met. Dropping the future before it
    /// is ready (a stop, a shutdown) aborts the call.
    pub(crate) async fn stream(self) -> Result<ProviderStream, ProviderError> {
        match self.opening.await {
            Ok(result) => result,
            Err(e) => Err(ProviderError::new(
                ProviderErrorKind::Connect,
                format!("the provider call ended without an answer: {e}"),
            )),
        }
    }
}
