//! Persistence over sqlx's `Any` driver: one store, portable SQL, SQLite (embedded
//! default) or PostgreSQL chosen by the URL. Migrations are embedded per backend.
//!
//! Only core uses this module; surfaces reach data through core's services.

mod access;
mod access_groups;
mod accounts;
mod activity;
mod admin;
mod api_keys;
mod audit;
mod bindings;
mod conversations;
mod group_commit;
mod identities;
mod key_cache;
mod lanes;
mod ledger;
mod links;
mod marks;
mod read_lanes;
mod runs;
mod sessions;
mod stats;
mod tool_steps;
mod turn_context;
mod wal;

pub use access::{AccessResource, AccessRule};
pub use access_groups::{AccessGroup, GroupMember};
use accounts::ACCOUNT_COLUMNS_A;
pub use accounts::{Account, Role};
pub use admin::{AccountListing, AccountSort, RunFilter, RunListing};
pub use api_keys::{ApiKeyInfo, ApiKeyScope, KeyedAccount};
pub use audit::{Actor, AuditFilter, AuditKind, AuditRecord, Change};
pub use bindings::RenderState;
pub use conversations::{Conversation, Message, NewConversation, NewTurn};
pub use identities::{IdentityRecord, SsoFlow};
pub use ledger::{Admission, LedgerEntry, LedgerReason, UsageBucket, utc_date};
pub use links::{Identity, LinkOutcome};
pub use runs::{Checkpoint, Run, RunOutcome, RunStatus, TurnIds};
pub use sessions::SessionInfo;
pub use stats::{HOUR_MS, MINUTE_MS, ProviderStat, RunStatBucket};
pub use turn_context::TurnContext;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

/// Whether the store logs the timing of its batched writes and reads ([`set_timing`]).
static TIMING: AtomicBool = AtomicBool::new(false);

/// Turns on (or off) the timing of group commits and batched reads: each batch
/// logged at target `chorus_core::telemetry::timing` with its size, how long its
/// oldest entry waited in the queue, and how long applying and committing it (or
/// reading it) took (microseconds). Core calls it once at start when `[telemetry]
/// timing` is on.
pub fn set_timing(on: bool) {
    TIMING.store(on, Ordering::Relaxed);
}

/// Does `work`, a batch of `size` entries, the oldest queued at `oldest`; with
/// timing on, logs it as `KIND size=… wait=… DONE=…` ([`set_timing`]).
pub(crate) async fn timed_batch(
    kind: &str,
    done: &str,
    size: usize,
    oldest: Option<std::time::Instant>,
    work: impl std::future::Future<Output = ()>,
) {
    if !TIMING.load(Ordering::Relaxed) {
        return work.await;
    }
    let started = std::time::Instant::now();
    let waited = oldest.map_or(Duration::ZERO, |queued| started.duration_since(queued));
    work.await;
    tracing::info!(
        target: "chorus_core::telemetry::timing",
        "{kind} size={size} wait={} {done}={}",
        waited.as_micros(),
        started.elapsed().as_micros()
    );
}

/// A transaction on the store's pool, as `begin_write` opens it; the one name every
/// module's helpers that write inside a caller's transaction take.
pub(crate) type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// How many connections write PostgreSQL's batched new turns, each a transaction at
/// a time: while one lane commits (its WAL flush), the next applies the turns queued
/// meanwhile.
pub(crate) const TURN_LANES: usize = 2;

/// How many reads of new turns' conversations PostgreSQL runs at once, each for
/// every such read queued when it began (`read_lanes.rs`), on the shared pool.
pub(crate) const TURN_CONTEXT_LANES: usize = 2;

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
    /// Access group names are unique.
    #[error("an access group named {name:?} already exists")]
    AccessGroupNameTaken { name: String },
}

/// The connection pool's counts at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStats {
    pub size: u32,
    pub idle: u32,
    pub max: u32,
}

