//! Admissions racing on SQLite and PostgreSQL: concurrent sends of one account, and
//! new turns of several accounts sent at once (on SQLite a group commit applies them
//! together, in set-based statements; on PostgreSQL the turn lanes do so for turns
//! their admission cannot refuse), decided exactly as one at a time would be.

use crate::ledger::{CREDIT, OWNER, assert_balanced, charge, outcome, turn};
use crate::support;

use chorus_core::quota::Refusal;
use chorus_model::ids::ConversationId;
use chorus_model::time::now_ms;
use chorus_store::{Admission, LedgerReason, NewConversation, NewTurn, Role, Store, StoreError};
use futures::future::join_all;

/// An admission that decides: a reservation held against the balance, at most
/// `max_concurrent_runs` runs at once.
fn limited_admission(max_concurrent_runs: u32) -> Admission {
    Admission {
        enforce_balance: true,
        reservation: 10,
        prompt_estimate: 5,
        max_concurrent_runs,
    }
}

async fn suite(mut store: Store) {
    store.set_initial_balance(5 * CREDIT);
    concurrent_runs_start_and_end_exactly(&store).await;
    turns_queued_together_are_decided_in_order(&store).await;
    a_burst_of_free_turns_is_written_whole(&store).await;
    store.close().await;
}

