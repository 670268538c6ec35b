//! How the pages write numbers and times.

use chorus_model::money::fmt_credits;
use chorus_model::time::now_ms;

/// Micro-credits as credits.
pub fn credits(micros: i64) -> String {
    fmt_credits(micros)
}

/// How long ago a Unix ms time was, roughly ("42 s", "3 min", "5 h", "2 d").
pub fn ago(ms: i64) -> String {
    let s = (now_ms() - ms).max(0) / 1000;
    match s {
        0..60 => format!("{s} s ago"),
        60..3600 => format!("{} min ago", s / 60),
        3600..86_400 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

/// An optional time, or a dash.
pub fn maybe_ago(ms: Option<i64>) -> String {
    ms.map_or_else(|| "—".into(), ago)
}
