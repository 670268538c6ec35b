//! Small HTTP helpers shared by the native-protocol providers (Gemini, Ollama): error
//! classification, `Retry-After`, config-driven request building and body merging.

use super::{ProviderError, ProviderErrorKind};
use chorus_model::secret::Secret;
use serde_json::Value;
use std::time::Duration;

/// What every HTTP provider takes from its `[[providers]]` entry the same way.
pub(super) struct HttpSettings {
    /// A client with the configured connect timeout.
    pub(super) client: reqwest::Client,
    /// `base_url` from config (or the provider's default), without a trailing slash.
    pub(super) base_url: String,
    /// The key, when one is configured and not empty.
    pub(super) api_key: Option<Secret>,
    /// Extra headers sent with every request (secrets: never logged).
    pub(super) headers: Vec<(String, Secret)>,
    /// Extra body fields merged into every request.
    pub(super) params: serde_json::Map<String, Value>,
    /// How long a stream may stay silent before it counts as dropped.
    pub(super) idle_timeout: Duration,
    /// How long a whole (non-streamed) reply may take to arrive.
    pub(super) whole_reply_timeout: Duration,
}

impl HttpSettings {
    /// The settings of `cfg`, with `default_base_url` when it names none.
    pub(super) fn from_config(cfg: &crate::config::ProviderConfig, default_base_url: &str) -> Self {
        Self {
            client: client(cfg.connect_timeout_secs),
            base_url: base_url(cfg.base_url.as_deref(), default_base_url),
            api_key: cfg.api_key.clone().filter(|k| !k.is_empty()),
            headers: cfg
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            params: cfg.params.clone(),
            idle_timeout: Duration::from_secs(cfg.idle_timeout_secs),
            whole_reply_timeout: Duration::from_secs(cfg.whole_reply_timeout_secs),
        }
    }
}

impl HttpSettings {
    /// How long to wait for a response's headers, and for a whole reply's body: a
    /// whole reply ([`crate::ChatRequest::whole_reply`]) may send its headers only once
    /// it is complete.
    pub(super) fn response_wait(&self, whole_reply: bool) -> Duration {
        if whole_reply {
            self.whole_reply_timeout
        } else {
            self.idle_timeout
        }
    }
}

/// The body of a whole (non-streamed) answer, read within `limit`.
pub(super) async fn whole_body(
    response: reqwest::Response,
    limit: Duration,
) -> Result<String, ProviderError> {
    tokio::time::timeout(limit, response.text())
        .await
        .map_err(|_| {
            ProviderError::new(
                ProviderErrorKind::Timeout,
                "the whole reply did not arrive in time (whole_reply_timeout_secs)",
            )
        })?
        .map_err(|e| transport_error(&e))
}

/// A reqwest client with the configured connect timeout.
pub(super) fn client(connect_timeout_secs: u64) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(connect_timeout_secs))
        .build()
        .unwrap_or_default()
}

/// `base_url` from config (or `default`), without a trailing slash.
pub(super) fn base_url(configured: Option<&str>, default: &str) -> String {
    configured
        .unwrap_or(default)
        .trim_end_matches('/')
        .to_string()
}

/// Adds the configured extra headers to a request.
pub(super) fn with_headers(
    mut req: reqwest::RequestBuilder,
    headers: &[(String, Secret)],
) -> reqwest::RequestBuilder {
    for (name, value) in headers {
        req = req.header(name, value.expose());
    }
    req
}

/// Sends `req`, waiting at most `limit` for the response headers.
pub(super) async fn send(
    req: reqwest::RequestBuilder,
    limit: Duration,
) -> Result<reqwest::Response, ProviderError> {
    tokio::time::timeout(limit, req.send())
        .await
        .map_err(|_| ProviderError::new(ProviderErrorKind::Timeout, "no response headers in time"))?
        .map_err(|e| transport_error(&e))
}

pub(super) fn transport_error(e: &reqwest::Error) -> ProviderError {
    let kind = if e.is_timeout() {
        ProviderErrorKind::Timeout
    } else {
        ProviderErrorKind::Connect
    };
    ProviderError::new(kind, format!("request failed: {e}"))
}

/// The error kind of an HTTP status.
pub(super) fn status_kind(status: u16) -> ProviderErrorKind {
    match status {
        429 => ProviderErrorKind::RateLimited,
        401 | 403 => ProviderErrorKind::Auth,
        408 => ProviderErrorKind::Timeout,
        500..=599 => ProviderErrorKind::Server,
        _ => ProviderErrorKind::BadRequest,
    }
}

