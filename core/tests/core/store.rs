//! One store suite, run against SQLite and PostgreSQL: the same calls must give the
//! same results on both backends.
//!
//! PostgreSQL is required: set `CHORUS_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); `scripts/test` starts one.

use crate::support::{drop_pg, postgres_store, sqlite_store};
use chorus_model::ids::{ConversationId, MessageId, RunId};
use chorus_model::time::now_ms;
use chorus_store::{
    ApiKeyScope, NewTurn, Role, RunOutcome, RunStatus, Store, StoreConflict, StoreError,
};

const OWNER: &str = "instance-a";

async fn suite(store: &Store) {
    accounts_sessions_and_keys(store).await;
    sessions_listed_and_ended_by_their_owner(store).await;
    balance_changes_by_day(store).await;
    conversations_and_ownership(store).await;
    runs_checkpoints_and_finish(store).await;
    orphans_are_interrupted_once(store).await;
    deleting_a_conversation_removes_its_tree(store).await;
    turn_contexts_read_at_once_answer_each_reader(store).await;
    // Migrating twice is a no-op.
    store.migrate().await.expect("second migrate");
}

async fn accounts_sessions_and_keys(store: &Store) {
    let alice = store
        .create_account("alice", Role::Admin, Some("hash"))
        .await
        .unwrap();
    assert_eq!(alice.role, Role::Admin);
    let dup = store
        .create_account("alice", Role::User, None)
        .await
        .unwrap_err();
    assert!(
        matches!(dup, StoreError::Conflict(StoreConflict::AccountNameTaken { ref name }) if name == "alice"),
        "{dup:?}"
    );

    let by_name = store.account_by_name("alice").await.unwrap().unwrap();
    assert_eq!(by_name.id, alice.id);
    assert_eq!(by_name.password_hash.as_deref(), Some("hash"));
    let by_identity = store
        .account_by_identity("web", "alice")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_identity.id, alice.id);
    assert!(
        store
            .account_by_identity("discord", "alice")
            .await
            .unwrap()
            .is_none()
    );

    store
        .create_session("live", &alice.id, now_ms() + 60_000)
        .await
        .unwrap();
    store
        .create_session("expired", &alice.id, now_ms() - 1)
        .await
        .unwrap();
    assert_eq!(
        store
            .account_by_session("live", None)
            .await
            .unwrap()
            .unwrap()
            .id,
        alice.id
    );
    assert!(
        store
            .account_by_session("expired", None)
            .await
            .unwrap()
            .is_none()
    );
    store.delete_session("live").await.unwrap();
    assert!(
        store
            .account_by_session("live", None)
            .await
            .unwrap()
            .is_none()
    );

    let key = store
        .create_scoped_api_key(
            &alice.id,
            "cli",
            "keyhash",
            "chorus_abc",
            &[ApiKeyScope::Read, ApiKeyScope::Chat],
        )
        .await
        .unwrap();
    assert_eq!(key.prefix, "chorus_abc");
    assert_eq!(
        store
            .account_by_api_key("keyhash")
            .await
            .unwrap()
            .unwrap()
            .account
            .id,
        alice.id
    );
    assert!(
        store
            .account_by_api_key("otherhash")
            .await
            .unwrap()
            .is_none()
    );
}

