//! The audit log as an admin reads it (filtered pages, CSV export) and the overview
//! of the deployment (replies streaming now, spend today and this month, surfaces,
//! activity, providers).

use super::Admin;
use super::stats::{Activity, ProviderSummary};
use crate::core::{Core, CoreError, SurfaceStatus};
use chorus_model::time::now_ms;
use chorus_store::{AuditFilter, AuditRecord, utc_date};
use serde::Serialize;

/// Most rows one CSV export holds.
const CSV_ROWS: i64 = 10_000;
const DAY_MS: i64 = 86_400_000;

/// The console's first page.
#[derive(Clone, Debug, Serialize)]
pub struct Overview {
    /// Runs queued or streaming now, on every instance.
    pub streaming_now: i64,
    /// Micro-credits charged since 00:00 UTC.
    pub spend_today: i64,
    /// Micro-credits charged since the first of the month (UTC).
    pub spend_month: i64,
    pub surfaces: Vec<SurfaceStatus>,
    /// Replies, tokens and errors per minute, hour and day, on every instance.
    pub activity: Activity,
    /// Each provider's health over every instance.
    pub providers: Vec<ProviderSummary>,
}

impl Core {
    /// Audit entries matching `filter`, newest first.
    pub async fn audit_log(
        &self,
        _: &Admin,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditRecord>, CoreError> {
        Ok(self.store.audit_log(filter).await?)
    }

    /// The entries matching `filter` (at most 10,000, newest first) as CSV.
    pub async fn audit_csv(
        &self,
        admin: &Admin,
        filter: &AuditFilter,
    ) -> Result<String, CoreError> {
        let filter = AuditFilter {
            limit: CSV_ROWS,
            ..filter.clone()
        };
        let rows = self.audit_log(admin, &filter).await?;
        Ok(to_csv(&rows))
    }

    /// Replies streaming now, spend today and this month, surfaces and providers.
    pub async fn overview(&self, admin: &Admin) -> Result<Overview, CoreError> {
        let now = now_ms();
        let today = now.div_euclid(DAY_MS);
        // `YYYY-MM-DD`: the day of the month says how far back the month began.
        let day_of_month: i64 = utc_date(today)[8..].parse().unwrap_or(1);
        let month_start = (today - (day_of_month - 1)) * DAY_MS;
        Ok(Overview {
            streaming_now: self.store.active_run_count().await?,
            spend_today: self.store.spend_since(today * DAY_MS).await?,
            spend_month: self.store.spend_since(month_start).await?,
            surfaces: self.surface_states(),
            activity: self.activity(admin).await?,
            providers: self.providers_across_instances(admin).await?,
        })
    }
}

/// RFC 4180 CSV; cells that a spreadsheet would run as a formula get a leading `'`.
fn to_csv(rows: &[AuditRecord]) -> String {
    let mut out = String::from(
        "created_at_ms,date_utc,kind,actor_id,actor_name,action,object_type,object_id,before,after\r\n",
    );
    for r in rows {
        let json =
            |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string()).unwrap_or_default();
        let cells = [
            r.created_at.to_string(),
            utc_date(r.created_at.div_euclid(DAY_MS)),
            r.kind.clone(),
            r.actor_id.clone().unwrap_or_default(),
            r.actor_name.clone(),
            r.action.clone(),
            r.object_type.clone(),
            r.object_id.clone().unwrap_or_default(),
            json(&r.before),
            json(&r.after),
        ];
        let line: Vec<String> = cells.iter().map(|c| cell(c)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

fn cell(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_string()
    };
    if value.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::cell;

    #[test]
    fn cells_are_quoted_and_defused() {
        assert_eq!(cell("plain"), "plain");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("=SUM(A1)"), "'=SUM(A1)");
        assert_eq!(cell("-5"), "'-5");
    }
}