/// Concurrent admissions and ends of one account (on SQLite they share group
/// commits): a concurrency limit admits exactly as many runs as it allows, the
/// refused ones write nothing (not even their new conversation), and each admitted
/// run is charged exactly once however many ends race.
async fn concurrent_runs_start_and_end_exactly(store: &Store) {
    const SENDS: usize = 40;
    const LIMIT: u32 = 8;
    let ivy = store.create_account("ivy", Role::User, None).await.unwrap();
    store
        .credit(&ivy.id, CREDIT, LedgerReason::Grant, None)
        .await
        .unwrap();
    let start = assert_balanced(store, &ivy.id).await;
    let admission = limited_admission(LIMIT);
    let lease = now_ms() + 60_000;
    let sends = (0..SENDS).map(|i| {
        let (store, ivy, admission) = (store.clone(), ivy.clone(), admission.clone());
        async move {
            let conversation = NewConversation {
                title: format!("API: {i}"),
                system_prompt: Some("be brief".into()),
                expires_at: None,
            };
            let turn = turn(&ivy, &ConversationId::generate(), &format!("q{i}"));
            store
                .start_conversation_turn(&conversation, &turn, OWNER, lease, &admission)
                .await
                .map(|ids| (turn.conversation_id, ids))
        }
    });
    let mut admitted = Vec::new();
    for result in join_all(sends).await {
        match result {
            Ok(started) => admitted.push(started),
            Err(StoreError::Refused(Refusal::TooManyRuns { running })) => {
                assert_eq!(running, i64::from(LIMIT));
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(
        admitted.len(),
        LIMIT as usize,
        "the limit admits exactly its runs"
    );
    let listed = store.list_conversations(&ivy.id, 100).await.unwrap();
    assert_eq!(
        listed.len(),
        LIMIT as usize,
        "a refused request leaves no conversation"
    );
    for (conversation, ids) in &admitted {
        let messages = store.messages(conversation).await.unwrap();
        assert_eq!(messages.len(), 2, "the question and the reply");
        assert_eq!(messages[1].run_id.as_ref(), Some(&ids.run_id));
        let stored = store
            .conversation(&ivy.id, conversation)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.system_prompt.as_deref(), Some("be brief"));
        assert!(stored.title.starts_with("API: "));
    }
    // Every end twice at once: each run is ended and charged once.
    let ends = admitted.iter().chain(admitted.iter()).map(|(_, ids)| {
        let (store, run) = (store.clone(), ids.run_id.clone());
        async move {
            store
                .finish_run_charged(&run, OWNER, &outcome("done"), Some(&charge(1000)))
                .await
                .unwrap()
        }
    });
    let ended = join_all(ends).await.into_iter().filter(|e| *e).count();
    assert_eq!(ended, LIMIT as usize, "each run ends once");
    assert_eq!(
        assert_balanced(store, &ivy.id).await,
        start - 1000 * i64::from(LIMIT)
    );
    for (conversation, _) in &admitted {
        let messages = store.messages(conversation).await.unwrap();
        assert_eq!(messages[1].content, "done");
        assert_eq!(messages[1].run_status.as_deref(), Some("complete"));
    }
}

/// New turns of several accounts sent at once (on SQLite a group commit applies them
/// together, in set-based statements): each is decided as if alone and in order — a
/// limit admits exactly its runs, a suspended account writes nothing, the last turn on
/// a conversation sets its model, a text the set-based form cannot carry (a NUL) is
/// written whole — and a write the database rejects fails alone.
async fn turns_queued_together_are_decided_in_order(store: &Store) {
    const LIMIT: u32 = 3;
    let kim = store.create_account("kim", Role::User, None).await.unwrap();
    store
        .credit(&kim.id, CREDIT, LedgerReason::Grant, None)
        .await
        .unwrap();
    let lee = store.create_account("lee", Role::User, None).await.unwrap();
    store
        .admin_set_status(&chorus_store::Actor::system(), &lee.id, "suspended")
        .await
        .unwrap();
    let kim_balance = assert_balanced(store, &kim.id).await;
    let max = store.create_account("max", Role::User, None).await.unwrap();
    let shared = store
        .create_conversation(&max.id, "shared", "scripted/demo", None)
        .await
        .unwrap();
    let limited = limited_admission(LIMIT);
    let lease = now_ms() + 60_000;
    let new_conversation = |title: &str| NewConversation {
        title: title.into(),
        system_prompt: None,
        expires_at: None,
    };
    let nul = "before\0after";
    // (account, conversation: new or existing, content, model, admission)
    let mut sends = Vec::new();
    for i in 0..5 {
        sends.push((
            &kim,
            None,
            format!("k{i}"),
            "scripted/demo",
            limited.clone(),
        ));
    }
    sends.push((
        &lee,
        None,
        "l".into(),
        "scripted/demo",
        Admission::default(),
    ));
    sends.push((
        &max,
        Some(shared.id.clone()),
        "m1".into(),
        "scripted/a",
        Admission::default(),
    ));
    sends.push((
        &max,
        Some(shared.id.clone()),
        "m2".into(),
        "scripted/b",
        Admission::default(),
    ));
    // PostgreSQL's text holds no NUL character: only SQLite keeps one.
    let sqlite = store.backend() == chorus_store::Backend::Sqlite;
    if sqlite {
        sends.push((
            &max,
            None,
            nul.into(),
            "scripted/demo",
            Admission::default(),
        ));
    }
    let results = join_all(
        sends
            .into_iter()
            .map(|(account, existing, text, model, admission)| {
                let store = store.clone();
                let new = existing.is_none().then(|| new_conversation(&text));
                let turn = NewTurn {
                    model: model.into(),
                    ..turn(
                        account,
                        &existing.unwrap_or_else(ConversationId::generate),
                        &text,
                    )
                };
                async move {
                    let ids = match &new {
                        Some(conversation) => {
                            store
                                .start_conversation_turn(
                                    conversation,
                                    &turn,
                                    OWNER,
                                    lease,
                                    &admission,
                                )
                                .await
                        }
                        None => {
                            store
                                .start_turn_admitted(&turn, OWNER, lease, &admission)
                                .await
                        }
                    };
                    ids.map(|ids| (turn.conversation_id, ids))
                }
            }),
    )
    .await;
    let (kims, rest) = results.split_at(5);
    let admitted: Vec<_> = kims.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(
        admitted.len(),
        LIMIT as usize,
        "the limit admits exactly its runs"
    );
    for refused in kims.iter().filter_map(|r| r.as_ref().err()) {
        assert!(
            matches!(
                refused,
                StoreError::Refused(Refusal::TooManyRuns { running: 3 })
            ),
            "{refused:?}"
        );
    }
    assert_eq!(
        store.list_conversations(&kim.id, 100).await.unwrap().len(),
        LIMIT as usize
    );
    for (conversation, ids) in &admitted {
        let messages = store.messages(conversation).await.unwrap();
        assert_eq!(messages.len(), 2, "the question and the reply");
        assert_eq!(messages[0].role, "user");
        assert_eq!(messages[1].parent_id.as_ref(), Some(&messages[0].id));
        assert_eq!(messages[1].run_id.as_ref(), Some(&ids.run_id));
        assert_eq!(messages[1].run_status.as_deref(), Some("queued"));
    }
    assert!(
        matches!(rest[0], Err(StoreError::NotFound("account"))),
        "a suspended account is refused: {:?}",
        rest[0]
    );
    assert!(
        store
            .list_conversations(&lee.id, 100)
            .await
            .unwrap()
            .is_empty()
    );
    for result in &rest[1..] {
        assert!(result.is_ok(), "{result:?}");
    }
    // SQLite's writer applies them in queue order; on PostgreSQL the two turns run
    // in concurrent transactions, in no set order.
    let messages = store.messages(&shared.id).await.unwrap();
    let mut texts: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
    let stored = store
        .conversation(&max.id, &shared.id)
        .await
        .unwrap()
        .unwrap();
    if sqlite {
        assert_eq!(texts, ["m1", "", "m2", ""]);
        assert_eq!(stored.model, "scripted/b", "the later turn sets the model");
    } else {
        texts.sort_unstable();
        assert_eq!(texts, ["", "", "m1", "m2"]);
        assert!(["scripted/a", "scripted/b"].contains(&stored.model.as_str()));
    }
    for reply in messages.iter().filter(|m| m.role == "assistant") {
        let question = messages
            .iter()
            .find(|m| Some(&m.id) == reply.parent_id.as_ref());
        assert!(question.is_some_and(|q| q.role == "user"), "{reply:?}");
    }
    if sqlite {
        let (with_nul, _) = rest[3].as_ref().unwrap();
        let messages = store.messages(with_nul).await.unwrap();
        assert_eq!(messages[0].content, nul, "the text is written whole");
    }

    // Turns that only an inactive account refuses, together: the suspended account's
    // writes nothing, the others are written.
    let free = Admission::default();
    let (lee_turn, max_turn) = (
        turn(&lee, &ConversationId::generate(), "again"),
        turn(&max, &ConversationId::generate(), "free"),
    );
    let (lee_conversation, max_conversation) = (new_conversation("l"), new_conversation("m"));
    let (refused, admitted_free) = tokio::join!(
        store.start_conversation_turn(&lee_conversation, &lee_turn, OWNER, lease, &free),
        store.start_conversation_turn(&max_conversation, &max_turn, OWNER, lease, &free),
    );
    assert!(
        matches!(refused, Err(StoreError::NotFound("account"))),
        "{refused:?}"
    );
    assert!(
        store
            .list_conversations(&lee.id, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .messages(&lee_turn.conversation_id)
            .await
            .unwrap()
            .is_empty()
    );
    let run = store
        .latest_run_of_conversation(&max_turn.conversation_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.id, admitted_free.unwrap().run_id);

    // A new conversation whose id is taken fails with the database's error; the turns
    // beside it are written.
    let taken = NewTurn {
        model: "scripted/demo".into(),
        ..turn(&max, &shared.id, "taken")
    };
    let fresh = turn(&max, &ConversationId::generate(), "fresh");
    let (t, f) = (new_conversation("t"), new_conversation("f"));
    let (taken, started) = tokio::join!(
        store.start_conversation_turn(&t, &taken, OWNER, lease, &free),
        store.start_conversation_turn(&f, &fresh, OWNER, lease, &free),
    );
    assert!(matches!(taken, Err(StoreError::Database(_))), "{taken:?}");
    let started = started.unwrap();
    let run = store
        .latest_run_of_conversation(&fresh.conversation_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.id, started.run_id);
    assert_eq!(
        store.messages(&shared.id).await.unwrap().len(),
        4,
        "nothing of the failed turn"
    );
    for (_, ids) in &admitted {
        assert!(
            store
                .finish_run_charged(&ids.run_id, OWNER, &outcome("done"), Some(&charge(100)))
                .await
                .unwrap()
        );
    }
    assert_eq!(assert_balanced(store, &kim.id).await, kim_balance - 300);
}

/// Two bursts of free turns at once, over the same accounts and more than one batch
/// takes (on PostgreSQL both turn lanes write batches locking the same rows, the
/// first of them writing the accounts' last activity), one account suspended: every
/// turn of an active account is written whole (on SQLite each turn on a conversation
/// after the one queued before it), and nothing is written for the suspended one.
async fn a_burst_of_free_turns_is_written_whole(store: &Store) {
    const TURNS: usize = 100;
    let started = now_ms();
    let mut accounts = Vec::new();
    for name in ["burst-a", "burst-b", "burst-c"] {
        accounts.push(store.create_account(name, Role::User, None).await.unwrap());
    }
    let gone = store
        .create_account("burst-gone", Role::User, None)
        .await
        .unwrap();
    store
        .admin_set_status(&chorus_store::Actor::system(), &gone.id, "suspended")
        .await
        .unwrap();
    let shared = store
        .create_conversation(&accounts[0].id, "shared", "scripted/demo", None)
        .await
        .unwrap();
    let lease = now_ms() + 60_000;
    let free = Admission::default();
    let burst = |round: usize| {
        join_all((0..TURNS).map(|i| {
            let account = if i % 10 == 9 { &gone } else { &accounts[i % 3] };
            // Every sixth turn of the first account goes to its shared conversation.
            let existing = (i % 6 == 0).then(|| shared.id.clone());
            let text = format!("r{round}-{i}");
            let turn = turn(
                account,
                existing.as_ref().unwrap_or(&ConversationId::generate()),
                &text,
            );
            let conversation = existing.is_none().then(|| NewConversation {
                title: text.clone(),
                system_prompt: Some("be brief".into()),
                expires_at: None,
            });
            let (store, free) = (store.clone(), free.clone());
            async move {
                let ids = match &conversation {
                    Some(c) => {
                        store
                            .start_conversation_turn(c, &turn, OWNER, lease, &free)
                            .await
                    }
                    None => store.start_turn_admitted(&turn, OWNER, lease, &free).await,
                };
                (turn, ids)
            }
        }))
    };
    let (first, second) = tokio::join!(burst(0), burst(1));
    for (turn, ids) in first.iter().chain(&second) {
        if turn.account_id == gone.id {
            assert!(
                matches!(ids, Err(StoreError::NotFound("account"))),
                "{ids:?}"
            );
            assert!(
                store
                    .messages(&turn.conversation_id)
                    .await
                    .unwrap()
                    .is_empty()
            );
            continue;
        }
        let ids = ids.as_ref().unwrap();
        let messages = store.messages(&turn.conversation_id).await.unwrap();
        let question = messages
            .iter()
            .find(|m| m.id == ids.user_message_id)
            .expect("the question is written");
        assert_eq!(question.content, turn.content);
        let reply = messages
            .iter()
            .find(|m| m.id == ids.assistant_message_id)
            .expect("the reply is written");
        assert_eq!(reply.parent_id.as_ref(), Some(&question.id));
        assert_eq!(reply.run_id.as_ref(), Some(&ids.run_id));
        assert_eq!(reply.run_status.as_deref(), Some("queued"));
        assert!(
            (question.created_at, question.id.as_str()) < (reply.created_at, reply.id.as_str()),
            "the reply is listed after its question"
        );
    }
    assert!(
        store
            .list_conversations(&gone.id, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let on_shared = |(turn, _): &&(NewTurn, _)| turn.conversation_id == shared.id;
    let shared_turns = first.iter().chain(&second).filter(on_shared).count();
    let refused = first
        .iter()
        .chain(&second)
        .filter(|(t, _)| t.account_id == gone.id)
        .count();
    assert_eq!((shared_turns, refused), (2 * 17, 2 * 10));
    let shared_messages = store.messages(&shared.id).await.unwrap();
    assert_eq!(shared_messages.len(), 2 * shared_turns);
    // SQLite's writer applies the turns in queue order; PostgreSQL's lanes apply two
    // batches at once, in no set order between them.
    let sqlite = store.backend() == chorus_store::Backend::Sqlite;
    if sqlite {
        let questions: Vec<&str> = shared_messages
            .iter()
            .filter(|m| m.role == "user")
            .map(|m| m.content.as_str())
            .collect();
        let queued: Vec<&str> = first
            .iter()
            .chain(&second)
            .filter(on_shared)
            .map(|(turn, _)| turn.content.as_str())
            .collect();
        assert_eq!(questions, queued, "turns are listed in queue order");
        let roles: Vec<&str> = shared_messages.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["user", "assistant"].repeat(shared_turns));
    }
    let owned: usize = join_all(
        accounts
            .iter()
            .map(|a| store.list_conversations(&a.id, 1000)),
    )
    .await
    .into_iter()
    .map(|c| c.unwrap().len())
    .sum();
    assert_eq!(
        owned,
        2 * TURNS - shared_turns - refused + 1,
        "one conversation per new turn"
    );
    let listed = store
        .list_accounts(Some("burst-"), chorus_store::AccountSort::LastActive, 0, 10)
        .await
        .unwrap();
    for listing in listed {
        let active = listing.account.id != gone.id;
        assert_eq!(
            listing.last_active_at.is_some_and(|t| t >= started),
            active,
            "{}",
            listing.account.name
        );
    }
}

#[tokio::test]
async fn concurrent_admissions_on_sqlite() {
    let (store, dir) = support::sqlite_store().await;
    suite(store).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn concurrent_admissions_on_postgres() {
    let (store, name) = support::postgres_store().await;
    suite(store).await;
    support::drop_pg(&name).await;
}