/// The database handle shared by every core service. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// Where write transactions run. On a SQLite file, one connection of its own: the
    /// pool queues writers in order (FIFO) instead of letting them poll SQLite's
    /// write lock with the busy handler's growing sleeps (up to 100 ms each), which
    /// is what a burst of admissions waited on. Elsewhere the same pool as reads.
    write_pool: AnyPool,
    /// On a SQLite file, the task that commits the per-run writes of concurrent runs
    /// (admissions and ends) in shared transactions on `write_pool`
    /// (`group_commit.rs`); `None` elsewhere.
    group: Option<group_commit::GroupCommit>,
    /// On PostgreSQL, the lanes that write new turns whose admission cannot refuse
    /// them in batches, on connections of their own ([`TURN_LANES`]); `None` elsewhere.
    turns: Option<group_commit::GroupCommit>,
    /// On PostgreSQL, the lanes that read new turns' conversations in batches
    /// ([`TURN_CONTEXT_LANES`]); `None` elsewhere.
    turn_contexts: Option<read_lanes::ReadLanes<turn_context::TurnContextReads>>,
    /// Where checkpoints are written: on PostgreSQL a connection of their own, so a
    /// busy instance's checkpoints (a transaction per 256 runs) never hold the
    /// connections a burst's requests read on; elsewhere `write_pool`.
    checkpoint_pool: AnyPool,
    /// On a SQLite file, what keeps its WAL checkpoint task going (`wal.rs`).
    _wal: Option<Arc<wal::Checkpointer>>,
    backend: Backend,
    /// Micro-credits every new account starts with (`accounts.default_balance`).
    initial_balance: i64,
    /// The accounts of recently used API keys (`key_cache.rs`), forgotten by every
    /// write of keys or accounts made through this store.
    keys: Arc<key_cache::KeyCache>,
    /// When this instance last wrote each account's last activity (`activity.rs`).
    activity: Arc<activity::ActivityMarks>,
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
    (
        10,
        "session_list",
        include_str!("../../../migrations/sqlite/0010_session_list.sql"),
    ),
    (
        11,
        "access",
        include_str!("../../../migrations/sqlite/0011_access.sql"),
    ),
    (
        12,
        "console_stats",
        include_str!("../../../migrations/sqlite/0012_console_stats.sql"),
    ),
    (
        13,
        "surface_marks",
        include_str!("../../../migrations/sqlite/0013_surface_marks.sql"),
    ),
    (
        15,
        "access_groups",
        include_str!("../../../migrations/sqlite/0015_access_groups.sql"),
    ),
    (
        16,
        "run_indexes",
        include_str!("../../../migrations/sqlite/0016_run_indexes.sql"),
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
    (
        10,
        "session_list",
        include_str!("../../../migrations/postgres/0010_session_list.sql"),
    ),
    (
        11,
        "access",
        include_str!("../../../migrations/postgres/0011_access.sql"),
    ),
    (
        12,
        "console_stats",
        include_str!("../../../migrations/postgres/0012_console_stats.sql"),
    ),
    (
        13,
        "surface_marks",
        include_str!("../../../migrations/postgres/0013_surface_marks.sql"),
    ),
    (
        15,
        "access_groups",
        include_str!("../../../migrations/postgres/0015_access_groups.sql"),
    ),
    (
        16,
        "run_indexes",
        include_str!("../../../migrations/postgres/0016_run_indexes.sql"),
    ),
    (
        17,
        "runs_fillfactor",
        include_str!("../../../migrations/postgres/0017_runs_fillfactor.sql"),
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
        let pool = pool_options(backend)
            .max_connections(max_connections.unwrap_or(match backend {
                Backend::Sqlite => sqlite_readers(),
                Backend::Postgres => 16,
            }))
            .connect(&url)
            .await?;
        let (turns, checkpoint_pool) = match backend {
            Backend::Postgres => {
                let lanes = pool_options(backend)
                    .max_connections(TURN_LANES as u32)
                    .connect(&url)
                    .await?;
                let checkpoints = pool_options(backend)
                    .max_connections(1)
                    .connect(&url)
                    .await?;
                let turns = group_commit::GroupCommit::start(lanes, backend, TURN_LANES);
                (Some(turns), Some(checkpoints))
            }
            Backend::Sqlite => (None, None),
        };
        let (write_pool, group) = match backend {
            Backend::Sqlite if !url.contains(":memory:") && !url.contains("mode=memory") => {
                // WAL lets readers proceed while a transaction writes; it persists in
                // the file, so it is set once, before the writer connects.
                pool.execute("PRAGMA journal_mode = WAL").await?;
                let writer = pool_options(backend)
                    .max_connections(1)
                    .connect(&url)
                    .await?;
                let group = group_commit::GroupCommit::start(writer.clone(), backend, 1);
                let wal = Arc::new(wal::start(pool.clone()));
                (writer, Some((group, wal)))
            }
            _ => (pool.clone(), None),
        };
        let (group, wal) = group.unzip();
        let turn_contexts = (backend == Backend::Postgres)
            .then(|| read_lanes::ReadLanes::start(pool.clone(), TURN_CONTEXT_LANES));
        Ok(Self {
            turn_contexts,
            pool,
            checkpoint_pool: checkpoint_pool.unwrap_or_else(|| write_pool.clone()),
            write_pool,
            group,
            turns,
            _wal: wal,
            backend,
            initial_balance: 0,
            keys: Arc::default(),
            activity: Arc::default(),
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
        if let Some(turns) = &self.turns {
            turns.close().await;
        }
        self.checkpoint_pool.close().await;
        self.write_pool.close().await;
        self.pool.close().await;
    }

    /// The pool as it stands: connections open, of which idle, and the most it opens
    /// (for metrics).
    pub fn pool_stats(&self) -> PoolStats {
        PoolStats {
            size: self.pool.size(),
            idle: self.pool.num_idle() as u32,
            max: self.pool.options().get_max_connections(),
        }
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Starts a transaction that will write. On SQLite it runs on the one writer
    /// connection (queued in order behind the writes before it) and takes the write
    /// lock at once (`BEGIN IMMEDIATE`), so it never has to upgrade a read lock after
    /// another connection committed ("database is locked").
    pub(crate) async fn begin_write(&self) -> Result<Tx, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.write_pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.write_pool.begin().await,
        }
    }

    /// Starts a transaction that writes checkpoints: on PostgreSQL on their own
    /// connection, elsewhere as [`Store::begin_write`].
    pub(crate) async fn begin_checkpoint(&self) -> Result<Tx, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.begin_write().await,
            Backend::Postgres => self.checkpoint_pool.begin().await,
        }
    }

    /// Runs `write` in a write transaction and commits it: on a SQLite file in the
    /// next group commit (shared with the writes of other runs waiting at that
    /// moment; a batch where any write fails runs each of its writes alone), else in
    /// a transaction of its own. `write` must fail before writing anything it would
    /// not want committed: its error rolls its transaction back.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        write: group_commit::WriteFn<T>,
    ) -> Result<T, StoreError> {
        if let Some(group) = &self.group {
            return group.write(write).await;
        }
        let mut tx = self.begin_write().await?;
        let value = write(&mut tx).await?;
        tx.commit().await?;
        Ok(value)
    }

    /// Whether a write admitting a run of `account` is to write its last activity
    /// where that is a statement of its own (PostgreSQL), this instance not having
    /// written it in the last minute (`activity.rs`); marks it written if so.
    pub(crate) fn activity_due(&self, account: &chorus_model::ids::AccountId) -> bool {
        self.backend == Backend::Postgres
            && self.activity.due(account, chorus_model::time::now_ms())
    }

    /// [`Store::write`] of a write that a batch applies together with the writes of
    /// its kind queued next to it, in set-based statements
    /// ([`group_commit::ApplyMany`]): every such write on a SQLite file, a combinable
    /// one on PostgreSQL (on the turn lanes); elsewhere in a transaction of its own.
    pub(crate) async fn write_many<W: group_commit::ApplyMany>(
        &self,
        write: W,
    ) -> Result<(), StoreError> {
        if let Some(group) = &self.group {
            return group.write_many(write).await;
        }
        if let Some(turns) = self.turns.as_ref().filter(|_| write.combinable()) {
            return turns.write_many(write).await;
        }
        let mut tx = self.begin_write().await?;
        group_commit::Apply::apply(&write, &mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether writes are applied in the order they are queued, by one writer (the
    /// SQLite backend's group commit): a write queued before another is committed
    /// first, whichever caller awaits.
    pub fn orders_writes(&self) -> bool {
        self.group.is_some()
    }

    /// [`Store::write`] queued at once where writes are ordered
    /// ([`Store::orders_writes`]): the write then precedes every write queued after
    /// this call returns. Elsewhere the write starts when the future is polled.
    pub(crate) fn write_queued<T: Send + 'static>(
        &self,
        write: group_commit::WriteFn<T>,
    ) -> futures::future::BoxFuture<'static, Result<T, StoreError>> {
        use futures::FutureExt;
        if let Some(group) = &self.group {
            return match group.enqueue(write) {
                Ok(answer) => answer.boxed(),
                Err(e) => futures::future::ready(Err(e)).boxed(),
            };
        }
        let store = self.clone();
        async move { store.write(write).await }.boxed()
    }
}

