//! `/metrics` scraped and parsed as the Prometheus text format (by `prometheus-parse`),
//! so tests read values by name and labels rather than matching strings.

use anyhow::{Context, Result, bail};
use prometheus_parse::{Scrape, Value};

/// One scrape of a metrics endpoint.
pub struct Metrics(Scrape);

impl Metrics {
    /// `GET url`, with `token` as a bearer token when given.
    pub async fn scrape(url: &str, token: Option<&str>) -> Result<Self> {
        let mut request = reqwest::Client::new().get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.with_context(|| format!("GET {url}"))?;
        if !response.status().is_success() {
            bail!("GET {url}: HTTP {}", response.status());
        }
        let text = response.text().await?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self> {
        let lines = text.lines().map(|l| Ok(l.to_string()));
        Ok(Self(Scrape::parse(lines)?))
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a prometheus_parse::Sample> + 'a {
        self.0.samples.iter().filter(move |s| {
            s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
    }

    /// Whether any sample of `name` exists.
    pub fn has(&self, name: &str) -> bool {
        self.matching(name, &[]).next().is_some()
    }

    /// The sum of the counters or gauges named `name` whose labels include `labels`
    /// (0 when none matches).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels)
            .map(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                _ => 0.0,
            })
            .sum()
    }

    /// The number of observations of the histograms named `name` whose labels include
    /// `labels` (their `+Inf` buckets, added up).
    pub fn count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels)
            .map(|s| match &s.value {
                Value::Histogram(buckets) => buckets
                    .iter()
                    .filter(|b| b.less_than.is_infinite())
                    .map(|b| b.count)
                    .sum(),
                _ => 0.0,
            })
            .sum()
    }

    /// The label sets of the samples named `name`, for messages.
    pub fn describe(&self, name: &str) -> String {
        self.matching(name, &[])
            .map(|s| format!("{:?}={:?}", *s.labels, s.value))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
