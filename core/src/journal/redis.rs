//! The Redis Streams journal, shared by every instance of a deployment.
//!
//! Each run is a stream `{prefix}run:{id}` whose entry ids are `0-{seq}`, so "events
//! after seq N" is an exclusive XRANGE from `0-N`. Live delivery: one tailer task per
//! instance runs a blocking XREAD over every run that local readers follow and fans
//! entries out through broadcast channels. A reader subscribes first, then reads the
//! backlog, then takes live entries, skipping what it has and refilling any gap with
//! XRANGE, so it never misses or repeats an event.
//!
//! Run starts are announced on one small shared stream, `{prefix}run-starts` (trimmed
//! to about [`RUN_STARTS_MAXLEN`] entries, one per run start, never per token). Each
//! instance reads it with a blocking XREAD on its own connection, from the last entry
//! there when it connected, and fans the announcements out locally.

use super::{
    EntryStream, Journal, JournalEntry, JournalError, RUN_STARTS_BUFFER, RunEvent, RunStartStream,
    RunStarted, run_start_stream,
};
use chorus_model::ids::{ConversationId, RunId};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, broadcast};

/// How long one XREAD of the tailer blocks; a new follow interrupts it at once.
const TAIL_BLOCK_MS: usize = 5_000;
/// About how many run starts the shared announcement stream keeps (readers only need
/// the few since their last read).
const RUN_STARTS_MAXLEN: usize = 10_000;
/// How long a command's answer may take before it is called lost. The library's
/// default (500 ms) turns a busy moment of this process into broken streams and 500s;
/// the commands are cheap, so only a dead Redis is slow.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct RedisJournal {
    inner: Arc<Inner>,
}

struct Inner {
    conn: MultiplexedConnection,
    prefix: String,
    retention_secs: u64,
    follows: Mutex<HashMap<RunId, Follow>>,
    wake: Notify,
    tailer_client_id: Mutex<Option<i64>>,
    run_starts: broadcast::Sender<RunStarted>,
}

struct Follow {
    /// Last seq the tailer has broadcast.
    cursor: u64,
    /// When the first reader registered (Unix µs): entries appended since then are
    /// live, and their delivery counts in the fan-out latency.
    since_us: u64,
    finished: bool,
    readers: usize,
    tx: broadcast::Sender<Arc<JournalEntry>>,
}

impl RedisJournal {
    /// Connects and starts the tailer task (stopped when the journal is dropped).
    pub async fn connect(
        url: &str,
        prefix: &str,
        retention: Duration,
    ) -> Result<Self, JournalError> {
        Self::connect_with_timeout(url, prefix, retention, RESPONSE_TIMEOUT).await
    }

    /// [`RedisJournal::connect`] with another response timeout for the commands of
    /// the writer and readers (not the blocking reads of the tailers): tests make it
    /// tiny to lose answers of commands that did land.
    pub async fn connect_with_timeout(
        url: &str,
        prefix: &str,
        retention: Duration,
        response_timeout: Duration,
    ) -> Result<Self, JournalError> {
        let client = Client::open(url)?;
        let conn_config = AsyncConnectionConfig::new().set_response_timeout(Some(response_timeout));
        let conn = client
            .get_multiplexed_async_connection_with_config(&conn_config)
            .await?;
        let inner = Arc::new(Inner {
            conn,
            prefix: prefix.to_string(),
            retention_secs: retention.as_secs().max(1),
            follows: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            tailer_client_id: Mutex::new(None),
            run_starts: broadcast::channel(RUN_STARTS_BUFFER).0,
        });
        // The blocking reads wait up to TAIL_BLOCK_MS for an answer, so their
        // connections wait that long and more before calling the answer lost.
        let tail_config = AsyncConnectionConfig::new()
            .set_response_timeout(Some(Duration::from_millis(TAIL_BLOCK_MS as u64 + 5_000)));
        let tail_conn = client
            .get_multiplexed_async_connection_with_config(&tail_config)
            .await?;
        tokio::spawn(tail(Arc::downgrade(&inner), tail_conn));
        let mut starts_conn = client
            .get_multiplexed_async_connection_with_config(&tail_config)
            .await?;
        // Announcements from now on: read after the stream's last entry at connection,
        // so none made once `connect` has returned is missed.
        let last: Value = redis::cmd("XREVRANGE")
            .arg(inner.run_starts_key())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut starts_conn)
            .await?;
        let from = parse_announcements(last)
            .first()
            .map_or_else(|| "0-0".to_string(), |(id, _)| id.clone());
        tokio::spawn(tail_run_starts(Arc::downgrade(&inner), starts_conn, from));
        Ok(Self { inner })
    }
}