/// A person's list of sessions: public ids (never the token's hash), the asking one
/// marked, last use and browser recorded on use, expired ones left out, and one
/// ended only by its owner.
async fn sessions_listed_and_ended_by_their_owner(store: &Store) {
    let ann = store.create_account("ann", Role::User, None).await.unwrap();
    let ben = store.create_account("ben", Role::User, None).await.unwrap();
    store
        .create_session("ann-laptop", &ann.id, now_ms() + 60_000)
        .await
        .unwrap();
    store
        .create_session("ann-phone", &ann.id, now_ms() + 60_000)
        .await
        .unwrap();
    store
        .create_session("ann-old", &ann.id, now_ms() - 1)
        .await
        .unwrap();
    store
        .create_session("ben-only", &ben.id, now_ms() + 60_000)
        .await
        .unwrap();

    let listed = store.sessions_of(&ann.id, Some("ann-phone")).await.unwrap();
    assert_eq!(
        listed.len(),
        2,
        "expired sessions are not listed: {listed:?}"
    );
    assert_eq!(listed.iter().filter(|s| s.current).count(), 1);
    for s in &listed {
        assert!(!s.id.is_empty() && !s.id.contains("ann-"), "{s:?}");
        assert_eq!(s.last_seen_at, None, "not used yet");
        assert_eq!(s.user_agent, None);
    }
    assert_ne!(listed[0].id, listed[1].id);

    // A use records when and with which browser (cut to 300 characters).
    let long_agent = format!("Mozilla/5.0 (X11; Linux) {}", "é".repeat(400));
    let before = now_ms();
    store
        .account_by_session("ann-phone", Some(&long_agent))
        .await
        .unwrap()
        .unwrap();
    let listed = store.sessions_of(&ann.id, Some("ann-phone")).await.unwrap();
    let phone = listed.iter().find(|s| s.current).unwrap().clone();
    assert!(phone.last_seen_at.is_some_and(|t| t >= before), "{phone:?}");
    let agent = phone.user_agent.clone().unwrap();
    assert_eq!(agent.chars().count(), 300);
    assert!(long_agent.starts_with(&agent));
    // Within the minute a second use writes nothing new.
    store
        .account_by_session("ann-phone", Some("another browser"))
        .await
        .unwrap()
        .unwrap();
    let again = store.sessions_of(&ann.id, None).await.unwrap();
    let phone_again = again.iter().find(|s| s.id == phone.id).unwrap();
    assert_eq!(phone_again.user_agent.as_deref(), Some(agent.as_str()));
    assert!(
        again.iter().all(|s| !s.current),
        "no current without a token"
    );

    // Ben cannot end Ann's session, nor can Ann end one that does not exist.
    let laptop = listed.iter().find(|s| !s.current).unwrap().id.clone();
    assert!(matches!(
        store.delete_account_session(&ben.id, &laptop).await,
        Err(StoreError::NotFound("session"))
    ));
    assert!(
        store
            .account_by_session("ann-laptop", None)
            .await
            .unwrap()
            .is_some()
    );
    assert!(matches!(
        store
            .delete_account_session(&ann.id, "no-such-session")
            .await,
        Err(StoreError::NotFound("session"))
    ));
    store
        .delete_account_session(&ann.id, &laptop)
        .await
        .unwrap();
    assert!(
        store
            .account_by_session("ann-laptop", None)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .account_by_session("ann-phone", None)
            .await
            .unwrap()
            .is_some()
    );
    let left = store.sessions_of(&ann.id, Some("ann-phone")).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, phone.id);
    assert_eq!(store.sessions_of(&ben.id, None).await.unwrap().len(), 1);
}

/// The net change of a balance per day: every kind of row counts, other accounts'
/// do not, rows before the window do not.
async fn balance_changes_by_day(store: &Store) {
    use chorus_store::LedgerReason;
    let cat = store.create_account("cat", Role::User, None).await.unwrap();
    let dog = store.create_account("dog", Role::User, None).await.unwrap();
    let today = now_ms() / 86_400_000;
    store
        .credit(&cat.id, 5_000_000, LedgerReason::Grant, Some("welcome"))
        .await
        .unwrap();
    store
        .credit(&cat.id, -1_500_000, LedgerReason::Grant, None)
        .await
        .unwrap();
    store
        .credit(&dog.id, 9_000_000, LedgerReason::Grant, None)
        .await
        .unwrap();
    let since = today * 86_400_000;
    let net = store.net_by_day(&cat.id, since).await.unwrap();
    assert_eq!(net, vec![(today, 3_500_000)]);
    assert_eq!(store.balance(&cat.id).await.unwrap(), 3_500_000);
    assert!(
        store
            .net_by_day(&cat.id, since + 86_400_000)
            .await
            .unwrap()
            .is_empty(),
        "nothing after today"
    );
}

async fn conversations_and_ownership(store: &Store) {
    let bob = store.create_account("bob", Role::User, None).await.unwrap();
    let eve = store.create_account("eve", Role::User, None).await.unwrap();
    let first = store
        .create_conversation(&bob.id, "first", "scripted/demo", None)
        .await
        .unwrap();
    let second = store
        .create_conversation(&bob.id, "second", "scripted/demo", Some("be brief"))
        .await
        .unwrap();
    let listed = store.list_conversations(&bob.id, 10).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].id, second.id, "newest first");
    assert!(
        store
            .list_conversations(&eve.id, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .conversation(&eve.id, &first.id)
            .await
            .unwrap()
            .is_none(),
        "not eve's"
    );
    assert_eq!(
        store
            .conversation(&bob.id, &second.id)
            .await
            .unwrap()
            .unwrap()
            .system_prompt
            .as_deref(),
        Some("be brief")
    );
    assert!(
        !store
            .rename_conversation(&eve.id, &first.id, "mine now")
            .await
            .unwrap()
    );
    assert!(
        store
            .rename_conversation(&bob.id, &first.id, "renamed")
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .conversation(&bob.id, &first.id)
            .await
            .unwrap()
            .unwrap()
            .title,
        "renamed"
    );
    assert!(
        !store.delete_conversation(&eve.id, &first.id).await.unwrap(),
        "not eve's to delete"
    );
    assert!(
        store
            .conversation(&bob.id, &ConversationId::generate())
            .await
            .unwrap()
            .is_none()
    );
}

