//! The Redis Streams journal, shared by every instance of a deployment.
//!
//! Storage: each run is a stream `{prefix}run:{id}` whose entry ids are `0-{seq}`, so
//! "events after seq N" is an exclusive XRANGE from `0-N` and a `Last-Event-ID` resumes
//! exactly there.
//!
//! Writes (`writer.rs`): appends go to one writer task per instance, which sends every
//! append waiting at that moment in one script call — per entry an XADD at its seq,
//! the expiry once per run (not per event), and one PUBLISH of the stored entries on
//! the instance-wide channel `{prefix}journal`. An append returns once Redis stored it.
//!
//! Live delivery (`live.rs`): each instance holds one subscription to that channel and
//! fans published entries out through a broadcast channel per followed run; nothing on
//! the reading side costs Redis anything per followed run. A reader registers first,
//! then reads the backlog with XRANGE, then takes live entries, skipping what it has
//! and refilling any gap (or any lost subscription) with XRANGE, so it never misses or
//! repeats an event.
//!
//! Run starts are announced on one small shared stream, `{prefix}run-starts` (trimmed
//! to about [`RUN_STARTS_MAXLEN`] entries, one per run start, never per token). Each
//! instance reads it with a blocking XREAD on its own connection, from the last entry
//! there when it connected, and fans the announcements out locally.

mod live;
mod writer;

use super::{
    AppendAnswer, EntryStream, Journal, JournalEntry, JournalError, RUN_STARTS_BUFFER, RunEvent,
    RunStartStream, RunStarted, run_start_stream,
};
use crate::redis_conn::Conn;
use chorus_model::ids::{ConversationId, RunId};
use redis::{AsyncConnectionConfig, Client, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};

/// How long one XREAD of the run-start reader blocks.
const TAIL_BLOCK_MS: usize = 5_000;
/// About how many run starts the shared announcement stream keeps (readers only need
/// the few since their last read).
const RUN_STARTS_MAXLEN: usize = 10_000;
/// How long a command's answer may take before it is called lost. The library's
/// default (500 ms) turns a busy moment of this process into broken streams and 500s;
/// the commands are cheap, so only a dead Redis is slow.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Live entries a reader may fall behind by before it refills from the stream.
const LIVE_BUFFER: usize = 128;

pub struct RedisJournal {
    inner: Arc<Inner>,
}

struct Inner {
    /// Made again after Redis dropped it (a restart).
    conn: Conn,
    prefix: String,
    follows: Mutex<HashMap<RunId, Follow>>,
    run_starts: broadcast::Sender<RunStarted>,
    /// Appends waiting for the writer task.
    appends: mpsc::UnboundedSender<writer::Pending>,
}

/// What the subscription hands a run's local readers.
#[derive(Clone)]
enum Live {
    Entry(Arc<JournalEntry>),
    /// The subscription was lost and made again: read the stream for what it missed.
    Resync,
}

struct Follow {
    /// Last seq handed to the readers.
    cursor: u64,
    /// When the first reader registered (Unix µs): batches sent since then are live,
    /// and their delivery counts in the fan-out latency (a backlog's does not).
    since_us: u64,
    readers: usize,
    tx: broadcast::Sender<Live>,
}

impl RedisJournal {
    /// Connects, subscribes to live entries and starts the writer and the readers'
    /// tasks (stopped when the journal is dropped).
    pub async fn connect(
        url: &str,
        prefix: &str,
        retention: Duration,
    ) -> Result<Self, JournalError> {
        Self::connect_with_timeout(url, prefix, retention, RESPONSE_TIMEOUT).await
    }

