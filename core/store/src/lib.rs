//! Persistence over sqlx's `Any` driver: one store, portable SQL, SQLite (embedded
//! default) or PostgreSQL chosen by the URL. Migrations are embedded per backend.
//!
//! Only core uses this module; surfaces reach data through core's services.

mod accounts;
mod admin;
mod api_keys;
mod audit;
mod bindings;
mod conversations;
mod identities;
mod ledger;
mod links;
mod runs;
mod tool_steps;

use accounts::ACCOUNT_COLUMNS_A;
pub use accounts::{Account, Role};
pub use admin::{AccountListing, AccountSort, RunFilter, RunListing};
pub use api_keys::{ApiKeyInfo, ApiKeyScope, KeyedAccount};
pub use audit::{Actor, AuditFilter, AuditKind, AuditRecord, Change};
pub use bindings::RenderState;
pub use conversations::{Conversation, Message, NewTurn};
pub use identities::{IdentityRecord, SsoFlow};
pub use ledger::{Admission, LedgerEntry, LedgerReason, UsageBucket, utc_date};
pub use links::{Identity, LinkOutcome};
pub use runs::{Checkpoint, Run, RunOutcome, RunStatus, TurnIds};

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor};
use std::sync::Once;
use std::time::Duration;

/// Which SQL engine sits behind the `Any` pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The state of the data refuses the write; the case says why.
    #[error(transparent)]
    Conflict(#[from] StoreConflict),
    /// A stored value that cannot be read back (a JSON column written by another version).
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// A run may not start now (balance, concurrency).
    #[error(transparent)]
    Refused(#[from] chorus_model::money::Refusal),
}

/// A write the stored state refuses, one case per rule. The messages are the ones
/// clients see (core maps each case to its own `Conflict`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreConflict {
    /// Account names are unique.
    #[error("an account named {name:?} already exists")]
    AccountNameTaken { name: String },
    /// The identity (`platform`, external id) already belongs to an account.
    #[error("the {platform} identity is already linked to an account")]
    IdentityLinked { platform: String },
    /// A conversation is not deleted while one of its replies is queued or streaming.
    #[error("a reply in this conversation is still going; stop it first")]
    ConversationReplyActive,
    /// A message is not continued while a run on it is queued or streaming.
    #[error("a run on this message is still going")]
    MessageRunActive,
    /// An account already has the most unused, unexpired link codes it may hold.
    #[error(
        "you already have {active} unused link codes; use one or wait until they expire (10 minutes)"
    )]
    TooManyLinkCodes { active: i64 },
    /// A link code redeemed by an identity of the account that issued it.
    #[error(
        "this code was issued by your own account; redeem it from the identity you want to link"
    )]
    OwnLinkCode,
    /// A link code redeemed by an identity whose account is no longer active.
    #[error("the account of this identity is not active and cannot be merged")]
    IdentityAccountInactive,
    /// An admin may not unlink an account's last identity: nothing could reach it.
    #[error("this is the account's last identity; delete the account instead")]
    LastIdentity,
    /// An account is not deleted while one of its runs is queued or streaming.
    #[error("a reply of this account is still going; stop it (or suspend the account) first")]
    AccountRunActive,
}

/// The database handle shared by every core service. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Micro-credits every new account starts with (`accounts.default_balance`).
    initial_balance: i64,
}

const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../../../migrations/sqlite/0001_initial.sql"),
    ),
    (
        2,
        "ledger",
        include_str!("../../../migrations/sqlite/0002_ledger.sql"),
    ),
    (
        3,
        "sso",
        include_str!("../../../migrations/sqlite/0003_sso.sql"),
    ),
    (
        4,
        "tools",
        include_str!("../../../migrations/sqlite/0004_tools.sql"),
    ),
    (
        5,
        "renders",
        include_str!("../../../migrations/sqlite/0005_renders.sql"),
    ),
    (
        6,
        "reservations",
        include_str!("../../../migrations/sqlite/0006_reservations.sql"),
    ),
    (
        7,
        "gateway_retention",
        include_str!("../../../migrations/sqlite/0007_gateway_retention.sql"),
    ),
    (
        8,
        "admin",
        include_str!("../../../migrations/sqlite/0008_admin.sql"),
    ),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../../../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "ledger",
        include_str!("../../../migrations/postgres/0002_ledger.sql"),
    ),
    (
        3,
        "sso",
        include_str!("../../../migrations/postgres/0003_sso.sql"),
    ),
    (
        4,
        "tools",
        include_str!("../../../migrations/postgres/0004_tools.sql"),
    ),
    (
        5,
        "renders",
        include_str!("../../../migrations/postgres/0005_renders.sql"),
    ),
    (
        6,
        "reservations",
        include_str!("../../../migrations/postgres/0006_reservations.sql"),
    ),
    (
        7,
        "gateway_retention",
        include_str!("../../../migrations/postgres/0007_gateway_retention.sql"),
    ),
    (
        8,
        "admin",
        include_str!("../../../migrations/postgres/0008_admin.sql"),
    ),
];

impl Store {
    /// Connects to `url` (creating a SQLite file and its directory when needed).
    /// Does not migrate: call [`Store::migrate`].
    pub async fn connect(url: &str, max_connections: Option<u32>) -> Result<Self, StoreError> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(install_default_drivers);
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let url = match backend {
            Backend::Sqlite => prepare_sqlite_url(url)?,
            Backend::Postgres => url.to_string(),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.unwrap_or(match backend {
                Backend::Sqlite => 8,
                Backend::Postgres => 16,
            }))
            .acquire_timeout(Duration::from_secs(30))
            .connect(&url)
            .await?;
        if backend == Backend::Sqlite {
            // WAL lets readers proceed while a run checkpoints; it persists in the file.
            pool.execute("PRAGMA journal_mode = WAL").await?;
        }
        Ok(Self {
            pool,
            backend,
            initial_balance: 0,
        })
    }

    /// Sets the micro-credits every account created from now on starts with.
    pub fn set_initial_balance(&mut self, micros: i64) {
        self.initial_balance = micros;
    }

    /// Applies the embedded migrations of this backend.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let source = match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS,
            Backend::Postgres => POSTGRES_MIGRATIONS,
        };
        let migrations = source
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    (*description).into(),
                    MigrationType::Simple,
                    sqlx::SqlSafeStr::into_sql_str(*sql),
                    false,
                )
            })
            .collect();
        let migrator = Migrator::with_migrations(migrations);
        migrator.run(&self.pool).await?;
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Starts a transaction that will write. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so it waits out a busy database instead of failing with
    /// "database is locked" when a read-then-write transaction would have to upgrade
    /// its lock after another connection committed.
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }
}

/// Makes sure a SQLite URL creates its file, and that the file's directory exists.
fn prepare_sqlite_url(url: &str) -> Result<String, StoreError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    if path != ":memory:"
        && let Some(dir) = std::path::Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
            path: dir.display().to_string(),
            source,
        })?;
    }
    Ok(match query {
        Some(q) if q.contains("mode=") => url.to_string(),
        Some(q) => format!("sqlite://{path}?{q}&mode=rwc"),
        None => format!("sqlite://{path}?mode=rwc"),
    })
}

/// Whether an error is a unique-constraint violation, portable across backends.
pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => db.is_unique_violation(),
        _ => false,
    }
}