fn turn(
    store_account: &chorus_store::Account,
    conv: &ConversationId,
    parent: Option<MessageId>,
    text: &str,
) -> NewTurn {
    NewTurn {
        account_id: store_account.id.clone(),
        conversation_id: conv.clone(),
        parent_id: parent,
        content: text.into(),
        model: "scripted/demo".into(),
    }
}

async fn runs_checkpoints_and_finish(store: &Store) {
    let carol = store
        .create_account("carol", Role::User, None)
        .await
        .unwrap();
    let conv = store
        .create_conversation(&carol.id, "c", "scripted/demo", None)
        .await
        .unwrap();
    let lease = now_ms() + 60_000;
    let ids = store
        .start_turn(&turn(&carol, &conv.id, None, "hello"), OWNER, lease)
        .await
        .unwrap();
    let run = store.run(&ids.run_id).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Queued);
    assert_eq!(run.message_id, ids.assistant_message_id);

    // Checkpoints renew the lease and report stop requests; only the owner may write.
    assert!(
        !store
            .checkpoint(&ids.run_id, OWNER, "Hel", 3, lease)
            .await
            .unwrap()
    );
    let stolen = store
        .checkpoint(&ids.run_id, "instance-b", "X", 9, lease)
        .await
        .unwrap_err();
    assert!(matches!(stolen, StoreError::NotFound(_)));
    let messages = store.messages(&conv.id).await.unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(
        messages[1].content, "Hel",
        "live run text is merged into its message"
    );
    assert_eq!(messages[1].run_status.as_deref(), Some("streaming"));

    // The batched form used by the engine: one result per run, None for a lost lease.
    let side = store
        .create_conversation(&carol.id, "side", "scripted/demo", None)
        .await
        .unwrap();
    let other = store
        .start_turn(&turn(&carol, &side.id, None, "side"), "instance-b", lease)
        .await
        .unwrap();
    let batch = vec![
        (
            ids.run_id.clone(),
            chorus_store::Checkpoint {
                text: "Hell".into(),
                seq: 4,
            },
        ),
        (
            other.run_id.clone(),
            chorus_store::Checkpoint {
                text: "x".into(),
                seq: 2,
            },
        ),
    ];
    assert_eq!(
        store.checkpoint_many(OWNER, &batch, lease).await.unwrap(),
        vec![Some(false), None]
    );
    assert_eq!(store.run(&ids.run_id).await.unwrap().unwrap().text, "Hell");
    assert_eq!(
        store.run(&other.run_id).await.unwrap().unwrap().text,
        "",
        "not ours to write"
    );

    // More runs than one statement saves: results in order, whatever the split.
    let many = store
        .create_conversation(&carol.id, "many", "scripted/demo", None)
        .await
        .unwrap();
    let mut batch = Vec::new();
    for i in 0..70 {
        let owner = if i % 3 == 0 { "instance-b" } else { OWNER };
        let started = store
            .start_turn(&turn(&carol, &many.id, None, "n"), owner, lease)
            .await
            .unwrap();
        if i == 67 {
            store.request_stop(&started.run_id).await.unwrap();
        }
        let text = format!("run {i}");
        batch.push((started.run_id, chorus_store::Checkpoint { text, seq: i }));
    }
    let results = store.checkpoint_many(OWNER, &batch, lease).await.unwrap();
    for (i, ((id, _), result)) in batch.iter().zip(&results).enumerate() {
        let expected = match i {
            _ if i % 3 == 0 => None,
            67 => Some(true),
            _ => Some(false),
        };
        assert_eq!(*result, expected, "run {i}");
        let saved = store.run(id).await.unwrap().unwrap();
        if expected.is_some() {
            assert_eq!(
                (saved.text.as_str(), saved.checkpoint_seq),
                (format!("run {i}").as_str(), i as i64)
            );
            assert_eq!(saved.status, RunStatus::Streaming);
        } else {
            assert_eq!(saved.text, "", "not ours to write");
        }
    }

    // The batched checkpoint renews a lease once a sixth of it has passed, not at
    // every write (which would rewrite `runs_active`'s entry twice a second).
    let one = |text: &str| {
        vec![(
            ids.run_id.clone(),
            chorus_store::Checkpoint {
                text: text.into(),
                seq: 4,
            },
        )]
    };
    let lease_of = |run: Option<chorus_store::Run>| run.unwrap().lease_expires_at;
    let soon = lease + 1_000;
    store
        .checkpoint_many(OWNER, &one("Hel"), soon)
        .await
        .unwrap();
    let run = store.run(&ids.run_id).await.unwrap();
    assert_eq!(lease_of(run.clone()), Some(lease), "renewed too early");
    assert_eq!(run.unwrap().text, "Hel", "the text is written all the same");
    let later = lease + 20_000;
    store
        .checkpoint_many(OWNER, &one("Hell"), later)
        .await
        .unwrap();
    assert_eq!(
        lease_of(store.run(&ids.run_id).await.unwrap()),
        Some(later),
        "not renewed once a sixth of the lease had passed"
    );

    store.request_stop(&ids.run_id).await.unwrap();
    assert!(
        store
            .checkpoint(&ids.run_id, OWNER, "Hello", 5, lease)
            .await
            .unwrap()
    );

    // A continuation cannot start while the run is active.
    let active = store.run(&ids.run_id).await.unwrap().unwrap();
    assert!(matches!(
        store
            .start_continuation(&active, "scripted/demo", OWNER, lease)
            .await,
        Err(StoreError::Conflict(StoreConflict::MessageRunActive))
    ));

    let outcome = RunOutcome {
        status: RunStatus::Stopped,
        text: "Hello".into(),
        seq: 6,
        finish_reason: Some("stopped".into()),
        error: None,
        prompt_tokens: Some(3),
        completion_tokens: Some(2),
        cached_prompt_tokens: Some(1),
        reasoning_tokens: Some(0),
    };
    assert!(
        !store
            .finish_run(&ids.run_id, "instance-b", &outcome)
            .await
            .unwrap(),
        "not b's run"
    );
    assert!(
        store
            .finish_run(&ids.run_id, OWNER, &outcome)
            .await
            .unwrap()
    );
    assert!(
        !store
            .finish_run(&ids.run_id, OWNER, &outcome)
            .await
            .unwrap(),
        "ends once"
    );
    let stopped = store.run(&ids.run_id).await.unwrap().unwrap();
    assert_eq!(stopped.status, RunStatus::Stopped);
    assert_eq!(stopped.completion_tokens, Some(2));
    assert_eq!(stopped.cached_prompt_tokens, Some(1));
    assert_eq!(
        store
            .message_content(&ids.assistant_message_id)
            .await
            .unwrap(),
        "Hello"
    );

    // The continuation extends the same message.
    let next = store
        .start_continuation(&stopped, "scripted/demo", OWNER, lease)
        .await
        .unwrap();
    let cont = store.run(&next).await.unwrap().unwrap();
    assert_eq!(cont.message_id, ids.assistant_message_id);
    assert_eq!(cont.continues_run_id.as_ref(), Some(&ids.run_id));
    assert_eq!(
        cont.prefix_len, 5,
        "the continuation extends the 5 bytes of 'Hello'"
    );
    let done = RunOutcome {
        status: RunStatus::Complete,
        text: ", world".into(),
        seq: 4,
        finish_reason: Some("stop".into()),
        ..outcome
    };
    assert!(store.finish_run(&next, OWNER, &done).await.unwrap());
    assert_eq!(
        store
            .message_content(&ids.assistant_message_id)
            .await
            .unwrap(),
        "Hello, world"
    );

    // A second turn hangs under the first reply; the branch walks root to leaf.
    let latest = store.latest_message(&conv.id).await.unwrap().unwrap();
    assert_eq!(latest, ids.assistant_message_id);
    let ids2 = store
        .start_turn(&turn(&carol, &conv.id, Some(latest), "again"), OWNER, lease)
        .await
        .unwrap();
    let branch = store.branch(&conv.id, &ids2.user_message_id).await.unwrap();
    let contents: Vec<_> = branch.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents, ["hello", "Hello, world", "again"]);
    // An edit: a sibling of the first user message starts a new branch.
    let ids3 = store
        .start_turn(&turn(&carol, &conv.id, None, "edited hello"), OWNER, lease)
        .await
        .unwrap();
    let branch = store
        .branch(&conv.id, &ids3.assistant_message_id)
        .await
        .unwrap();
    assert_eq!(branch.len(), 2);
    assert_eq!(branch[0].content, "edited hello");
    assert!(
        store
            .message_in_conversation(&conv.id, &ids3.user_message_id)
            .await
            .unwrap()
    );
    assert!(
        !store
            .message_in_conversation(&conv.id, &MessageId::generate())
            .await
            .unwrap()
    );
}

