//! Log line formats: JSON lines that carry the OpenTelemetry trace and span ids of
//! the span they were logged in (so a log line leads to its trace), and the text
//! format's fields without message text.
//!
//! The ids are taken when a span is made ([`TraceIdLayer`]) and kept in the span's
//! extensions, because a formatter cannot ask the dispatcher for them while it is
//! already inside a call of that dispatcher.

use std::fmt::Write as _;
use std::sync::OnceLock;
use tracing::dispatcher::WeakDispatch;
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::{Format, Json, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The global dispatcher, once installed: [`TraceIdLayer`] asks it for each new
/// span's OpenTelemetry context.
static DISPATCH: OnceLock<WeakDispatch> = OnceLock::new();

/// Remembers the global dispatcher (call right after installing it).
pub fn remember_dispatch() {
    tracing::dispatcher::get_default(|d| {
        let _ = DISPATCH.set(d.downgrade());
    });
}

/// The ids of a span's OpenTelemetry span, in the W3C hex form collectors show.
#[derive(Clone)]
struct TraceIds {
    trace_id: String,
    span_id: String,
}

/// Stores each new span's [`TraceIds`] in its extensions. It must come after the
/// OpenTelemetry layer, which makes the span's context first.
pub struct TraceIdLayer;

impl<S> Layer<S> for TraceIdLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, _: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        use opentelemetry::trace::TraceContextExt;
        let Some(dispatch) = DISPATCH.get().and_then(WeakDispatch::upgrade) else {
            return;
        };
        let Some(cx) = tracing_opentelemetry::get_otel_context(id, &dispatch) else {
            return;
        };
        let span = cx.span();
        let sc = span.span_context();
        if !sc.is_valid() {
            return;
        }
        let ids = TraceIds {
            trace_id: sc.trace_id().to_string(),
            span_id: sc.span_id().to_string(),
        };
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(ids);
        }
    }
}

/// tracing-subscriber's JSON lines (event fields at the top level, no span fields),
/// with `trace_id` and `span_id` added when the event happened in a traced span.
pub struct JsonWithTraceIds(Format<Json>);

impl JsonWithTraceIds {
    pub fn new() -> Self {
        Self(
            tracing_subscriber::fmt::format()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false),
        )
    }
}

impl<S, N> FormatEvent<S, N> for JsonWithTraceIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        let ids = ctx.event_scope().and_then(|scope| {
            scope
                .into_iter()
                .find_map(|span| span.extensions().get::<TraceIds>().cloned())
        });
        match (ids, line.strip_suffix("}\n")) {
            (Some(ids), Some(head)) => {
                let mut out = String::with_capacity(line.len() + 80);
                let _ = writeln!(
                    out,
                    "{head},\"trace_id\":\"{}\",\"span_id\":\"{}\"}}",
                    ids.trace_id, ids.span_id
                );
                writer.write_str(&out)
            }
            _ => writer.write_str(&line),
        }
    }
}

/// Span fields that may hold message text (`telemetry.include_content`): for the
/// trace only, never printed in a log line.
const CONTENT_FIELDS: &[&str] = &["gen_ai.prompt", "gen_ai.completion"];

/// The text format's fields (`name=value`, the message bare), leaving out
/// [`CONTENT_FIELDS`].
pub fn text_fields() -> impl for<'a> FormatFields<'a> + Send + Sync + 'static {
    tracing_subscriber::fmt::format::debug_fn(|writer, field, value| match field.name() {
        name if CONTENT_FIELDS.contains(&name) => Ok(()),
        "message" => write!(writer, "{value:?}"),
        name => write!(writer, "{name}={value:?}"),
    })
    .delimited(" ")
}
