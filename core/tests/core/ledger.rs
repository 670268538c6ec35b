//! The ledger, admission, link codes, merges and API keys, on SQLite and PostgreSQL:
//! the same calls must give the same results on both backends, and an account's
//! balance must equal the sum of its ledger after every one of them.

use crate::support;

use chorus_core::quota::{Charge, LinkCode, Refusal, TokenCounts};
use chorus_model::ids::{AccountId, ConversationId, RunId};
use chorus_model::time::now_ms;
use chorus_store::{
    Account, Admission, ApiKeyScope, Identity, LedgerReason, NewConversation, NewTurn, Role,
    RunOutcome, RunStatus, Store, StoreConflict, StoreError,
};

pub(crate) const OWNER: &str = "instance-a";
pub(crate) const CREDIT: i64 = 1_000_000;

pub(crate) fn turn(account: &Account, conv: &ConversationId, text: &str) -> NewTurn {
    NewTurn {
        account_id: account.id.clone(),
        conversation_id: conv.clone(),
        parent_id: None,
        content: text.into(),
        model: "scripted/demo".into(),
    }
}

pub(crate) fn outcome(text: &str) -> RunOutcome {
    RunOutcome {
        status: RunStatus::Complete,
        text: text.into(),
        seq: 3,
        finish_reason: Some("stop".into()),
        error: None,
        prompt_tokens: Some(100),
        completion_tokens: Some(20),
        cached_prompt_tokens: Some(0),
        reasoning_tokens: Some(0),
    }
}

pub(crate) fn charge(amount: i64) -> Charge {
    Charge {
        model: "scripted/demo".into(),
        tokens: TokenCounts {
            prompt: 100,
            completion: 20,
            cached_prompt: 10,
        },
        amount,
    }
}

pub(crate) async fn assert_balanced(store: &Store, account: &AccountId) -> i64 {
    let balance = store.balance(account).await.unwrap();
    let sum = store.ledger_sum(account).await.unwrap();
    assert_eq!(balance, sum, "balance of {account} differs from its ledger");
    balance
}

/// A conversation of `account` with one finished run charged `amount`.
async fn conversation_with_run(
    store: &Store,
    account: &Account,
    amount: i64,
) -> (ConversationId, RunId) {
    let conv = store
        .create_conversation(&account.id, "c", "scripted/demo", None)
        .await
        .unwrap();
    let ids = store
        .start_turn(&turn(account, &conv.id, "hi"), OWNER, now_ms() + 60_000)
        .await
        .unwrap();
    assert!(
        store
            .finish_run_charged(&ids.run_id, OWNER, &outcome("hello"), Some(&charge(amount)))
            .await
            .unwrap()
    );
    (conv.id, ids.run_id)
}

async fn suite(mut store: Store) {
    store.set_initial_balance(5 * CREDIT);
    runs_are_charged_once(&store).await;
    admission_refuses_exhausted_and_busy_accounts(&mut store).await;
    store.set_initial_balance(3 * CREDIT);
    link_codes_merge_accounts(&store).await;
    link_codes_are_single_use_and_expire(&store).await;
    api_keys_have_scopes_and_revocation(&store).await;
    store.close().await;
}