/// The `Retry-After` header in seconds, when present and numeric.
pub(super) fn retry_after_header(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Merges `extra` into `target`: objects merge key by key (recursively), anything else
/// replaces what was there.
pub(super) fn merge_json(
    target: &mut serde_json::Map<String, Value>,
    extra: &serde_json::Map<String, Value>,
) {
    for (k, v) in extra {
        match (target.get_mut(k), v) {
            (Some(Value::Object(existing)), Value::Object(more)) => merge_json(existing, more),
            _ => {
                target.insert(k.clone(), v.clone());
            }
        }
    }
}

/// At most `max` characters of `s`.
pub(super) fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The events of one byte stream split into lines: bytes arrive in arbitrary chunks,
/// a line is complete at `\n` (a trailing `\r` is dropped). `\n` never occurs inside a
/// multi-byte UTF-8 sequence, so splitting bytes is safe.
#[derive(Default)]
pub(super) struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    /// Feeds a chunk; returns the lines it completed, without their line ends.
    pub(super) fn push(&mut self, chunk: &[u8]) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        let mut rest = chunk;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&rest[..pos]);
            let mut line = std::mem::take(&mut self.partial);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            lines.push(line);
            rest = &rest[pos + 1..];
        }
        self.partial.extend_from_slice(rest);
        lines
    }

    /// The last line when the stream ended without a line end.
    pub(super) fn finish(&mut self) -> Option<Vec<u8>> {
        let mut line = std::mem::take(&mut self.partial);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        (!line.is_empty()).then_some(line)
    }
}

/// One provider's reading of its server-sent events, for [`sse_stream`].
pub(super) trait SseParser: Send + 'static {
    /// What ends a complete stream (`[DONE]`, `message_stop`...), named in the error
    /// when the connection ends without it.
    const END: &'static str;

    /// Parses one event's data (never blank) into `out`; returns true once the reply
    /// is complete. Events pushed before an error are delivered before it.
    fn parse(
        &mut self,
        data: &str,
        out: &mut std::collections::VecDeque<super::ProviderEvent>,
    ) -> Result<bool, ProviderError>;
}

/// Turns an SSE response into provider events: parsed by `parser`, ended by an
/// idle timeout, a broken or early-closed connection, or the parser's end.
pub(super) fn sse_stream<P: SseParser>(
    response: reqwest::Response,
    idle_timeout: Duration,
    parser: P,
) -> super::ProviderStream {
    use eventsource_stream::Eventsource;
    use futures::StreamExt;

    struct State<P> {
        events: std::pin::Pin<
            Box<
                dyn futures::Stream<
                        Item = Result<
                            eventsource_stream::Event,
                            eventsource_stream::EventStreamError<reqwest::Error>,
                        >,
                    > + Send,
            >,
        >,
        parser: P,
        pending: std::collections::VecDeque<super::ProviderEvent>,
        error: Option<ProviderError>,
        finished: bool,
        idle_timeout: Duration,
    }

    let state = State {
        events: Box::pin(response.bytes_stream().eventsource()),
        parser,
        pending: Default::default(),
        error: None,
        finished: false,
        idle_timeout,
    };
    futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(event) = s.pending.pop_front() {
                return Some((Ok(event), s));
            }
            if let Some(err) = s.error.take() {
                return Some((Err(err), s));
            }
            if s.finished {
                return None;
            }
            let failure = match tokio::time::timeout(s.idle_timeout, s.events.next()).await {
                Err(_) => ProviderError::new(ProviderErrorKind::Timeout, "the stream went idle"),
                Ok(None) => ProviderError::new(
                    ProviderErrorKind::Connect,
                    format!("the stream ended before {}", P::END),
                ),
                Ok(Some(Err(e))) => {
                    ProviderError::new(ProviderErrorKind::Connect, format!("stream broke: {e}"))
                }
                Ok(Some(Ok(event))) => {
                    let data = event.data.trim();
                    if data.is_empty() {
                        continue;
                    }
                    match s.parser.parse(data, &mut s.pending) {
                        Ok(done) => {
                            s.finished = done;
                            continue;
                        }
                        Err(err) => err,
                    }
                }
            };
            s.finished = true;
            s.error = Some(failure);
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lines_split_across_chunks_are_joined() {
        let mut s = LineSplitter::default();
        assert!(s.push(b"{\"a\":").is_empty());
        assert_eq!(s.push(b"1}\n{\"b\""), vec![b"{\"a\":1}".to_vec()]);
        assert_eq!(
            s.push(b":2}\r\n\n{\"c\":3}\n"),
            vec![b"{\"b\":2}".to_vec(), Vec::new(), b"{\"c\":3}".to_vec()]
        );
        assert_eq!(s.finish(), None);
        assert!(s.push(b"{\"d\":4}").is_empty());
        assert_eq!(s.finish(), Some(b"{\"d\":4}".to_vec()));
    }

    #[test]
    fn lines_split_inside_a_utf8_character_are_joined() {
        let text = "{\"t\":\"ünï✓\"}\n".as_bytes();
        let mut s = LineSplitter::default();
        let mut lines = Vec::new();
        // One byte at a time splits every multi-byte character.
        for b in text {
            lines.extend(s.push(std::slice::from_ref(b)));
        }
        assert_eq!(lines.len(), 1);
        assert_eq!(
            String::from_utf8(lines.remove(0)).unwrap(),
            "{\"t\":\"ünï✓\"}"
        );
    }

    #[test]
    fn objects_merge_and_scalars_replace() {
        let mut target = json!({"a": 1, "cfg": {"x": 1, "y": 2}})
            .as_object()
            .unwrap()
            .clone();
        let extra = json!({"a": 2, "cfg": {"y": 3, "z": 4}, "n": null})
            .as_object()
            .unwrap()
            .clone();
        merge_json(&mut target, &extra);
        assert_eq!(
            Value::Object(target),
            json!({"a": 2, "cfg": {"x": 1, "y": 3, "z": 4}, "n": null})
        );
    }
}