/// Pool settings of a backend. Every SQLite connection runs with `synchronous =
/// NORMAL`: in WAL mode a commit is then written to the WAL without an fsync of its
/// own (the WAL is synced at checkpoints), so a commit survives a crash or `kill -9`
/// of the process and only an OS crash or power loss can lose the last commits —
/// where `FULL` (the default) paid an fsync per commit, the cost of every admission.
/// No commit checkpoints the WAL: one task does, every 250 ms, off the writer
/// (`wal.rs`). `busy_timeout = 5000`: a connection waits up to 5 s for another's write lock
/// before failing with "database is locked" (single-statement writes outside
/// [`Store::begin_write`] meet the writer connection there). Statements are prepared
/// once per connection and reused (sqlx's statement cache, 100 per connection).
fn pool_options(backend: Backend) -> AnyPoolOptions {
    let options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(30));
    match backend {
        Backend::Postgres => options,
        Backend::Sqlite => options.after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute("PRAGMA synchronous = NORMAL").await?;
                conn.execute("PRAGMA busy_timeout = 5000").await?;
                conn.execute(sqlx::AssertSqlSafe(wal::connection_pragmas()))
                    .await?;
                Ok(())
            })
        }),
    }
}

/// The default number of SQLite reader connections: twice the cores, at least two.
/// Each connection is a thread of its own; in a burst every one of them is runnable,
/// and beyond about two per core they only take CPU turns from the writer and the
/// async workers (a burst of 1,000 messages on 2 cores reached its first events
/// sooner with 4 readers than with 8: README.md, "Fewer reads per message").
fn sqlite_readers() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (2 * cores).clamp(2, 64) as u32
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