impl Inner {
    fn key(&self, run: &RunId) -> String {
        format!("{}run:{}", self.prefix, run)
    }

    fn run_starts_key(&self) -> String {
        format!("{}run-starts", self.prefix)
    }

    async fn range(&self, run: &RunId, after: u64) -> Result<Vec<JournalEntry>, JournalError> {
        let reply: Value = redis::cmd("XRANGE")
            .arg(self.key(run))
            .arg(format!("(0-{after}"))
            .arg("+")
            .query_async(&mut self.conn.clone())
            .await?;
        parse_entries(reply)
    }

    /// The entry at `seq`, if the stream holds one.
    async fn entry_at(&self, run: &RunId, seq: u64) -> Result<Option<JournalEntry>, JournalError> {
        let reply: Value = redis::cmd("XRANGE")
            .arg(self.key(run))
            .arg(format!("0-{seq}"))
            .arg(format!("0-{seq}"))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(parse_entries(reply)?.pop())
    }

    /// The seq of the stream's last entry (0 when it has none).
    async fn last_seq(&self, run: &RunId) -> Result<u64, JournalError> {
        let reply: Value = redis::cmd("XREVRANGE")
            .arg(self.key(run))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(parse_entries(reply)?.first().map_or(0, |e| e.seq))
    }

    /// Whether the run's last event is `finished` with a seq at or before `seq`.
    async fn finished_at_or_before(&self, run: &RunId, seq: u64) -> Result<bool, JournalError> {
        let reply: Value = redis::cmd("XREVRANGE")
            .arg(self.key(run))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(parse_entries(reply)?
            .first()
            .is_some_and(|e| e.event.is_finished() && e.seq <= seq))
    }

    /// Registers a reader of `run`; returns its live receiver.
    async fn register(&self, run: &RunId, after: u64) -> broadcast::Receiver<Arc<JournalEntry>> {
        let (rx, new) = {
            let mut follows = self.follows.lock().unwrap_or_else(|e| e.into_inner());
            let mut new = false;
            let follow = follows.entry(run.clone()).or_insert_with(|| {
                new = true;
                Follow {
                    cursor: after,
                    since_us: unix_micros(),
                    finished: false,
                    readers: 0,
                    tx: broadcast::channel(1024).0,
                }
            });
            follow.readers += 1;
            (follow.tx.subscribe(), new)
        };
        if new {
            self.wake.notify_one();
            let id = *self
                .tailer_client_id
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(id) = id {
                // Cut the tailer's current XREAD short so it includes this run now.
                let _: Result<Value, _> = redis::cmd("CLIENT")
                    .arg("UNBLOCK")
                    .arg(id)
                    .query_async(&mut self.conn.clone())
                    .await;
            }
        }
        rx
    }

    fn unregister(&self, run: &RunId) {
        let mut follows = self.follows.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = follows.get_mut(run) {
            f.readers -= 1;
            if f.readers == 0 {
                follows.remove(run);
            }
        }
    }
}

/// Parses an XRANGE/XREAD entry list: `[[id, [field, value, ...]], ...]`.
fn parse_entries(reply: Value) -> Result<Vec<JournalEntry>, JournalError> {
    let items = match reply {
        Value::Array(items) => items,
        Value::Nil => return Ok(Vec::new()),
        other => return Err(JournalError::Corrupt(format!("unexpected reply {other:?}"))),
    };
    items.into_iter().map(parse_entry).collect()
}

fn parse_entry(item: Value) -> Result<JournalEntry, JournalError> {
    parse_timed_entry(item).map(|(entry, _)| entry)
}

/// Parses an entry list with each entry's append time (field `t`, Unix µs; entries
/// written before it existed have none).
fn parse_timed_entries(reply: Value) -> Result<Vec<(JournalEntry, Option<u64>)>, JournalError> {
    let items = match reply {
        Value::Array(items) => items,
        Value::Nil => return Ok(Vec::new()),
        other => return Err(JournalError::Corrupt(format!("unexpected reply {other:?}"))),
    };
    items.into_iter().map(parse_timed_entry).collect()
}

