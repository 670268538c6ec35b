//! The writer of one instance: every append waiting at a moment goes to Redis in one
//! script call (a group commit), so N streaming runs cost about one round trip per
//! batch instead of one (plus an EXPIRE) per event.
//!
//! The script stores each entry with XADD at its own id `0-SEQ` (refused when the seq
//! is taken), sets the stream's expiry only when this writer first writes the run (and
//! again every [`EXPIRY_REFRESH`]) and when the run finishes, and publishes the entries
//! it stored in one message on the instance-wide channel. It runs atomically: an entry
//! is published exactly when it is stored, in stream order. An append is answered only
//! once Redis has run the script, so what an append reported stored is as durable as
//! Redis makes it; a batch never waits for a timer, only for the batch before it.

use crate::redis_conn::Conn;
use chorus_model::ids::RunId;
use redis::{Cmd, ErrorKind, RedisError, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// At most this many appends go in one script call (a call blocks Redis while it runs:
/// about 5 µs an entry).
const MAX_BATCH: usize = 256;
/// Expiry of an unfinished run's stream, set when its writer first writes it.
const RUNNING_TTL_SECS: u64 = 86_400;
/// A writer sets an unfinished run's expiry again after this long (a run streaming for
/// more than a day keeps its events).
const EXPIRY_REFRESH: Duration = Duration::from_secs(3_600);

/// KEYS: the runs' streams. ARGV: channel, running ttl, finished ttl, the batch's send
/// time (Unix µs, the first line of the published message: readers' fan-out latency),
/// then five per entry: run id, seq, event JSON, expiry (0 keep, 1 running, 2
/// finished), and whether the entry may create the stream (1: the run's first event or
/// a snapshot; 0: the stream must exist, `NOMKSTREAM`). Returns per entry 1 (stored), 0
/// (seq taken), 2 (the stream is gone: Redis lost the run's events) or the error text. Every call is a `pcall`: a
/// script that stopped halfway would leave entries stored but never published (Redis
/// does not roll a script back), and their readers waiting.
const APPEND_SCRIPT: &str = r"
local out = {}
local pub = {}
for i = 1, #KEYS do
  local a = 4 + (i - 1) * 5
  local seq = ARGV[a + 2]
  local r
  if ARGV[a + 5] == '1' then
    r = redis.pcall('XADD', KEYS[i], '0-' .. seq, 'e', ARGV[a + 3])
  else
    r = redis.pcall('XADD', KEYS[i], 'NOMKSTREAM', '0-' .. seq, 'e', ARGV[a + 3])
  end
  if not r then
    out[i] = 2
  elseif type(r) == 'table' and r.err then
    if string.find(r.err, 'equal or smaller', 1, true) then out[i] = 0 else out[i] = r.err end
  else
    out[i] = 1
    pub[#pub + 1] = ARGV[a + 1] .. ' ' .. seq .. ' ' .. ARGV[a + 3] .. '\n'
    local x = ARGV[a + 4]
    if x == '1' then redis.pcall('EXPIRE', KEYS[i], ARGV[2])
    elseif x == '2' then redis.pcall('EXPIRE', KEYS[i], ARGV[3]) end
  end
end
if #pub > 0 then redis.pcall('PUBLISH', ARGV[1], 't ' .. ARGV[4] .. '\n' .. table.concat(pub)) end
return out
";

/// What became of one append.
#[derive(Debug)]
pub(super) enum Stored {
    /// Stored (and published).
    Yes,
    /// The seq holds an entry already (maybe this very one, from an attempt whose
    /// answer was lost).
    SeqTaken,
    /// The run's stream is gone although this entry is not its first (Redis restarted
    /// without persistence): nothing was stored.
    StreamLost,
}

/// One append waiting for the writer.
pub(super) struct Pending {
    pub run: RunId,
    pub seq: u64,
    pub json: String,
    pub finished: bool,
    /// The run's first event or a snapshot: the one kind of entry that may create the
    /// run's stream (any other finds it gone when Redis lost it).
    pub creates: bool,
    /// When the append was handed to the writer (the append latency's start).
    pub queued: Instant,
    pub done: oneshot::Sender<Result<Stored, RedisError>>,
}

/// Where the writer writes.
pub(super) struct Target {
    pub conn: Conn,
    pub prefix: String,
    pub channel: String,
    pub retention_secs: u64,
}

/// Loads the script into Redis; returns its SHA1, what EVALSHA names it by.
pub(super) async fn load_script(conn: &Conn) -> Result<String, RedisError> {
    conn.query(redis::cmd("SCRIPT").arg("LOAD").arg(APPEND_SCRIPT))
        .await
}

/// Runs `call` (an EVALSHA of the script), loading the script again first when Redis
/// no longer has it (restarted, or `SCRIPT FLUSH`).
async fn eval(conn: &Conn, sha: &mut String, call: &mut Cmd) -> Result<Vec<Value>, RedisError> {
    match conn.query(call).await {
        Err(e) if e.kind() == ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
            *sha = load_script(conn).await?;
            let mut again = redis::cmd("EVALSHA");
            again.arg(&*sha);
            for arg in call.args_iter().skip(2) {
                if let redis::Arg::Simple(bytes) = arg {
                    again.arg(bytes);
                }
            }
            conn.query(&again).await
        }
        other => other,
    }
}

/// Writes batches until every sender (the journal) is gone.
pub(super) async fn write_batches(
    mut queue: mpsc::UnboundedReceiver<Pending>,
    target: Target,
    mut sha: String,
) {
    // Runs whose unfinished expiry this writer has set, and when.
    let mut expiring: HashMap<RunId, Instant> = HashMap::new();
    let mut pruned = Instant::now();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut expiries = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        if pruned.elapsed() >= EXPIRY_REFRESH {
            // Runs this writer stopped writing without `finished` (a lost lease).
            expiring.retain(|_, at| at.elapsed() < EXPIRY_REFRESH);
            pruned = Instant::now();
        }
        expiries.clear();
        for p in &batch {
            let expiry = if p.finished {
                2
            } else if p.creates
                || expiring
                    .get(&p.run)
                    .is_none_or(|at| at.elapsed() >= EXPIRY_REFRESH)
            {
                1
            } else {
                0
            };
            expiries.push(expiry);
        }
        // EVALSHA sha numkeys KEY... ARG...: the keys first, then the arguments.
        let mut call = redis::cmd("EVALSHA");
        call.arg(&sha).arg(batch.len());
        for p in &batch {
            call.arg(format!("{}run:{}", target.prefix, p.run));
        }
        call.arg(&target.channel)
            .arg(RUNNING_TTL_SECS)
            .arg(target.retention_secs)
            .arg(chorus_model::time::now_us());
        for (p, expiry) in batch.iter().zip(&expiries) {
            call.arg(p.run.as_str())
                .arg(p.seq)
                .arg(&p.json)
                .arg(*expiry)
                .arg(u8::from(p.creates));
        }
        let outcome = eval(&target.conn, &mut sha, &mut call).await;
        match outcome {
            Ok(results) if results.len() == batch.len() => {
                let answered = Instant::now();
                for ((p, result), expiry) in batch.drain(..).zip(results).zip(&expiries) {
                    let answer = match result {
                        Value::Int(1) => {
                            crate::telemetry::metrics::journal_append()
                                .record(answered.saturating_duration_since(p.queued));
                            match expiry {
                                2 => expiring.remove(&p.run),
                                1 => expiring.insert(p.run.clone(), Instant::now()),
                                _ => None,
                            };
                            Ok(Stored::Yes)
                        }
                        Value::Int(0) => Ok(Stored::SeqTaken),
                        Value::Int(2) => Ok(Stored::StreamLost),
                        other => Err(refused(format!("{other:?}"))),
                    };
                    // A caller that went away no longer needs the answer.
                    let _ = p.done.send(answer);
                }
            }
            Ok(results) => {
                let e = refused(format!(
                    "{} answers for {} appends",
                    results.len(),
                    batch.len()
                ));
                for p in batch.drain(..) {
                    let _ = p.done.send(Err(e.clone()));
                }
            }
            Err(e) => {
                for p in batch.drain(..) {
                    let _ = p.done.send(Err(e.clone()));
                }
            }
        }
    }
}

fn refused(detail: String) -> RedisError {
    RedisError::from((ErrorKind::Extension, "journal append refused", detail))
}
