//! The per-phase report of `bench --timing` and `gateway_bench --timing`: the lines a
//! server with `[telemetry] timing = true` logs at target
//! `chorus_core::telemetry::timing` (`KIND NAME=VALUE ...`, microseconds), gathered
//! per kind and name into p50 / p99.

use std::collections::BTreeMap;

/// The log filter that lets the timing lines through beside warnings.
const LOG_FILTER: &str = "warn,chorus_core::telemetry::timing=info";

/// The server's `CHORUS_LOG` for a benchmark: warnings only, and the timing lines
/// when `timing` is asked for.
pub fn log_filter(timing: bool) -> &'static str {
    if timing { LOG_FILTER } else { "warn" }
}

/// The `[telemetry]` section that turns timing on.
pub const CONFIG: &str = "[telemetry]\ntiming = true\n";

/// Every `KIND NAME=VALUE` figure of the timing lines in `log`, by (kind, name).
pub fn parse(log: &str) -> BTreeMap<(String, String), Vec<u64>> {
    let mut figures: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    for line in log.lines() {
        let Some(at) = line.find("chorus_core::telemetry::timing") else {
            continue;
        };
        let rest = &line[at + "chorus_core::telemetry::timing".len()..];
        let mut words = rest
            .trim_start_matches(|c: char| c == ':' || c == '"' || c.is_whitespace())
            .split_whitespace();
        let Some(kind) = words.next() else { continue };
        for word in words {
            let Some((name, value)) = word.split_once('=') else {
                continue;
            };
            let value = value.trim_end_matches(|c: char| !c.is_ascii_digit());
            if let Ok(v) = value.parse() {
                figures
                    .entry((kind.to_string(), name.to_string()))
                    .or_default()
                    .push(v);
            }
        }
    }
    figures
}

/// The report as a Markdown table: one row per kind and phase, its count, p50 and
/// p99 in milliseconds (sizes and counts as they are).
pub fn table(figures: &BTreeMap<(String, String), Vec<u64>>) -> String {
    let mut out = String::from("| timing | n | p50 | p99 |\n|---|---|---|---|\n");
    for ((kind, name), values) in figures {
        let mut v = values.clone();
        v.sort_unstable();
        let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
        // Sizes and counts are figures; everything else is microseconds.
        let show = |x: u64| {
            if matches!(name.as_str(), "size" | "runs") {
                x.to_string()
            } else {
                format!("{:.2} ms", x as f64 / 1000.0)
            }
        };
        out.push_str(&format!(
            "| {kind} {name} | {} | {} | {} |\n",
            v.len(),
            show(at(0.5)),
            show(at(0.99))
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_lines_are_gathered_by_kind_and_phase() {
        let log = "2026-12-06T07:00:00Z  INFO chorus_core::telemetry::timing: chat_completions total=900 auth=100 admission=300\n\
                   2026-12-06T07:00:00Z  WARN chorus_core::engine: unrelated x=1\n\
                   2026-12-06T07:00:01Z  INFO chorus_core::telemetry::timing: group_commit size=3 wait=40 write=60\n\
                   2026-12-06T07:00:02Z  INFO chorus_core::telemetry::timing: chat_completions total=1100 auth=200 admission=500";
        let figures = parse(log);
        assert_eq!(
            figures[&("chat_completions".into(), "auth".into())],
            vec![100, 200]
        );
        assert_eq!(figures[&("group_commit".into(), "size".into())], vec![3]);
        assert_eq!(figures.len(), 6);
        let table = table(&figures);
        assert!(
            table.contains("| group_commit size | 1 | 3 | 3 |"),
            "{table}"
        );
        assert!(table.contains("| chat_completions auth | 2 |"), "{table}");
    }
}