async fn runs_are_charged_once(store: &Store) {
    let alice = store
        .create_account("alice", Role::User, None)
        .await
        .unwrap();
    assert_eq!(assert_balanced(store, &alice.id).await, 5 * CREDIT);
    let (_, run) = conversation_with_run(store, &alice, 1234).await;
    assert_eq!(assert_balanced(store, &alice.id).await, 5 * CREDIT - 1234);
    // The run has ended: ending it again (here or by the sweeper) charges nothing.
    assert!(
        !store
            .finish_run_charged(&run, OWNER, &outcome("again"), Some(&charge(99)))
            .await
            .unwrap()
    );
    let ended = store.run(&run).await.unwrap().unwrap();
    assert!(
        !store
            .interrupt_orphan_charged(&ended, "x", 9, Some(&charge(99)))
            .await
            .unwrap()
    );
    assert_eq!(assert_balanced(store, &alice.id).await, 5 * CREDIT - 1234);

    // An orphan is charged by whoever interrupts it, once.
    let conv = store
        .create_conversation(&alice.id, "o", "scripted/demo", None)
        .await
        .unwrap();
    let lapsed = store
        .start_turn(&turn(&alice, &conv.id, "q"), "dead", now_ms() - 1)
        .await
        .unwrap();
    let orphan = store.run(&lapsed.run_id).await.unwrap().unwrap();
    assert!(
        store
            .interrupt_orphan_charged(&orphan, "partial", 2, Some(&charge(500)))
            .await
            .unwrap()
    );
    assert!(
        !store
            .interrupt_orphan_charged(&orphan, "partial", 2, Some(&charge(500)))
            .await
            .unwrap()
    );
    assert_eq!(assert_balanced(store, &alice.id).await, 5 * CREDIT - 1734);

    let ledger = store.ledger(&alice.id, 100).await.unwrap();
    let runs: Vec<_> = ledger.iter().filter(|e| e.reason == "run_usage").collect();
    assert_eq!(runs.len(), 2);
    assert!(
        runs.iter()
            .all(|e| e.prompt_tokens == Some(100) && e.cached_prompt_tokens == Some(10))
    );
    assert!(
        ledger
            .iter()
            .any(|e| e.reason == "initial" && e.amount == 5 * CREDIT)
    );

    // Grants and deductions.
    let after = store
        .credit(&alice.id, 2 * CREDIT, LedgerReason::Grant, Some("welcome"))
        .await
        .unwrap();
    assert_eq!(after, 7 * CREDIT - 1734);
    assert_eq!(assert_balanced(store, &alice.id).await, after);
    assert!(matches!(
        store
            .credit(&AccountId::generate(), CREDIT, LedgerReason::Grant, None)
            .await,
        Err(StoreError::NotFound("account"))
    ));

    // A refill happens once per interval, however many ask.
    let (a, b) = tokio::join!(
        store.refill_if_due(&alice.id, CREDIT, 3_600_000),
        store.refill_if_due(&alice.id, CREDIT, 3_600_000)
    );
    let refills = [a.unwrap(), b.unwrap()];
    assert_eq!(
        refills.iter().filter(|r| r.is_some()).count(),
        1,
        "{refills:?}"
    );
    assert_eq!(assert_balanced(store, &alice.id).await, after + CREDIT);

    // Usage per day and model.
    let (days, models) = store.usage(&alice.id, now_ms() - 86_400_000).await.unwrap();
    assert_eq!(days.len(), 1);
    assert_eq!(days[0].key, chorus_store::utc_date(now_ms() / 86_400_000));
    assert_eq!((days[0].runs, days[0].cost), (2, 1734));
    assert_eq!(models.len(), 1);
    assert_eq!(
        (
            models[0].key.as_str(),
            models[0].prompt_tokens,
            models[0].completion_tokens
        ),
        ("scripted/demo", 200, 40)
    );
    let (none, _) = store.usage(&alice.id, now_ms() + 86_400_000).await.unwrap();
    assert!(none.is_empty());
}