async fn deleting_a_conversation_removes_its_tree(store: &Store) {
    let fay = store.create_account("fay", Role::User, None).await.unwrap();
    let conv = store
        .create_conversation(&fay.id, "f", "scripted/demo", None)
        .await
        .unwrap();
    let lease = now_ms() + 60_000;
    let first = store
        .start_turn(&turn(&fay, &conv.id, None, "one"), OWNER, lease)
        .await
        .unwrap();
    let busy = store
        .delete_conversation(&fay.id, &conv.id)
        .await
        .unwrap_err();
    assert!(
        matches!(
            busy,
            StoreError::Conflict(StoreConflict::ConversationReplyActive)
        ),
        "refused while a run is going"
    );
    let done = RunOutcome {
        status: RunStatus::Complete,
        text: "reply".into(),
        seq: 3,
        finish_reason: Some("stop".into()),
        error: None,
        prompt_tokens: None,
        completion_tokens: None,
        cached_prompt_tokens: None,
        reasoning_tokens: None,
    };
    assert!(store.finish_run(&first.run_id, OWNER, &done).await.unwrap());
    let second = store
        .start_turn(
            &turn(
                &fay,
                &conv.id,
                Some(first.assistant_message_id.clone()),
                "two",
            ),
            OWNER,
            lease,
        )
        .await
        .unwrap();
    assert!(
        store
            .finish_run(&second.run_id, OWNER, &done)
            .await
            .unwrap()
    );
    assert!(store.delete_conversation(&fay.id, &conv.id).await.unwrap());
    assert!(
        store
            .conversation(&fay.id, &conv.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.messages(&conv.id).await.unwrap().is_empty());
    assert!(store.run(&first.run_id).await.unwrap().is_none());
}

async fn orphans_are_interrupted_once(store: &Store) {
    let dan = store.create_account("dan", Role::User, None).await.unwrap();
    let conv = store
        .create_conversation(&dan.id, "d", "scripted/demo", None)
        .await
        .unwrap();
    let lapsed = store
        .start_turn(
            &turn(&dan, &conv.id, None, "q1"),
            "dead-instance",
            now_ms() - 1,
        )
        .await
        .unwrap();
    let mine = store
        .start_turn(&turn(&dan, &conv.id, None, "q2"), OWNER, now_ms() + 60_000)
        .await
        .unwrap();
    store
        .checkpoint(&lapsed.run_id, "dead-instance", "partial", 4, now_ms() - 1)
        .await
        .unwrap();

    let orphans = store.orphaned_runs(None).await.unwrap();
    let ids: Vec<&RunId> = orphans.iter().map(|r| &r.id).collect();
    assert!(ids.contains(&&lapsed.run_id));
    assert!(!ids.contains(&&mine.run_id), "a live lease is not orphaned");
    let after_restart = store.orphaned_runs(Some(OWNER)).await.unwrap();
    assert!(
        after_restart.iter().any(|r| r.id == mine.run_id),
        "a restarted owner reclaims its runs"
    );

    let orphan = orphans.into_iter().find(|r| r.id == lapsed.run_id).unwrap();
    assert_eq!(orphan.text, "partial");
    assert!(
        store
            .interrupt_orphan(&orphan, "partial text", 6)
            .await
            .unwrap()
    );
    assert!(
        !store
            .interrupt_orphan(&orphan, "partial text", 6)
            .await
            .unwrap(),
        "only once"
    );
    let run = store.run(&lapsed.run_id).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Interrupted);
    assert_eq!(run.text, "partial text");
    assert_eq!(
        store
            .message_content(&lapsed.assistant_message_id)
            .await
            .unwrap(),
        "partial text"
    );
    // The dead owner can no longer write to it.
    assert!(
        store
            .checkpoint(&lapsed.run_id, "dead-instance", "late", 9, now_ms())
            .await
            .is_err()
    );
}

