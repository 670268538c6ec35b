//! Following a run: live from the journal while it streams, settled from what the
//! journal and the store hold once it has ended.

use super::{Core, CoreError};
use crate::journal::{EntryStream, JournalEntry, RunEvent};
use chorus_model::ids::RunId;
use chorus_store::{Account, Run};

impl Core {
    /// The run's events after `after`: backlog, then live, ending after `finished`.
    /// When the journal no longer holds the run, a snapshot of its text stands in for
    /// the lost events.
    pub async fn follow_run(
        &self,
        account: &Account,
        id: &RunId,
        after: u64,
    ) -> Result<EntryStream, CoreError> {
        if after == 0 && self.engine.runs_here_for(id, &account.id) {
            // A first read of a run executed here: its journal holds every event up
            // to its end, so the store's row has nothing to add. A reader resuming
            // after some seq takes the path below, which answers one that already
            // saw `finished` with `finished` again (the journal alone would end the
            // stream with nothing).
            return self.follow_active(id, 0).await;
        }
        let run = self.owned_run(account, id).await?;
        if !run.status.is_active() {
            // The run is over: what the journal holds is final, so answer from it
            // (and the store) without waiting on anything.
            let backlog = self.journal.backlog(id, 0).await?;
            let entries = settled_events(&run, backlog, after);
            return Ok(Box::pin(futures::stream::iter(entries.into_iter().map(Ok))));
        }
        self.follow_active(id, after).await
    }

    /// Follows an active run's journal after `after`.
    async fn follow_active(&self, id: &RunId, after: u64) -> Result<EntryStream, CoreError> {
        if self.journal.has_run(id).await? {
            return Ok(self.journal.follow(id, after));
        }
        // Not started yet, or lost with a restarted in-process journal (the sweeper
        // will end it with a snapshot): every event that comes is new to this reader.
        Ok(self.journal.follow(id, 0))
    }
}

/// The events a reader after `after` gets for a run that has ended, from what the
/// journal still holds. Never empty, always ending with `finished`, so a client that
/// reconnects after the end is told so instead of reconnecting forever:
/// - a journal that lost the run: a snapshot of the stored text, then `finished`;
/// - a journal rebuilt after a restart (it starts with a snapshot): from the snapshot
///   on, whatever `after` is, since the reader's seqs belong to the lost events;
/// - otherwise the entries after `after`, or `finished` again if it saw them all;
/// - a journal whose writer died before writing `finished`: `finished` from the store.
fn settled_events(run: &Run, backlog: Vec<JournalEntry>, after: u64) -> Vec<JournalEntry> {
    let finished_event = RunEvent::Finished {
        status: run.status.as_str().into(),
        reason: run.finish_reason.clone().unwrap_or_default(),
        error: run.error.clone(),
    };
    if backlog.is_empty() {
        let seq = run.checkpoint_seq.max(0) as u64;
        return vec![
            JournalEntry {
                seq: seq + 1,
                event: RunEvent::Snapshot {
                    text: run.text.clone(),
                },
            },
            JournalEntry {
                seq: seq + 2,
                event: finished_event,
            },
        ];
    }
    let rebuilt = !matches!(backlog[0].event, RunEvent::Started { .. });
    let last_seq = backlog.last().map_or(0, |e| e.seq);
    let finished = backlog
        .iter()
        .find(|e| e.event.is_finished())
        .cloned()
        .unwrap_or(JournalEntry {
            seq: last_seq + 1,
            event: finished_event,
        });
    let mut entries: Vec<JournalEntry> = if rebuilt {
        backlog
    } else {
        backlog.into_iter().filter(|e| e.seq > after).collect()
    };
    if !entries.iter().any(|e| e.event.is_finished()) {
        entries.push(finished);
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_model::ids::{AccountId, ConversationId, MessageId};
    use chorus_store::RunStatus;

    fn ended_run(text: &str, checkpoint_seq: i64) -> Run {
        Run {
            id: RunId::generate(),
            account_id: AccountId::generate(),
            conversation_id: ConversationId::generate(),
            message_id: MessageId::generate(),
            continues_run_id: None,
            model: "scripted/demo".into(),
            status: RunStatus::Interrupted,
            text: text.into(),
            prefix_len: 0,
            checkpoint_seq,
            finish_reason: Some("lease_expired".into()),
            error: None,
            prompt_tokens: None,
            completion_tokens: None,
            cached_prompt_tokens: None,
            reasoning_tokens: None,
            lease_owner: None,
            lease_expires_at: None,
            created_at: 0,
            updated_at: 0,
            finished_at: Some(0),
        }
    }

    fn entry(seq: u64, event: RunEvent) -> JournalEntry {
        JournalEntry { seq, event }
    }

    fn started() -> RunEvent {
        RunEvent::Started {
            message_id: "m".into(),
            model: "scripted/demo".into(),
            prefix: String::new(),
        }
    }

    fn delta(t: &str) -> RunEvent {
        RunEvent::Delta { text: t.into() }
    }

    fn finished() -> RunEvent {
        RunEvent::Finished {
            status: "complete".into(),
            reason: "stop".into(),
            error: None,
        }
    }

    fn kinds(entries: &[JournalEntry]) -> Vec<(u64, &'static str)> {
        entries.iter().map(|e| (e.seq, e.event.kind())).collect()
    }

    #[test]
    fn a_lost_journal_yields_a_snapshot_then_finished() {
        let run = ended_run("partial", 7);
        let got = settled_events(&run, vec![], 42);
        assert_eq!(kinds(&got), [(8, "snapshot"), (9, "finished")]);
        assert_eq!(
            got[0].event,
            RunEvent::Snapshot {
                text: "partial".into()
            }
        );
    }

    #[test]
    fn readers_get_the_rest_or_finished_again() {
        let run = ended_run("ab", 0);
        let backlog = vec![
            entry(1, started()),
            entry(2, delta("a")),
            entry(3, delta("b")),
            entry(4, finished()),
        ];
        assert_eq!(
            kinds(&settled_events(&run, backlog.clone(), 2)),
            [(3, "delta"), (4, "finished")]
        );
        assert_eq!(
            kinds(&settled_events(&run, backlog.clone(), 4)),
            [(4, "finished")]
        );
        assert_eq!(kinds(&settled_events(&run, backlog, 99)), [(4, "finished")]);
    }

    #[test]
    fn a_rebuilt_journal_is_sent_from_its_snapshot() {
        let run = ended_run("checkpointed", 30);
        let backlog = vec![
            entry(
                31,
                RunEvent::Snapshot {
                    text: "checkpointed".into(),
                },
            ),
            entry(32, finished()),
        ];
        // The reader saw seq 40 before the crash: its seqs belong to lost events.
        assert_eq!(
            kinds(&settled_events(&run, backlog, 40)),
            [(31, "snapshot"), (32, "finished")]
        );
    }

    #[test]
    fn a_missing_finished_comes_from_the_store() {
        let run = ended_run("ab", 0);
        let backlog = vec![
            entry(1, started()),
            entry(2, delta("a")),
            entry(3, delta("b")),
        ];
        let got = settled_events(&run, backlog, 1);
        assert_eq!(kinds(&got), [(2, "delta"), (3, "delta"), (4, "finished")]);
        assert!(
            matches!(&got[2].event, RunEvent::Finished { status, .. } if status == "interrupted")
        );
    }
}