    /// [`RedisJournal::connect`] with another response timeout for the commands of
    /// the writer and readers (not the blocking reads of the run-start reader): tests
    /// make it tiny to lose answers of commands that did land.
    pub async fn connect_with_timeout(
        url: &str,
        prefix: &str,
        retention: Duration,
        response_timeout: Duration,
    ) -> Result<Self, JournalError> {
        let client = Client::open(url)?;
        let conn_config = AsyncConnectionConfig::new().set_response_timeout(Some(response_timeout));
        let conn = Conn::connect(&client, conn_config).await?;
        let channel = format!("{prefix}journal");
        // Subscribed before `connect` returns: an entry stored after that reaches every
        // reader registered here.
        let pubsub = live::subscribe(&client, &channel).await?;
        // Loaded now, so that a call under load is an EVALSHA.
        let sha = writer::load_script(&conn).await?;
        let (appends, queue) = mpsc::unbounded_channel();
        tokio::spawn(writer::write_batches(
            queue,
            writer::Target {
                conn: conn.clone(),
                prefix: prefix.to_string(),
                channel: channel.clone(),
                retention_secs: retention.as_secs().max(1),
            },
            sha,
        ));
        let inner = Arc::new(Inner {
            conn,
            prefix: prefix.to_string(),
            follows: Mutex::new(HashMap::new()),
            run_starts: broadcast::channel(RUN_STARTS_BUFFER).0,
            appends,
        });
        tokio::spawn(live::listen(
            Arc::downgrade(&inner),
            client.clone(),
            channel,
            pubsub,
        ));
        // The blocking reads wait up to TAIL_BLOCK_MS for an answer, so their
        // connection waits that long and more before calling the answer lost.
        let tail_config = AsyncConnectionConfig::new()
            .set_response_timeout(Some(Duration::from_millis(TAIL_BLOCK_MS as u64 + 5_000)));
        let starts_conn = Conn::connect(&client, tail_config).await?;
        // Announcements from now on: read after the stream's last entry at connection,
        // so none made once `connect` has returned is missed.
        let last: Value = starts_conn
            .query(
                redis::cmd("XREVRANGE")
                    .arg(inner.run_starts_key())
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1),
            )
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
        let reply: Value = self
            .conn
            .query(
                redis::cmd("XRANGE")
                    .arg(self.key(run))
                    .arg(format!("(0-{after}"))
                    .arg("+"),
            )
            .await?;
        parse_entries(reply)
    }

    /// The entry at `seq`, if the stream holds one.
    async fn entry_at(&self, run: &RunId, seq: u64) -> Result<Option<JournalEntry>, JournalError> {
        let reply: Value = self
            .conn
            .query(
                redis::cmd("XRANGE")
                    .arg(self.key(run))
                    .arg(format!("0-{seq}"))
                    .arg(format!("0-{seq}")),
            )
            .await?;
        Ok(parse_entries(reply)?.pop())
    }

    /// The stream's last entry, if any.
    async fn last_entry(&self, run: &RunId) -> Result<Option<JournalEntry>, JournalError> {
        let reply: Value = self
            .conn
            .query(
                redis::cmd("XREVRANGE")
                    .arg(self.key(run))
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1),
            )
            .await?;
        Ok(parse_entries(reply)?.pop())
    }

    /// Registers a reader of `run`; returns its live receiver.
    fn register(&self, run: &RunId, after: u64) -> broadcast::Receiver<Live> {
        let mut follows = self.follows.lock().unwrap_or_else(|e| e.into_inner());
        let follow = follows.entry(run.clone()).or_insert_with(|| Follow {
            cursor: after,
            since_us: chorus_model::time::now_us(),
            readers: 0,
            tx: broadcast::channel(LIVE_BUFFER).0,
        });
        follow.readers += 1;
        follow.tx.subscribe()
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

    /// Tells every local reader to read its stream for what the subscription missed.
    fn resync_all(&self) {
        let follows = self.follows.lock().unwrap_or_else(|e| e.into_inner());
        for follow in follows.values() {
            let _ = follow.tx.send(Live::Resync);
        }
    }
}