/// Many turn contexts read at once (on PostgreSQL the reads waiting together share
/// one statement, `store/src/read_lanes.rs`): each reader gets its own conversation
/// with its messages in order and a streaming run's text so far, the same
/// conversation twice gets it twice, and a conversation of someone else's or no
/// one's gets nothing.
async fn turn_contexts_read_at_once_answer_each_reader(store: &Store) {
    let dora = store
        .create_account("dora", Role::User, None)
        .await
        .unwrap();
    let finn = store
        .create_account("finn", Role::User, None)
        .await
        .unwrap();
    let lease = now_ms() + 60_000;
    // (owner, conversation, title, the messages' contents in order)
    let mut made = Vec::new();
    for i in 0..24 {
        let owner = if i % 4 == 3 { &finn } else { &dora };
        let title = format!("talk {i}");
        let conv = store
            .create_conversation(&owner.id, &title, "scripted/demo", None)
            .await
            .unwrap();
        let mut contents = Vec::new();
        let mut parent = None;
        for j in 0..i % 3 {
            let question = format!("q{i}.{j}");
            let ids = store
                .start_turn(&turn(owner, &conv.id, parent, &question), OWNER, lease)
                .await
                .unwrap();
            let partial = format!("a{i}.{j}");
            store
                .checkpoint(&ids.run_id, OWNER, &partial, 1, lease)
                .await
                .unwrap();
            contents.extend([question, partial]);
            parent = Some(ids.assistant_message_id);
        }
        made.push((owner.clone(), conv.id, title, contents));
    }
    let reads = made
        .iter()
        .flat_map(|(owner, conv, title, contents)| {
            let other = if owner.id == dora.id { &finn } else { &dora };
            let mine = Some((title.clone(), contents.clone()));
            [
                (owner.id.clone(), conv.clone(), mine.clone()),
                (other.id.clone(), conv.clone(), None),
                (owner.id.clone(), conv.clone(), mine),
            ]
        })
        .chain((0..8).map(|_| (dora.id.clone(), ConversationId::generate(), None)))
        .collect::<Vec<_>>();
    let read = futures::future::join_all(
        reads
            .iter()
            .map(|(account, conv, _)| store.turn_context(account, conv)),
    )
    .await;
    for ((account, conv, expected), got) in reads.iter().zip(read) {
        let got = got.unwrap().map(|context| {
            assert_eq!(&context.conversation.id, conv);
            assert_eq!(&context.conversation.account_id, account);
            let contents: Vec<String> = context.messages.into_iter().map(|m| m.content).collect();
            (context.conversation.title, contents)
        });
        assert_eq!(&got, expected, "{account}'s read of {conv}");
    }
}

