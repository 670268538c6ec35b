//! Bar charts drawn on the server as inline SVG, the same shape as the chat client's
//! account dialog (`chorus-web`'s `chart.js`: a 560 × 130 frame, y labels at the top
//! and bottom, the first and last x labels, one `<title>` per bar with its figures, and
//! the classes `chart`, `chart-axis`, `chart-label`, `chart-bar` styled by the
//! stylesheet), so the console needs no script and no chart library. maud escapes
//! every label.

use maud::{Markup, html};

const W: f64 = 560.0;
const H: f64 = 130.0;
/// Room for the y labels.
const LEFT: f64 = 56.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
/// Room for the x labels.
const BOTTOM: f64 = 20.0;

/// One bar: its value and what its tooltip says.
pub struct Bar {
    pub value: f64,
    pub title: String,
}

/// A bar chart of `bars` (oldest first) between the labels `first` and `last`, the
/// y axis from 0 to the highest value written by `fmt`. `id` names it for tests.
pub fn bars(
    id: &str,
    title: &str,
    bars: &[Bar],
    first: &str,
    last: &str,
    fmt: impl Fn(f64) -> String,
) -> Markup {
    let max = bars.iter().map(|b| b.value).fold(0.0_f64, f64::max);
    let hi = if max > 0.0 { max } else { 1.0 };
    let bottom = H - BOTTOM;
    let slot = (W - LEFT - RIGHT) / bars.len().max(1) as f64;
    html! {
        figure.chart-box {
            figcaption { (title) }
            svg.chart id=(id) viewBox=(format!("0 0 {W} {H}")) role="img" aria-label=(title)
                xmlns="http://www.w3.org/2000/svg" {
                title { (title) }
                line.chart-axis x1=(LEFT) y1=(bottom) x2=(W - RIGHT) y2=(bottom) {}
                line.chart-axis x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(bottom) {}
                text.chart-label x=(LEFT - 6.0) y=(TOP + 4.0) text-anchor="end" { (fmt(max)) }
                text.chart-label x=(LEFT - 6.0) y=(bottom) text-anchor="end" { (fmt(0.0)) }
                text.chart-label x=(LEFT) y=(H - 4.0) { (first) }
                text.chart-label x=(W - RIGHT) y=(H - 4.0) text-anchor="end" { (last) }
                @for (i, b) in bars.iter().enumerate() {
                    @let h = (bottom - TOP) * b.value.max(0.0) / hi;
                    rect.chart-bar
                        x=(format!("{:.1}", LEFT + i as f64 * slot + slot * 0.15))
                        y=(format!("{:.1}", bottom - h))
                        width=(format!("{:.1}", (slot * 0.7).max(1.0)))
                        height=(format!("{h:.1}"))
                        data-value=(b.value) {
                        title { (b.title) }
                    }
                }
            }
        }
    }
}

/// A count for an axis label: whole numbers as such, others with one decimal.
pub fn count(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_highest_and_escape_titles() {
        let chart = bars(
            "c",
            "Replies <per> minute",
            &[
                Bar {
                    value: 2.0,
                    title: "a".into(),
                },
                Bar {
                    value: 4.0,
                    title: "<b>".into(),
                },
            ],
            "09:00",
            "10:00",
            count,
        )
        .into_string();
        assert_eq!(chart.matches("<rect").count(), 2);
        // The highest bar spans the plot (100 px), the other half of it.
        assert!(chart.contains("height=\"100.0\""), "{chart}");
        assert!(chart.contains("height=\"50.0\""), "{chart}");
        assert!(chart.contains("&lt;b&gt;") && !chart.contains("<b>"));
        assert!(chart.contains("Replies &lt;per&gt; minute"));
    }

    #[test]
    fn an_empty_chart_draws_no_bar() {
        let chart = bars("c", "t", &[], "", "", count).into_string();
        assert!(!chart.contains("<rect"));
    }
}