async fn admission_refuses_exhausted_and_busy_accounts(store: &mut Store) {
    store.set_initial_balance(0);
    let bob = store.create_account("bob", Role::User, None).await.unwrap();
    let conv = store
        .create_conversation(&bob.id, "b", "scripted/demo", None)
        .await
        .unwrap();
    let enforce = |reservation: i64, max_concurrent_runs: u32| Admission {
        enforce_balance: true,
        reservation,
        prompt_estimate: 50,
        max_concurrent_runs,
    };
    let lease = now_ms() + 60_000;
    let refused = store
        .start_turn_admitted(&turn(&bob, &conv.id, "hi"), OWNER, lease, &enforce(1, 0))
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            StoreError::Refused(Refusal::Exhausted { balance: 0 })
        ),
        "{refused:?}"
    );
    assert!(
        store.messages(&conv.id).await.unwrap().is_empty(),
        "a refused run writes nothing"
    );
    store
        .credit(&bob.id, CREDIT, LedgerReason::Grant, None)
        .await
        .unwrap();
    let refused = store
        .start_turn_admitted(
            &turn(&bob, &conv.id, "hi"),
            OWNER,
            lease,
            &enforce(2 * CREDIT, 0),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StoreError::Refused(Refusal::CannotCover { .. })),
        "{refused:?}"
    );
    // Without enforcement (quota disabled) the balance is not checked.
    let free = Admission {
        enforce_balance: false,
        reservation: 2 * CREDIT,
        ..Default::default()
    };
    let first = store
        .start_turn_admitted(&turn(&bob, &conv.id, "one"), OWNER, lease, &free)
        .await
        .unwrap();
    let busy = store
        .start_turn_admitted(&turn(&bob, &conv.id, "two"), OWNER, lease, &enforce(10, 1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            busy,
            StoreError::Refused(Refusal::TooManyRuns { running: 1 })
        ),
        "{busy:?}"
    );
    assert!(
        store
            .finish_run_charged(&first.run_id, OWNER, &outcome("a"), Some(&charge(10)))
            .await
            .unwrap()
    );
    let second = store
        .start_turn_admitted(&turn(&bob, &conv.id, "two"), OWNER, lease, &enforce(10, 1))
        .await
        .unwrap();
    let run = store.run(&second.run_id).await.unwrap().unwrap();
    assert_eq!(store.run_prompt_estimate(&run.id).await.unwrap(), 50);
    // An active run holds its reservation: another run is admitted only against what
    // is left of the balance, and the reservation goes when the run ends.
    let balance = store.balance(&bob.id).await.unwrap();
    let half = enforce(balance / 2 + 1, 0);
    let holding = store
        .start_turn_admitted(&turn(&bob, &conv.id, "three"), OWNER, lease, &half)
        .await
        .unwrap();
    let refused = store
        .start_turn_admitted(&turn(&bob, &conv.id, "four"), OWNER, lease, &half)
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            StoreError::Refused(Refusal::CannotCover { held, .. }) if held == balance / 2 + 1 + 10
        ),
        "{refused:?}"
    );
    assert!(
        store
            .finish_run_charged(&holding.run_id, OWNER, &outcome("b"), Some(&charge(10)))
            .await
            .unwrap()
    );
    assert!(
        store
            .finish_run_charged(&second.run_id, OWNER, &outcome("c"), Some(&charge(10)))
            .await
            .unwrap()
    );
    let after = store
        .start_turn_admitted(&turn(&bob, &conv.id, "four"), OWNER, lease, &half)
        .await
        .unwrap();
    let run = store.run(&after.run_id).await.unwrap().unwrap();
    // Continuations are admitted the same way.
    let busy = store
        .start_continuation_admitted(&run, "scripted/demo", OWNER, lease, &enforce(10, 1))
        .await
        .unwrap_err();
    assert!(
        matches!(busy, StoreError::Refused(Refusal::TooManyRuns { .. })),
        "{busy:?}"
    );
    // A gateway turn (a new conversation with its turn) that is refused leaves no
    // conversation behind, and one of an unknown account is refused as such.
    let kept = store.list_conversations(&bob.id, 100).await.unwrap().len();
    let conversation = NewConversation {
        title: "gateway".into(),
        system_prompt: None,
        expires_at: None,
    };
    let gateway_turn = NewTurn {
        conversation_id: ConversationId::generate(),
        ..turn(&bob, &conv.id, "five")
    };
    let refused = store
        .start_conversation_turn(
            &conversation,
            &gateway_turn,
            OWNER,
            lease,
            &enforce(100 * CREDIT, 0),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StoreError::Refused(Refusal::CannotCover { .. })),
        "{refused:?}"
    );
    assert_eq!(
        store.list_conversations(&bob.id, 100).await.unwrap().len(),
        kept
    );
    let stranger = NewTurn {
        account_id: AccountId::generate(),
        conversation_id: ConversationId::generate(),
        ..turn(&bob, &conv.id, "six")
    };
    let unknown = store
        .start_conversation_turn(
            &conversation,
            &stranger,
            OWNER,
            lease,
            &Admission::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(unknown, StoreError::NotFound("account")),
        "{unknown:?}"
    );
    assert_balanced(store, &bob.id).await;
}