/// The answer of an append whose writer task is gone (the journal is being dropped).
fn writer_stopped() -> JournalError {
    JournalError::Redis(redis::RedisError::from((
        redis::ErrorKind::Io,
        "the journal writer has stopped",
    )))
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
    Ok(JournalEntry { seq, event })
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
async fn tail_run_starts(inner: std::sync::Weak<Inner>, conn: Conn, mut last_id: String) {
    loop {
        let Some(journal) = inner.upgrade() else {
            return;
        };
        let key = journal.run_starts_key();
        drop(journal);
        let reply: Result<Value, _> = conn
            .query(
                redis::cmd("XREAD")
                    .arg("COUNT")
                    .arg(1000)
                    .arg("BLOCK")
                    .arg(TAIL_BLOCK_MS)
                    .arg("STREAMS")
                    .arg(&key)
                    .arg(&last_id),
            )
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
    rx: Option<broadcast::Receiver<Live>>,
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
                // Register before reading the backlog so nothing falls between them.
                self.rx = Some(self.inner.register(&self.run, self.cursor));
                if let Err(e) = self.refill().await {
                    self.done = true;
                    return Some(Err(e));
                }
                if self.buffer.is_empty() {
                    match self.inner.last_entry(&self.run).await {
                        Ok(Some(last)) if last.event.is_finished() && last.seq <= self.cursor => {
                            self.done = true;
                            return None;
                        }
                        Ok(_) => {}
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
                    // A gap (an entry published before this reader registered, or a
                    // lagged receiver): read it from the stream.
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
            let refill = match rx.recv().await {
                Ok(Live::Entry(entry)) => {
                    self.buffer.push_back((*entry).clone());
                    false
                }
                Ok(Live::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => true,
                Err(broadcast::error::RecvError::Closed) => {
                    self.done = true;
                    return None;
                }
            };
            if refill && let Err(e) = self.refill().await {
                self.done = true;
                return Some(Err(e));
            }
        }
    }
}

#[async_trait::async_trait]
impl Journal for RedisJournal {
    fn submit(&self, run: &RunId, entry: JournalEntry) -> AppendAnswer {
        let json = match serde_json::to_string(&entry.event) {
            Ok(json) => json,
            Err(e) => return AppendAnswer::done(Err(JournalError::Corrupt(e.to_string()))),
        };
        let (done, answer) = oneshot::channel();
        let pending = writer::Pending {
            run: run.clone(),
            seq: entry.seq,
            json,
            finished: entry.event.is_finished(),
            creates: entry.seq == 1 || matches!(entry.event, RunEvent::Snapshot { .. }),
            queued: std::time::Instant::now(),
            done,
        };
        if self.inner.appends.send(pending).is_err() {
            return AppendAnswer::done(Err(writer_stopped()));
        }
        let inner = self.inner.clone();
        let run = run.clone();
        AppendAnswer::waiting(async move {
            match answer.await.map_err(|_| writer_stopped())?? {
                writer::Stored::Yes => Ok(()),
                writer::Stored::StreamLost => Err(JournalError::Lost {
                    run: run.to_string(),
                }),
                // The seq is taken. When it holds this very event, an earlier attempt
                // landed and only its answer was lost (a response timeout): the retry
                // succeeded (and that attempt published it).
                writer::Stored::SeqTaken => {
                    if inner.entry_at(&run, entry.seq).await?.as_ref() == Some(&entry) {
                        return Ok(());
                    }
                    Err(JournalError::OutOfOrder {
                        run: run.to_string(),
                        expected: inner.last_entry(&run).await?.map_or(0, |e| e.seq) + 1,
                        got: entry.seq,
                    })
                }
            }
        })
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
        let exists: i64 = self
            .inner
            .conn
            .query(redis::cmd("EXISTS").arg(self.inner.key(run)))
            .await?;
        Ok(exists > 0)
    }

    async fn announce_run_start(&self, started: &RunStarted) -> Result<(), JournalError> {
        let _: Value = self
            .inner
            .conn
            .query(
                redis::cmd("XADD")
                    .arg(self.inner.run_starts_key())
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(RUN_STARTS_MAXLEN)
                    .arg("*")
                    .arg("c")
                    .arg(started.conversation_id.as_str())
                    .arg("r")
                    .arg(started.run_id.as_str()),
            )
            .await?;
        Ok(())
    }

    fn run_starts(&self) -> RunStartStream {
        run_start_stream(self.inner.run_starts.subscribe())
    }

    async fn ping(&self) -> bool {
        self.inner
            .conn
            .query::<String>(&redis::cmd("PING"))
            .await
            .is_ok()
    }
}
