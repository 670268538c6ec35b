//! The real services the suite runs against: a fresh PostgreSQL database and a unique
//! Redis key prefix per test, so tests run in parallel without seeing each other.
//!
//! An unreachable service is a failure that names the service and the variable to
//! set, never a silent skip: a green run must mean the suite really ran.

use anyhow::{Context, Result, anyhow};
use serde_json::Value;
use sqlx::Connection;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use std::time::Duration;

/// Admin URL of the PostgreSQL server tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("CHORUS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// URL of the Redis server tests use.
pub fn redis_url() -> String {
    std::env::var("CHORUS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// `url` with its password masked, for error messages.
fn shown(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("****"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// A database created for one test and dropped (with its connections) afterwards.
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates `chorus_test_<uuid>` on the server of `CHORUS_TEST_POSTGRES_URL`.
    pub async fn create() -> Result<Self> {
        Self::create_on(&postgres_admin_url()).await
    }

    /// Creates `chorus_test_<uuid>` on the server of `admin_url` (a private server).
    pub async fn create_on(admin_url: &str) -> Result<Self> {
        let admin_url = admin_url.to_string();
        let unreachable = || {
            format!(
                "PostgreSQL is not reachable at {} (set CHORUS_TEST_POSTGRES_URL to a server \
                 this suite may create databases on)",
                shown(&admin_url)
            )
        };
        let mut admin =
            tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(&admin_url))
                .await
                .map_err(|_| anyhow!("connection timed out"))
                .with_context(unreachable)?
                .with_context(unreachable)?;
        let name = format!("chorus_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .with_context(|| format!("PostgreSQL: cannot create database {name}"))?;
        let _ = admin.close().await;
        let mut url = url::Url::parse(&admin_url).with_context(|| {
            format!(
                "CHORUS_TEST_POSTGRES_URL is not a URL: {}",
                shown(&admin_url)
            )
        })?;
        url.set_path(&format!("/{name}"));
        Ok(Self {
            admin_url,
            name,
            url: url.to_string(),
        })
    }

    /// The URL servers under test connect to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A small pool on this database, for white-box checks of what the server stored.
    pub async fn pool(&self) -> Result<PgPool> {
        PgPoolOptions::new()
            .max_connections(2)
            .connect(&self.url)
            .await
            .with_context(|| format!("PostgreSQL: cannot connect to test database {}", self.name))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Best effort, on a thread of its own: Drop may run inside an async runtime.
        let admin_url = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let handle = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&mut conn)
                        .await;
                    let _ = conn.close().await;
                }
            });
        });
        let _ = handle.join();
    }
}

/// A Redis key prefix of one test (`chorus_test:<uuid>:`); its keys are deleted
/// afterwards.
pub struct TestRedis {
    url: String,
    prefix: String,
    client: redis::Client,
}

impl TestRedis {
    /// Checks that Redis answers PING and picks a fresh key prefix.
    pub async fn new() -> Result<Self> {
        let url = redis_url();
        let unreachable = || {
            format!(
                "Redis is not reachable at {} (set CHORUS_TEST_REDIS_URL to a Redis server)",
                shown(&url)
            )
        };
        let client = redis::Client::open(url.as_str()).with_context(unreachable)?;
        let ping = async {
            let mut conn = client.get_multiplexed_async_connection().await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await
        };
        tokio::time::timeout(Duration::from_secs(10), ping)
            .await
            .map_err(|_| anyhow!("connection timed out"))
            .with_context(unreachable)?
            .with_context(unreachable)?;
        Ok(Self {
            prefix: format!("chorus_test:{}:", uuid::Uuid::new_v4().simple()),
            url,
            client,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The events the journal holds for `run`, read straight from its Redis stream
    /// (`{prefix}run:{id}`, entry ids `0-SEQ`, the event JSON in field `e`).
    pub async fn journal_events(&self, run: &str) -> Result<Vec<(u64, Value)>> {
        let mut conn = self.client.get_multiplexed_async_connection().await?;
        let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg(format!("{}run:{run}", self.prefix))
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await
            .context("Redis: XRANGE of the run's journal")?;
        entries
            .into_iter()
            .map(|(id, fields)| {
                let seq = id
                    .strip_prefix("0-")
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| anyhow!("journal entry id {id} is not 0-SEQ"))?;
                let json = fields
                    .iter()
                    .find(|(k, _)| k == "e")
                    .map(|(_, v)| v.as_str())
                    .ok_or_else(|| anyhow!("journal entry {id} has no `e` field"))?;
                Ok((seq, serde_json::from_str(json)?))
            })
            .collect()
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let Ok(mut conn) = self
            .client
            .get_connection_with_timeout(Duration::from_secs(2))
        else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query(&mut conn)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<i64, _> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}