/// The time now in Unix microseconds (0 if the clock is before 1970).
fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn parse_timed_entry(item: Value) -> Result<(JournalEntry, Option<u64>), JournalError> {
    let corrupt = |what: &str| JournalError::Corrupt(what.to_string());
    let Value::Array(mut parts) = item else {
        return Err(corrupt("entry is not an array"));
    };
    if parts.len() != 2 {
        return Err(corrupt("entry is not [id, fields]"));
    }
    let fields = parts.pop().unwrap_or(Value::Nil);
    let id: String = redis::from_redis_value(parts.pop().unwrap_or(Value::Nil))
        .map_err(|e| JournalError::Corrupt(format!("entry id: {e}")))?;
    let seq = id
        .strip_prefix("0-")
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| JournalError::Corrupt(format!("entry id {id} is not 0-SEQ")))?;
    let fields: Vec<String> = redis::from_redis_value(fields)
        .map_err(|e| JournalError::Corrupt(format!("entry fields: {e}")))?;
    let json = fields
        .chunks(2)
        .find(|kv| kv[0] == "e")
        .and_then(|kv| kv.get(1))
        .ok_or_else(|| corrupt("entry has no `e` field"))?;
    let event: RunEvent = serde_json::from_str(json)
        .map_err(|e| JournalError::Corrupt(format!("entry {id}: {e}")))?;
    let appended_us = fields
        .chunks(2)
        .find(|kv| kv[0] == "t")
        .and_then(|kv| kv.get(1))
        .and_then(|t| t.parse().ok());
    Ok((JournalEntry { seq, event }, appended_us))
}

/// The tailer: one blocking XREAD over every followed, unfinished run.
async fn tail(inner: std::sync::Weak<Inner>, mut conn: MultiplexedConnection) {
    let my_id: Result<i64, _> = redis::cmd("CLIENT").arg("ID").query_async(&mut conn).await;
    if let (Ok(id), Some(journal)) = (&my_id, inner.upgrade()) {
        *journal
            .tailer_client_id
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(*id);
    }
    loop {
        let Some(journal) = inner.upgrade() else {
            return;
        };
        let targets: Vec<(RunId, u64)> = {
            let follows = journal.follows.lock().unwrap_or_else(|e| e.into_inner());
            follows
                .iter()
                .filter(|(_, f)| !f.finished)
                .map(|(run, f)| (run.clone(), f.cursor))
                .collect()
        };
        if targets.is_empty() {
            // Re-check now and then so a dropped journal ends this task.
            let _ = tokio::time::timeout(Duration::from_secs(5), journal.wake.notified()).await;
            continue;
        }
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(1000)
            .arg("BLOCK")
            .arg(TAIL_BLOCK_MS)
            .arg("STREAMS");
        for (run, _) in &targets {
            cmd.arg(journal.key(run));
        }
        for (_, cursor) in &targets {
            cmd.arg(format!("0-{cursor}"));
        }
        drop(journal);
        let reply: Result<Value, _> = cmd.query_async(&mut conn).await;
        let Some(journal) = inner.upgrade() else {
            return;
        };
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "journal tailer: XREAD failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        dispatch(&journal, reply);
    }
}

/// Broadcasts what one XREAD returned to the local readers of each run.
fn dispatch(journal: &Inner, reply: Value) {
    let Value::Array(streams) = reply else { return };
    let key_prefix = format!("{}run:", journal.prefix);
    for stream in streams {
        let (key, entries) = match stream {
            Value::Array(mut kv) if kv.len() == 2 => {
                let entries = kv.pop().unwrap_or(Value::Nil);
                let key: Result<String, _> =
                    redis::from_redis_value(kv.pop().unwrap_or(Value::Nil));
                (key, entries)
            }
            // RESP3 servers answer with a map of key -> entries.
            _ => continue,
        };
        let Ok(key) = key else { continue };
        let Some(run) = key
            .strip_prefix(&key_prefix)
            .map(|r| RunId::from_stored(r.to_string()))
        else {
            continue;
        };
        let entries = match parse_timed_entries(entries) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, run = %run, "journal tailer: skipping corrupt entries");
                continue;
            }
        };
        let mut follows = journal.follows.lock().unwrap_or_else(|e| e.into_inner());
        let Some(follow) = follows.get_mut(&run) else {
            continue;
        };
        let now_us = unix_micros();
        for (entry, appended_us) in entries {
            if entry.seq <= follow.cursor {
                continue;
            }
            // Live entries only (not the backlog a new reader's XREAD brings); the
            // writer may be another instance, so this is wall-clock time.
            if let Some(t) = appended_us.filter(|t| *t >= follow.since_us) {
                crate::telemetry::metrics::journal_fanout()
                    .record(Duration::from_micros(now_us.saturating_sub(t)));
            }
            follow.cursor = entry.seq;
            follow.finished |= entry.event.is_finished();
            let _ = follow.tx.send(Arc::new(entry));
        }
    }
}

