//! Per-phase timing of requests, for finding where a reply's latency goes under load
//! (`bench --timing`, `gateway_bench --timing` print each phase's p50 and p99).
//!
//! Off unless `[telemetry] timing = true`: the binary reads the key once at start and
//! calls [`enable`]; when off every call here costs one relaxed atomic load. It is a
//! flag of its own, never a question to `tracing` ("is this target enabled?"): with
//! per-layer filters (the OTLP layer's `Targets`), `tracing::enabled!` leaves
//! per-layer filter state behind that the next span consumes, which once kept the
//! reply's span from being exported.
//!
//! A request's timeline is task-local: [`timed`] opens one around the request's
//! future, [`mark`] records the time since the previous mark under a phase's name
//! (anywhere below, in core or a surface), and the timeline is logged as one event
//! when the future ends, at target `chorus_core::telemetry::timing`:
//! `KIND total=US PHASE=US PHASE=US ...`, microseconds. The store logs its group
//! commits under the same target (`chorus_store::set_timing`).

use std::cell::RefCell;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

static ON: AtomicBool = AtomicBool::new(false);

/// Turns timing on for the rest of the process (and the store's with it).
pub fn enable() {
    ON.store(true, Ordering::Relaxed);
    chorus_store::set_timing(true);
}

/// Whether timing is on.
#[inline]
pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// The phases of one request so far.
struct Timeline {
    kind: &'static str,
    start: Instant,
    last: Instant,
    phases: Vec<(&'static str, u128)>,
}

tokio::task_local! {
    static TIMELINE: RefCell<Timeline>;
}

/// Runs `request` with a timeline of its own when timing is on, and logs the timeline
/// (when anything marked it) as `kind` ([`set_kind`] may rename it) once it ends.
pub async fn timed<F: Future>(kind: &'static str, request: F) -> F::Output {
    if !on() {
        return request.await;
    }
    let now = Instant::now();
    let timeline = RefCell::new(Timeline {
        kind,
        start: now,
        last: now,
        phases: Vec::new(),
    });
    TIMELINE
        .scope(timeline, async move {
            let output = request.await;
            TIMELINE.with(|t| log(&t.borrow()));
            output
        })
        .await
}

/// Records the time since the previous mark (or the request's start) as `phase`, in
/// the timeline of the request this task serves; nothing outside one, or when off.
#[inline]
pub fn mark(phase: &'static str) {
    if !on() {
        return;
    }
    let _ = TIMELINE.try_with(|t| {
        let mut t = t.borrow_mut();
        let now = Instant::now();
        let elapsed = now.duration_since(t.last).as_micros();
        t.last = now;
        t.phases.push((phase, elapsed));
    });
}

/// Names the request the timeline of this task times (a route shared by many kinds
/// of request learns which one it serves only in its handler).
pub fn set_kind(kind: &'static str) {
    if !on() {
        return;
    }
    let _ = TIMELINE.try_with(|t| t.borrow_mut().kind = kind);
}

fn log(t: &Timeline) {
    if t.phases.is_empty() {
        return;
    }
    let mut line = format!("{} total={}", t.kind, t.start.elapsed().as_micros());
    for (phase, us) in &t.phases {
        let _ = write!(line, " {phase}={us}");
    }
    tracing::info!(target: "chorus_core::telemetry::timing", "{line}");
}

/// Logs one measured step outside any request's timeline (the checkpointer's writes):
/// `kind` and its figures, as [`timed`] logs a request.
pub fn log_step(kind: &str, figures: &[(&str, u128)]) {
    if !on() {
        return;
    }
    let mut line = kind.to_string();
    for (name, value) in figures {
        let _ = write!(line, " {name}={value}");
    }
    tracing::info!(target: "chorus_core::telemetry::timing", "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn marks_outside_a_timeline_or_when_off_do_nothing() {
        // Off (the default): the request runs as it is, marks are ignored.
        assert!(!on());
        assert_eq!(
            timed("t", async {
                mark("a");
                7
            })
            .await,
            7
        );
        mark("outside");
    }
}