async fn link_codes_merge_accounts(store: &Store) {
    let carol = store
        .create_account("carol", Role::User, None)
        .await
        .unwrap();
    let dave = store
        .create_account("dave", Role::Admin, None)
        .await
        .unwrap();
    let (carol_conv, _) = conversation_with_run(store, &carol, 700).await;
    let (dave_conv, dave_run) = conversation_with_run(store, &dave, 300).await;
    store
        .credit(&dave.id, 2 * CREDIT, LedgerReason::Grant, None)
        .await
        .unwrap();
    let dave_balance = assert_balanced(store, &dave.id).await;
    assert_eq!(dave_balance, 5 * CREDIT - 300);
    store
        .create_session("dave-session", &dave.id, now_ms() + 60_000)
        .await
        .unwrap();
    store
        .create_scoped_api_key(
            &dave.id,
            "k",
            "dave-key",
            "chorus_dave",
            &[ApiKeyScope::Chat],
        )
        .await
        .unwrap();
    let dave_code = LinkCode::generate();
    store
        .create_link_code(&dave.id, &dave_code.hash(), now_ms() + 600_000, 3)
        .await
        .unwrap();

    let code = LinkCode::generate();
    store
        .create_link_code(&carol.id, &code.hash(), now_ms() + 600_000, 3)
        .await
        .unwrap();
    let outcome = store
        .redeem_link_code(&code.hash(), &Identity::web("dave"))
        .await
        .unwrap();
    assert_eq!(outcome.account_id, carol.id);
    assert_eq!(outcome.merged_from.as_ref(), Some(&dave.id));
    assert_eq!(
        (outcome.conversations_moved, outcome.balance_moved),
        (1, dave_balance)
    );

    // One account with both histories; both ledgers still sum to their balances.
    assert_eq!(
        assert_balanced(store, &carol.id).await,
        3 * CREDIT - 700 + dave_balance
    );
    assert_eq!(assert_balanced(store, &dave.id).await, 0);
    // The console's spend follows the person into the live account.
    let listed = store.account_listing(&carol.id).await.unwrap().unwrap();
    assert_eq!(listed.spent, 700 + 300);
    let convs: Vec<ConversationId> = store
        .list_conversations(&carol.id, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert!(
        convs.contains(&carol_conv) && convs.contains(&dave_conv),
        "{convs:?}"
    );
    assert!(
        store
            .conversation(&dave.id, &dave_conv)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.run(&dave_run).await.unwrap().unwrap().account_id,
        carol.id
    );
    let (_, models) = store.usage(&carol.id, 0).await.unwrap();
    assert_eq!(
        (models[0].runs, models[0].cost),
        (2, 1000),
        "merged history counts"
    );
    let ledger = store.ledger(&carol.id, 100).await.unwrap();
    assert!(
        ledger
            .iter()
            .any(|e| e.reason == "merge" && e.amount == dave_balance)
    );

    // The tombstone: its sessions, keys and codes are dead; its identity and name lead
    // to the live account.
    let tomb = store.account(&dave.id).await.unwrap().unwrap();
    assert_eq!(tomb.status, "merged");
    assert!(!tomb.is_active());
    assert_eq!(
        store.live_account(&tomb).await.unwrap().unwrap().id,
        carol.id
    );
    assert!(
        store
            .account_by_session("dave-session", None)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .account_by_api_key("dave-key")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .account_by_identity("web", "dave")
            .await
            .unwrap()
            .unwrap()
            .id,
        carol.id
    );
    assert!(matches!(
        store
            .redeem_link_code(&dave_code.hash(), &Identity::new("matrix", "@x:y"))
            .await,
        Err(StoreError::NotFound("link code"))
    ));
    // A tombstone cannot start runs or be charged into.
    assert!(matches!(
        store
            .credit(&dave.id, CREDIT, LedgerReason::Grant, None)
            .await,
        Err(StoreError::NotFound("account"))
    ));
}

async fn link_codes_are_single_use_and_expire(store: &Store) {
    let erin = store
        .create_account("erin", Role::User, None)
        .await
        .unwrap();
    let frank = store
        .create_account("frank", Role::User, None)
        .await
        .unwrap();
    let codes: Vec<LinkCode> = (0..3).map(|_| LinkCode::generate()).collect();
    for code in &codes {
        store
            .create_link_code(&erin.id, &code.hash(), now_ms() + 600_000, 3)
            .await
            .unwrap();
    }
    let fourth = store
        .create_link_code(
            &erin.id,
            &LinkCode::generate().hash(),
            now_ms() + 600_000,
            3,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            fourth,
            StoreError::Conflict(StoreConflict::TooManyLinkCodes { active: 3 })
        ),
        "{fourth:?}"
    );

    // Redeeming your own code changes nothing and leaves the code usable.
    assert!(matches!(
        store
            .redeem_link_code(&codes[0].hash(), &Identity::web("erin"))
            .await,
        Err(StoreError::Conflict(StoreConflict::OwnLinkCode))
    ));
    // A new identity just joins.
    let matrix = Identity::new("matrix", "@erin:example.org");
    let joined = store
        .redeem_link_code(&codes[0].hash(), &matrix)
        .await
        .unwrap();
    assert_eq!(
        (joined.account_id.clone(), joined.merged_from),
        (erin.id.clone(), None)
    );
    assert_eq!(
        store
            .account_by_identity("matrix", "@erin:example.org")
            .await
            .unwrap()
            .unwrap()
            .id,
        erin.id
    );
    // Replayed: gone.
    assert!(matches!(
        store
            .redeem_link_code(&codes[0].hash(), &Identity::web("frank"))
            .await,
        Err(StoreError::NotFound("link code"))
    ));
    // Expired: gone, and nothing changed for frank.
    let old = LinkCode::generate();
    store
        .create_link_code(&erin.id, &old.hash(), now_ms() - 1, 3)
        .await
        .unwrap();
    assert!(matches!(
        store
            .redeem_link_code(&old.hash(), &Identity::web("frank"))
            .await,
        Err(StoreError::NotFound("link code"))
    ));
    assert!(store.account(&frank.id).await.unwrap().unwrap().is_active());
    assert_balanced(store, &frank.id).await;
    assert_balanced(store, &erin.id).await;
}

