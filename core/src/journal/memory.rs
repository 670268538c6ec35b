//! The in-process journal: each run's events in a vector, readers woken through a
//! watch channel. The embedded default; one instance only.

use super::{
    AppendAnswer, EntryStream, Journal, JournalEntry, JournalError, RUN_STARTS_BUFFER,
    RunStartStream, RunStarted, run_start_stream,
};
use chorus_model::ids::RunId;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};

pub struct MemoryJournal {
    runs: Arc<Mutex<HashMap<RunId, Arc<RunLog>>>>,
    retention: Duration,
    run_starts: broadcast::Sender<RunStarted>,
}

struct RunLog {
    /// Entries in seq order with when each was appended (for the fan-out latency);
    /// the first has seq `base + 1`.
    entries: RwLock<(u64, Vec<(JournalEntry, Instant)>)>,
    /// The last appended seq; readers wait on changes.
    last_seq: watch::Sender<u64>,
}

impl RunLog {
    fn new() -> Self {
        Self {
            entries: RwLock::new((0, Vec::new())),
            last_seq: watch::Sender::new(0),
        }
    }

    /// Copies the entries after `after` into `into`; returns true when the run has
    /// finished at or before `after` (a reader there has nothing more to wait for).
    fn after(&self, after: u64, into: &mut VecDeque<(JournalEntry, Instant)>) -> bool {
        let guard = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let (base, entries) = &*guard;
        let start = (after.saturating_sub(*base) as usize).min(entries.len());
        into.extend(entries[start..].iter().cloned());
        entries
            .last()
            .is_some_and(|(e, _)| e.event.is_finished() && e.seq <= after)
    }
}

impl MemoryJournal {
    /// A journal that forgets a finished run's events after `retention`.
    pub fn new(retention: Duration) -> Self {
        Self {
            runs: Arc::new(Mutex::new(HashMap::new())),
            retention,
            run_starts: broadcast::channel(RUN_STARTS_BUFFER).0,
        }
    }

    fn log(&self, run: &RunId) -> Arc<RunLog> {
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        runs.entry(run.clone())
            .or_insert_with(|| Arc::new(RunLog::new()))
            .clone()
    }

    fn existing(&self, run: &RunId) -> Option<Arc<RunLog>> {
        self.runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(run)
            .cloned()
    }
}

struct FollowState {
    log: Arc<RunLog>,
    rx: watch::Receiver<u64>,
    cursor: u64,
    buffer: VecDeque<(JournalEntry, Instant)>,
    done: bool,
    /// When the reader began: entries appended since then are live, and their
    /// delivery counts in the fan-out latency (the backlog's does not).
    since: Instant,
}

impl MemoryJournal {
    /// Stores the entry at once (the answer of [`Journal::submit`]).
    fn store(&self, run: &RunId, entry: JournalEntry) -> Result<(), JournalError> {
        let log = self.log(run);
        let finished = entry.event.is_finished();
        {
            let mut guard = log.entries.write().unwrap_or_else(|e| e.into_inner());
            let (base, entries) = &mut *guard;
            // A run recovered after a restart starts past its checkpointed seq.
            if entries.is_empty() && entry.seq > 0 {
                *base = entry.seq - 1;
            }
            let expected = *base + entries.len() as u64 + 1;
            // A retry of the entry already there succeeds, as on Redis.
            if entry.seq < expected
                && entry.seq > *base
                && entries
                    .get((entry.seq - *base - 1) as usize)
                    .is_some_and(|(held, _)| held == &entry)
            {
                return Ok(());
            }
            if entry.seq != expected {
                return Err(JournalError::OutOfOrder {
                    run: run.to_string(),
                    expected,
                    got: entry.seq,
                });
            }
            entries.push((entry, Instant::now()));
            log.last_seq.send_replace(expected);
        }
        if finished {
            let runs = self.runs.clone();
            let run = run.clone();
            let retention = self.retention;
            tokio::spawn(async move {
                tokio::time::sleep(retention).await;
                runs.lock().unwrap_or_else(|e| e.into_inner()).remove(&run);
            });
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Journal for MemoryJournal {
    fn submit(&self, run: &RunId, entry: JournalEntry) -> AppendAnswer {
        let started = Instant::now();
        let outcome = self.store(run, entry);
        if outcome.is_ok() {
            crate::telemetry::metrics::journal_append().record(started.elapsed());
        }
        AppendAnswer::done(outcome)
    }

    fn follow(&self, run: &RunId, after: u64) -> EntryStream {
        let log = self.log(run);
        let state = FollowState {
            rx: log.last_seq.subscribe(),
            log,
            cursor: after,
            buffer: VecDeque::new(),
            done: false,
            since: Instant::now(),
        };
        Box::pin(futures::stream::unfold(state, |mut s| async move {
            loop {
                if let Some((entry, appended)) = s.buffer.pop_front() {
                    if appended >= s.since {
                        crate::telemetry::metrics::journal_fanout().record(appended.elapsed());
                    }
                    s.cursor = entry.seq;
                    s.done = entry.event.is_finished();
                    return Some((Ok(entry), s));
                }
                if s.done {
                    return None;
                }
                // Mark the current value seen before reading, so an append that lands
                // between the read and the wait still wakes us.
                s.rx.borrow_and_update();
                if s.log.after(s.cursor, &mut s.buffer) {
                    return None;
                }
                if s.buffer.is_empty() && s.rx.changed().await.is_err() {
                    return None;
                }
            }
        }))
    }

    async fn backlog(&self, run: &RunId, after: u64) -> Result<Vec<JournalEntry>, JournalError> {
        let mut out = VecDeque::new();
        if let Some(log) = self.existing(run) {
            log.after(after, &mut out);
        }
        Ok(out.into_iter().map(|(entry, _)| entry).collect())
    }

    async fn has_run(&self, run: &RunId) -> Result<bool, JournalError> {
        Ok(self.existing(run).is_some_and(|log| {
            !log.entries
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .1
                .is_empty()
        }))
    }

    async fn announce_run_start(&self, started: &RunStarted) -> Result<(), JournalError> {
        // No subscriber is no error: nobody shows runs on this instance.
        let _ = self.run_starts.send(started.clone());
        Ok(())
    }

    fn run_starts(&self) -> RunStartStream {
        run_start_stream(self.run_starts.subscribe())
    }

    async fn ping(&self) -> bool {
        true
    }
}
