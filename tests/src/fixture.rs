//! Recorded provider replies: small readable files under `tests/fixtures/PROVIDER/`
//! that the fakes replay instead of building their streams in code.
//!
//! Each `NAME.http` file is one HTTP response as it goes over the wire: a status
//! line, `name: value` headers, a blank line and the body. The body goes out in the
//! pieces a real server would send it in, chosen by its content type:
//!
//! - `text/event-stream`: one piece per server-sent event (up to its blank line);
//! - `application/x-ndjson`: one piece per line, each cut in two mid-line, so the
//!   reader must join partial lines;
//! - `application/vnd.amazon.eventstream`: the body is a readable JSON array of
//!   messages (`{"headers": {":event-type": ...}, "payload": {...}}`), each encoded
//!   into a binary frame by `aws-smithy-eventstream` and sent in two halves;
//! - anything else: the whole body at once.

use crate::fake_http::{paced_stream, streaming_response};
use anyhow::{Context, Result, bail};
use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// The pause before each piece of a replayed body.
pub const PIECE_PAUSE: Duration = Duration::from_millis(10);

/// `tests/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// One recorded response.
#[derive(Clone, Debug)]
pub struct Fixture {
    /// `PROVIDER/NAME`, for messages.
    pub name: String,
    pub status: StatusCode,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Fixture {
    /// Reads `tests/fixtures/PROVIDER/NAME.http`.
    pub fn load(provider: &str, name: &str) -> Result<Self> {
        let path = fixtures_dir().join(provider).join(format!("{name}.http"));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read fixture {}", path.display()))?;
        Self::parse(&format!("{provider}/{name}"), &text)
    }

    /// Parses the text of a `.http` file.
    pub fn parse(name: &str, text: &str) -> Result<Self> {
        let (head, body) = text
            .split_once("\n\n")
            .with_context(|| format!("fixture {name}: no blank line after the headers"))?;
        let mut lines = head.lines();
        let status_line = lines.next().unwrap_or_default();
        let code = status_line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .and_then(|c| StatusCode::from_u16(c).ok())
            .with_context(|| format!("fixture {name}: bad status line {status_line:?}"))?;
        let mut headers = Vec::new();
        for line in lines {
            let Some((k, v)) = line.split_once(':') else {
                bail!("fixture {name}: bad header line {line:?}");
            };
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        Ok(Self {
            name: name.to_string(),
            status: code,
            headers,
            body: body.to_string(),
        })
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body in the pieces it goes out in (see the module doc).
    pub fn pieces(&self) -> Result<Vec<Bytes>> {
        let content_type = self.header("content-type").unwrap_or_default();
        if content_type.starts_with("text/event-stream") {
            Ok(self
                .body
                .split_inclusive("\n\n")
                .map(|event| Bytes::from(event.to_string()))
                .collect())
        } else if content_type.starts_with("application/x-ndjson") {
            Ok(self
                .body
                .split_inclusive('\n')
                .flat_map(|line| halves(Bytes::from(line.to_string())))
                .collect())
        } else if content_type.starts_with("application/vnd.amazon.eventstream") {
            let messages: Vec<Value> = serde_json::from_str(&self.body)
                .with_context(|| format!("fixture {}: the body is no JSON array", self.name))?;
            let mut pieces = Vec::new();
            for message in &messages {
                pieces.extend(halves(event_stream_frame(message).with_context(|| {
                    format!("fixture {}: bad message {message}", self.name)
                })?));
            }
            Ok(pieces)
        } else {
            Ok(vec![Bytes::from(self.body.clone())])
        }
    }

    /// The response, its body paced by [`PIECE_PAUSE`]; `hang_up` (if any) is set when
    /// the client closes the connection before the end.
    pub fn respond(&self, hang_up: Option<Arc<AtomicBool>>) -> Response {
        let pieces = match self.pieces() {
            Ok(p) => p,
            Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")).into_response(),
        };
        let content_type = self
            .header("content-type")
            .unwrap_or("application/octet-stream");
        let others: Vec<(&str, &str)> = self
            .headers
            .iter()
            .filter(|(k, _)| k != "content-type")
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut response = streaming_response(
            content_type,
            &others,
            paced_stream(pieces, |_| PIECE_PAUSE, hang_up),
        );
        *response.status_mut() = self.status;
        response
    }
}

/// Replays `tests/fixtures/PROVIDER/NAME.http` (a 500 naming the problem if the file
/// is missing or malformed, so a test fails saying which).
pub fn replay(provider: &str, name: &str, hang_up: Option<Arc<AtomicBool>>) -> Response {
    match Fixture::load(provider, name) {
        Ok(f) => f.respond(hang_up),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")).into_response(),
    }
}

/// `bytes` cut in two (inside the first multi-byte character, if any), so readers
/// must reassemble what the network splits.
pub fn halves(bytes: Bytes) -> [Bytes; 2] {
    let cut = bytes
        .iter()
        .position(|b| *b >= 0x80)
        .map_or(bytes.len() / 2, |i| i + 1);
    [bytes.slice(..cut), bytes.slice(cut..)]
}

/// One binary event-stream frame from `{"headers": {NAME: STRING}, "payload": JSON}`.
fn event_stream_frame(message: &Value) -> Result<Bytes> {
    let payload = message.get("payload").context("no payload")?.to_string();
    let mut frame = Message::new(Bytes::from(payload));
    for (name, value) in message
        .get("headers")
        .and_then(Value::as_object)
        .context("no headers object")?
    {
        let value = value.as_str().context("a header value is no string")?;
        frame = frame.add_header(Header::new(
            name.clone(),
            HeaderValue::String(value.to_string().into()),
        ));
    }
    let mut buf = Vec::new();
    write_message_to(&frame, &mut buf)?;
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every committed fixture parses and splits into pieces.
    #[test]
    fn every_fixture_parses() {
        let mut count = 0;
        for provider in std::fs::read_dir(fixtures_dir()).unwrap() {
            let provider = provider.unwrap().path();
            if !provider.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(&provider).unwrap() {
                let path = file.unwrap().path();
                if path.extension().is_none_or(|e| e != "http") {
                    continue;
                }
                let name = path.file_stem().unwrap().to_string_lossy().to_string();
                let f =
                    Fixture::load(&provider.file_name().unwrap().to_string_lossy(), &name).unwrap();
                assert!(!f.pieces().unwrap().is_empty(), "{}", f.name);
                count += 1;
            }
        }
        assert!(count > 40, "only {count} fixtures found");
    }

    #[test]
    fn sse_bodies_split_into_events() {
        let f = Fixture::parse(
            "t",
            "HTTP/1.1 200 OK\ncontent-type: text/event-stream\n\ndata: 1\n\nevent: x\ndata: 2\n\n",
        )
        .unwrap();
        assert_eq!(
            f.pieces().unwrap(),
            vec![
                Bytes::from("data: 1\n\n"),
                Bytes::from("event: x\ndata: 2\n\n")
            ]
        );
    }
}