async fn api_keys_have_scopes_and_revocation(store: &Store) {
    let gina = store
        .create_account("gina", Role::User, None)
        .await
        .unwrap();
    let hank = store
        .create_account("hank", Role::User, None)
        .await
        .unwrap();
    let key = store
        .create_scoped_api_key(
            &gina.id,
            "reader",
            "gina-read",
            "chorus_gina",
            &[ApiKeyScope::Read, ApiKeyScope::Read],
        )
        .await
        .unwrap();
    assert_eq!(key.scopes, vec![ApiKeyScope::Read]);
    let keyed = store
        .account_by_api_key("gina-read")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (keyed.account.id, keyed.scopes),
        (gina.id.clone(), vec![ApiKeyScope::Read])
    );
    let listed = store.list_api_keys(&gina.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    let used = listed[0].last_used_at.expect("use recorded");
    // Used again at once: not written again (to the minute).
    store
        .account_by_api_key("gina-read")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.list_api_keys(&gina.id).await.unwrap()[0].last_used_at,
        Some(used)
    );
    assert!(store.list_api_keys(&hank.id).await.unwrap().is_empty());
    assert!(
        !store.revoke_api_key(&hank.id, &key.id).await.unwrap(),
        "not hank's key"
    );
    assert!(
        store
            .account_by_api_key("gina-read")
            .await
            .unwrap()
            .is_some()
    );
    assert!(store.revoke_api_key(&gina.id, &key.id).await.unwrap());
    assert!(
        !store.revoke_api_key(&gina.id, &key.id).await.unwrap(),
        "once"
    );
    assert!(
        store
            .account_by_api_key("gina-read")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store.list_api_keys(&gina.id).await.unwrap()[0]
            .revoked_at
            .is_some()
    );
}

#[tokio::test]
async fn ledger_suite_on_sqlite() {
    let (store, dir) = support::sqlite_store().await;
    suite(store).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn ledger_suite_on_postgres() {
    let (store, name) = support::postgres_store().await;
    suite(store).await;
    support::drop_pg(&name).await;
}