#[tokio::test]
async fn store_suite_on_sqlite() {
    let (store, dir) = sqlite_store().await;
    suite(&store).await;
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn store_suite_on_postgres() {
    let (store, name) = postgres_store().await;
    suite(&store).await;
    store.close().await;
    drop_pg(&name).await;
}

/// A SQLite file's write-ahead log is checkpointed by a task of its own, not by the
/// commits (`store/src/wal.rs`): 2 MiB of writes, half of what makes SQLite checkpoint
/// on commit by default, reach the database file soon without anyone asking.
#[tokio::test]
async fn sqlite_checkpoints_its_log_off_the_writer() {
    let (store, dir) = sqlite_store().await;
    let file = dir.join("chorus.db");
    let size = || std::fs::metadata(&file).map_or(0, |m| m.len());
    let before = size();
    let dave = store
        .create_account("dave", Role::User, None)
        .await
        .unwrap();
    let text = "x".repeat(256 * 1024);
    for _ in 0..8 {
        let conv = store
            .create_conversation(&dave.id, "c", "scripted/demo", None)
            .await
            .unwrap();
        store
            .start_turn(
                &turn(&dave, &conv.id, None, &text),
                OWNER,
                now_ms() + 60_000,
            )
            .await
            .unwrap();
    }
    let written = 8 * text.len() as u64;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while size() < before + written {
        assert!(
            std::time::Instant::now() < deadline,
            "the log was not checkpointed: the database file has {} of the {written} bytes written",
            size().saturating_sub(before)
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}
