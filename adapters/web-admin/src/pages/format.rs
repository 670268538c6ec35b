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

/// `HH:MM` (UTC) of a Unix ms time.
pub fn utc_time(ms: i64) -> String {
    let minutes = ms.div_euclid(60_000).rem_euclid(1440);
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// `YYYY-MM-DD` (UTC) of a Unix ms time.
pub fn utc_day(ms: i64) -> String {
    chorus_core::utc_date(ms.div_euclid(86_400_000))
}

/// A share (0 to 1) as a percentage.
pub fn percent(share: f64) -> String {
    format!("{:.1} %", share * 100.0)
}

/// Milliseconds, or a dash.
pub fn maybe_ms(ms: Option<i64>) -> String {
    ms.map_or_else(|| "—".into(), |v| format!("{v} ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_and_days() {
        // 2024-01-01T13:07:00Z
        let t = 19_723 * 86_400_000 + 13 * 3_600_000 + 7 * 60_000;
        assert_eq!(utc_time(t), "13:07");
        assert_eq!(utc_day(t), "2024-01-01");
        assert_eq!(percent(0.125), "12.5 %");
        assert_eq!(maybe_ms(None), "—");
    }
}