/// Parses the entries of the announcement stream: `(entry id, announcement)`, skipping
/// (and logging) any that does not hold a conversation and a run.
fn parse_announcements(reply: Value) -> Vec<(String, Option<RunStarted>)> {
    let Value::Array(items) = reply else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let Value::Array(mut parts) = item else {
            continue;
        };
        if parts.len() != 2 {
            continue;
        }
        let fields = parts.pop().unwrap_or(Value::Nil);
        let Ok(id) = redis::from_redis_value::<String>(parts.pop().unwrap_or(Value::Nil)) else {
            continue;
        };
        let fields: Vec<String> = redis::from_redis_value(fields).unwrap_or_default();
        let field = |name: &str| {
            fields
                .chunks(2)
                .find(|kv| kv[0] == name)
                .and_then(|kv| kv.get(1))
                .cloned()
        };
        let started = match (field("c"), field("r")) {
            (Some(c), Some(r)) => Some(RunStarted {
                conversation_id: ConversationId::from_stored(c),
                run_id: RunId::from_stored(r),
            }),
            _ => {
                tracing::warn!(entry = %id, "journal: skipping a corrupt run-start announcement");
                None
            }
        };
        out.push((id, started));
    }
    out
}

/// The announcement reader: one blocking XREAD of the shared stream after the last
/// entry read, each announcement broadcast to this instance's subscribers.
async fn tail_run_starts(
    inner: std::sync::Weak<Inner>,
    mut conn: MultiplexedConnection,
    mut last_id: String,
) {
    loop {
        let Some(journal) = inner.upgrade() else {
            return;
        };
        let key = journal.run_starts_key();
        drop(journal);
        let reply: Result<Value, _> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1000)
            .arg("BLOCK")
            .arg(TAIL_BLOCK_MS)
            .arg("STREAMS")
            .arg(&key)
            .arg(&last_id)
            .query_async(&mut conn)
            .await;
        let Some(journal) = inner.upgrade() else {
            return;
        };
        let streams = match reply {
            Ok(Value::Array(streams)) => streams,
            Ok(_) => continue, // timed out: nothing new
            Err(e) => {
                tracing::warn!(error = %e, "journal: reading run starts failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        for stream in streams {
            let Value::Array(mut kv) = stream else {
                continue;
            };
            let entries = kv.pop().unwrap_or(Value::Nil);
            for (id, started) in parse_announcements(entries) {
                last_id = id;
                if let Some(started) = started {
                    // No subscriber is no error: nobody shows runs on this instance.
                    let _ = journal.run_starts.send(started);
                }
            }
        }
    }
}

struct ReaderState {
    inner: Arc<Inner>,
    run: RunId,
    cursor: u64,
    rx: Option<broadcast::Receiver<Arc<JournalEntry>>>,
    buffer: VecDeque<JournalEntry>,
    done: bool,
    /// Set after a refill for a gap; a gap that survives the refill is real (the
    /// writer lost an append) and is stepped over rather than retried forever.
    gap_refilled: bool,
}

impl Drop for ReaderState {
    fn drop(&mut self) {
        if self.rx.is_some() {
            self.inner.unregister(&self.run);
        }
    }
}

impl ReaderState {
    async fn refill(&mut self) -> Result<(), JournalError> {
        let entries = self.inner.range(&self.run, self.cursor).await?;
        self.buffer.clear();
        self.buffer.extend(entries);
        Ok(())
    }

    async fn next(&mut self) -> Option<Result<JournalEntry, JournalError>> {
        loop {
            if self.done {
                return None;
            }
            if self.rx.is_none() {
                // Subscribe before reading the backlog so nothing falls between them.
                self.rx = Some(self.inner.register(&self.run, self.cursor).await);
                if let Err(e) = self.refill().await {
                    self.done = true;
                    return Some(Err(e));
                }
                if self.buffer.is_empty() {
                    match self
                        .inner
                        .finished_at_or_before(&self.run, self.cursor)
                        .await
                    {
                        Ok(true) => {
                            self.done = true;
                            return None;
                        }
                        Ok(false) => {}
                        Err(e) => {
                            self.done = true;
                            return Some(Err(e));
                        }
                    }
                }
            }
            if let Some(entry) = self.buffer.pop_front() {
                if entry.seq <= self.cursor {
                    continue;
                }
                if entry.seq > self.cursor + 1 && !self.gap_refilled {
                    // A gap (missed broadcast): read it from the stream.
                    self.gap_refilled = true;
                    if let Err(e) = self.refill().await {
                        self.done = true;
                        return Some(Err(e));
                    }
                    continue;
                }
                self.gap_refilled = false;
                self.cursor = entry.seq;
                self.done = entry.event.is_finished();
                return Some(Ok(entry));
            }
            let rx = self.rx.as_mut()?;
            match rx.recv().await {
                Ok(entry) => self.buffer.push_back((*entry).clone()),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    if let Err(e) = self.refill().await {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
                Err(broadcast::error::RecvError::Closed) => {
                    self.done = true;
                    return None;
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl Journal for RedisJournal {
    async fn append(&self, run: &RunId, entry: JournalEntry) -> Result<(), JournalError> {
        let key = self.inner.key(run);
        let json = serde_json::to_string(&entry.event)
            .map_err(|e| JournalError::Corrupt(e.to_string()))?;
        let mut pipe = redis::pipe();
        pipe.cmd("XADD")
            .arg(&key)
            .arg(format!("0-{}", entry.seq))
            .arg("e")
            .arg(json)
            .arg("t")
            .arg(unix_micros())
            .ignore();
        // Unfinished runs keep their events at least a day; finished ones for the retention.
        let ttl = if entry.event.is_finished() {
            self.inner.retention_secs
        } else {
            86_400
        };
        pipe.cmd("EXPIRE").arg(&key).arg(ttl).ignore();
        let result: Result<(), redis::RedisError> =
            pipe.query_async(&mut self.inner.conn.clone()).await;
        match result {
            // The seq is taken. When it holds this very event, an earlier attempt landed
            // and only its answer was lost (a response timeout): the retry succeeded.
            Err(e) if e.to_string().contains("equal or smaller") => {
                if self.inner.entry_at(run, entry.seq).await?.as_ref() == Some(&entry) {
                    return Ok(());
                }
                Err(JournalError::OutOfOrder {
                    run: run.to_string(),
                    expected: self.inner.last_seq(run).await? + 1,
                    got: entry.seq,
                })
            }
            other => Ok(other?),
        }
    }

    fn follow(&self, run: &RunId, after: u64) -> EntryStream {
        let state = ReaderState {
            inner: self.inner.clone(),
            run: run.clone(),
            cursor: after,
            rx: None,
            buffer: VecDeque::new(),
            done: false,
            gap_refilled: false,
        };
        Box::pin(futures::stream::unfold(state, |mut s| async move {
            let item = s.next().await?;
            Some((item, s))
        }))
    }

    async fn backlog(&self, run: &RunId, after: u64) -> Result<Vec<JournalEntry>, JournalError> {
        self.inner.range(run, after).await
    }

    async fn has_run(&self, run: &RunId) -> Result<bool, JournalError> {
        let exists: i64 = redis::cmd("EXISTS")
            .arg(self.inner.key(run))
            .query_async(&mut self.inner.conn.clone())
            .await?;
        Ok(exists > 0)
    }

    async fn announce_run_start(&self, started: &RunStarted) -> Result<(), JournalError> {
        let _: Value = redis::cmd("XADD")
            .arg(self.inner.run_starts_key())
            .arg("MAXLEN")
            .arg("~")
            .arg(RUN_STARTS_MAXLEN)
            .arg("*")
            .arg("c")
            .arg(started.conversation_id.as_str())
            .arg("r")
            .arg(started.run_id.as_str())
            .query_async(&mut self.inner.conn.clone())
            .await?;
        Ok(())
    }

    fn run_starts(&self) -> RunStartStream {
        run_start_stream(self.inner.run_starts.subscribe())
    }

    async fn ping(&self) -> bool {
        redis::cmd("PING")
            .query_async::<String>(&mut self.inner.conn.clone())
            .await
            .is_ok()
    }
}
