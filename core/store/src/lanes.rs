//! The queue a store's lanes share: the group commit's (`group_commit.rs`) and the
//! batched reads' (`read_lanes.rs`). A lane holds the queue only while it waits, so
//! the next free lane takes whatever is queued meanwhile; a lane's batch is every
//! job waiting when it took the queue, up to a bound.

use std::sync::Arc;
use tokio::sync::{Mutex, mpsc};

/// The receiving end of a queue, shared by its lanes.
pub(crate) type SharedQueue<J> = Arc<Mutex<mpsc::UnboundedReceiver<J>>>;

/// A new queue: where jobs are sent, and what the lanes share.
pub(crate) fn queue<J>() -> (mpsc::UnboundedSender<J>, SharedQueue<J>) {
    let (sender, receiver) = mpsc::unbounded_channel();
    (sender, Arc::new(Mutex::new(receiver)))
}

/// The next batch: at least one job, then every job waiting at that moment, at most
/// `max`, without those `live` drops (their caller went away); it may be empty then.
/// `None` once every sender is gone.
pub(crate) async fn next_batch<J>(
    queue: &SharedQueue<J>,
    max: usize,
    live: impl Fn(&J) -> bool,
) -> Option<Vec<J>> {
    let mut batch = Vec::new();
    if queue.lock().await.recv_many(&mut batch, max).await == 0 {
        return None;
    }
    batch.retain(|job| live(job));
    Some(batch)
}
