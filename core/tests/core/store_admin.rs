//! The admin console's store: each admin change and its audit entry land together
//! (or neither does), the per-account aggregates the lists sort by follow the ledger
//! and admission, and the account search finds identities; on SQLite and PostgreSQL.

use crate::support;

use chorus_core::quota::{Charge, TokenCounts};
use chorus_model::ids::AccountId;
use chorus_model::time::now_ms;
use chorus_store::{
    AccountSort, Actor, AuditFilter, AuditKind, Change, HOUR_MS, MINUTE_MS, NewTurn, ProviderStat,
    Role, RunFilter, RunOutcome, RunStatus, Store, StoreConflict, StoreError,
};
use serde_json::json;

const CREDIT: i64 = 1_000_000;
const OWNER: &str = "instance-a";

fn admin_actor(id: &AccountId) -> Actor {
    Actor {
        id: Some(id.clone()),
        name: "root".into(),
    }
}

fn audit_of(object: &str) -> AuditFilter {
    AuditFilter {
        object_id: Some(object.into()),
        limit: 100,
        ..AuditFilter::default()
    }
}

async fn suite(mut store: Store) {
    store.set_initial_balance(2 * CREDIT);
    let root = store
        .create_account("root", Role::Admin, None)
        .await
        .unwrap();
    let alice = store
        .create_account("alice", Role::User, None)
        .await
        .unwrap();
    let bob = store.create_account("bob", Role::User, None).await.unwrap();
    let actor = admin_actor(&root.id);

    // A charged run moves alice's spend and last activity, which sort the list.
    let conv = store
        .create_conversation(&alice.id, "c", "scripted/demo", None)
        .await
        .unwrap();
    let started = now_ms();
    let ids = store
        .start_turn(
            &NewTurn {
                account_id: alice.id.clone(),
                conversation_id: conv.id.clone(),
                parent_id: None,
                content: "hi".into(),
                model: "scripted/demo".into(),
            },
            OWNER,
            now_ms() + 60_000,
        )
        .await
        .unwrap();
    let running = store
        .list_runs(&RunFilter {
            active: true,
            limit: 10,
            ..RunFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].account_name, "alice");
    assert_eq!(
        store.active_runs_of(&alice.id).await.unwrap(),
        vec![ids.run_id.clone()]
    );
    assert_eq!(store.active_run_count().await.unwrap(), 1);
    let outcome = RunOutcome {
        status: RunStatus::Complete,
        text: "hello".into(),
        seq: 3,
        finish_reason: Some("stop".into()),
        error: None,
        prompt_tokens: Some(100),
        completion_tokens: Some(20),
        cached_prompt_tokens: Some(0),
        reasoning_tokens: Some(0),
    };
    let charge = Charge {
        model: "scripted/demo".into(),
        tokens: TokenCounts {
            prompt: 100,
            completion: 20,
            cached_prompt: 0,
        },
        amount: 300_000,
    };
    assert!(
        store
            .finish_run_charged(&ids.run_id, OWNER, &outcome, Some(&charge))
            .await
            .unwrap()
    );
    // The rollup counts the run in its minute and hour, with its tokens and charge.
    let hour = started - started.rem_euclid(HOUR_MS);
    let minute = started - started.rem_euclid(MINUTE_MS);
    assert_eq!(store.spend_since(hour).await.unwrap(), 300_000);
    assert_eq!(store.spend_since(hour + HOUR_MS).await.unwrap(), 0);
    for (span, since) in [(MINUTE_MS, minute), (HOUR_MS, hour)] {
        let buckets = store.run_stats(span, since, span).await.unwrap();
        let total: Vec<(i64, i64, i64, i64, i64)> = buckets
            .iter()
            .map(|b| {
                (
                    b.replies,
                    b.failed,
                    b.prompt_tokens,
                    b.completion_tokens,
                    b.cost,
                )
            })
            .collect();
        assert_eq!(total, vec![(1, 0, 100, 20, 300_000)], "span {span}");
        assert!(buckets[0].start >= since);
    }
    // Grouped by day from the hours.
    let days = store
        .run_stats(HOUR_MS, hour - 86_400_000, 86_400_000)
        .await
        .unwrap();
    assert_eq!(days.iter().map(|b| b.replies).sum::<i64>(), 1);
    assert_eq!(days.last().map(|b| b.start % 86_400_000), Some(0));
    let by_spend = store
        .list_accounts(None, AccountSort::Spend, 0, 10)
        .await
        .unwrap();
    assert_eq!(by_spend[0].account.name, "alice");
    assert_eq!(by_spend[0].spent, 300_000);
    assert_eq!(by_spend[0].balance, 2 * CREDIT - 300_000);
    assert!(by_spend[0].last_active_at.is_some_and(|t| t >= started));
    let by_activity = store
        .list_accounts(None, AccountSort::LastActive, 0, 10)
        .await
        .unwrap();
    assert_eq!(by_activity[0].account.name, "alice");
    assert_eq!(by_activity.len(), 3);
    let page_two = store
        .list_accounts(None, AccountSort::Name, 2, 10)
        .await
        .unwrap();
    assert_eq!(page_two.len(), 1);
    assert_eq!(page_two[0].account.name, "root");

    // Search: a name prefix, an identity's external id or label, never a wildcard.
    store
        .add_identity("discord", "80351110224678912", &bob.id, "bobby#0001")
        .await
        .unwrap();
    let names = |list: Vec<chorus_store::AccountListing>| -> Vec<String> {
        list.into_iter().map(|a| a.account.name).collect()
    };
    let search = |q: &'static str| store.list_accounts(Some(q), AccountSort::Name, 0, 10);
    assert_eq!(names(search("ali").await.unwrap()), ["alice"]);
    assert_eq!(names(search("80351110224678912").await.unwrap()), ["bob"]);
    assert_eq!(names(search("bobby#0001").await.unwrap()), ["bob"]);
    assert!(search("%").await.unwrap().is_empty());
    assert!(search("_lice").await.unwrap().is_empty());

    // A grant: balance, ledger row with its note, and the audit entry, together.
    let balance = store
        .admin_credit(&actor, &alice.id, 5 * CREDIT, Some("by root: welcome"))
        .await
        .unwrap();
    assert_eq!(balance, 7 * CREDIT - 300_000);
    assert_eq!(store.ledger_sum(&alice.id).await.unwrap(), balance);
    let ledger = store.ledger_page(&alice.id, 0, 1).await.unwrap();
    assert_eq!(ledger[0].note.as_deref(), Some("by root: welcome"));
    let entries = store.audit_log(&audit_of(alice.id.as_str())).await.unwrap();
    assert_eq!(entries.len(), 1);
    let grant = &entries[0];
    assert_eq!(
        (grant.kind.as_str(), grant.action.as_str()),
        ("admin", "grant")
    );
    assert_eq!(grant.actor_name, "root");
    assert_eq!(grant.actor_id.as_deref(), Some(root.id.as_str()));
    assert_eq!(
        grant.before.as_ref().unwrap()["balance"],
        json!(2 * CREDIT - 300_000)
    );
    assert_eq!(grant.after.as_ref().unwrap()["balance"], json!(balance));
    assert_eq!(
        grant.after.as_ref().unwrap()["note"],
        json!("by root: welcome")
    );

    // Suspend and reactivate: the status and its before/after.
    let before = store
        .admin_set_status(&actor, &alice.id, "suspended")
        .await
        .unwrap();
    assert_eq!(before.status, "active");
    assert!(
        store
            .account(&alice.id)
            .await
            .unwrap()
            .unwrap()
            .is_suspended()
    );
    store
        .admin_set_status(&actor, &alice.id, "active")
        .await
        .unwrap();
    let entries = store.audit_log(&audit_of(alice.id.as_str())).await.unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["reactivate", "suspend", "grant"]);
    assert_eq!(
        entries[1].before.as_ref().unwrap()["status"],
        json!("active")
    );
    assert_eq!(
        entries[1].after.as_ref().unwrap()["status"],
        json!("suspended")
    );

    // A change that fails writes no audit entry.
    let nobody = AccountId::generate();
    assert!(matches!(
        store.admin_set_status(&actor, &nobody, "suspended").await,
        Err(StoreError::NotFound("account"))
    ));
    assert!(
        store
            .audit_log(&audit_of(nobody.as_str()))
            .await
            .unwrap()
            .is_empty()
    );

    // Role.
    store
        .admin_set_role(&actor, &bob.id, Role::Admin)
        .await
        .unwrap();
    assert_eq!(
        store.account(&bob.id).await.unwrap().unwrap().role,
        Role::Admin
    );

    // Revoking access ends sessions and keys.
    store
        .create_session("session-hash", &alice.id, now_ms() + 60_000)
        .await
        .unwrap();
    store
        .create_scoped_api_key(
            &alice.id,
            "k",
            "key-hash",
            "chorus_ab",
            &[chorus_store::ApiKeyScope::Chat],
        )
        .await
        .unwrap();
    assert_eq!(store.account_counts(&alice.id).await.unwrap(), (1, 1));
    // Used once, so this instance holds the key's account (`key_cache.rs`): the
    // revocation must forget it at once.
    assert!(
        store
            .account_by_api_key("key-hash")
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store.admin_revoke_access(&actor, &alice.id).await.unwrap(),
        (1, 1)
    );
    assert!(
        store
            .account_by_session("session-hash", None)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .account_by_api_key("key-hash")
            .await
            .unwrap()
            .is_none()
    );

    // Unlinking: any identity but the last.
    let identities = store.identities_of(&bob.id).await.unwrap();
    let discord = identities.iter().find(|i| i.platform == "discord").unwrap();
    let web = identities.iter().find(|i| i.platform == "web").unwrap();
    assert!(
        store
            .admin_unlink_identity(&actor, &bob.id, &discord.id)
            .await
            .unwrap()
    );
    assert!(
        !store
            .admin_unlink_identity(&actor, &bob.id, "no-such-id")
            .await
            .unwrap()
    );
    assert!(matches!(
        store.admin_unlink_identity(&actor, &bob.id, &web.id).await,
        Err(StoreError::Conflict(StoreConflict::LastIdentity))
    ));

    // Deleting an account takes its data with it; the audit log keeps the entry.
    store.admin_delete_account(&actor, &alice.id).await.unwrap();
    assert!(store.account(&alice.id).await.unwrap().is_none());
    assert!(store.run(&ids.run_id).await.unwrap().is_none());
    assert!(
        store
            .ledger_page(&alice.id, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let entries = store.audit_log(&audit_of(alice.id.as_str())).await.unwrap();
    assert_eq!(entries[0].action, "delete_account");
    assert!(entries[0].after.is_none());

    // Security events, filtered by kind; pages by time.
    store
        .record_event(&Change {
            kind: AuditKind::Security,
            actor: &Actor::system(),
            action: "login_failed",
            object_type: "account_name",
            object_id: Some("mallory"),
            before: serde_json::Value::Null,
            after: json!({"client": "203.0.113.9"}),
        })
        .await
        .unwrap();
    let security = store
        .audit_log(&AuditFilter {
            kind: Some(AuditKind::Security),
            limit: 10,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(security.len(), 1);
    assert_eq!(security[0].object_id.as_deref(), Some("mallory"));
    let all = store
        .audit_log(&AuditFilter {
            limit: 1000,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let older = store
        .audit_log(&AuditFilter {
            before: Some(all[0].created_at),
            limit: 1000,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert!(older.iter().all(|e| e.created_at < all[0].created_at));

    // An account's own refill: read with the balance, audited with before and after.
    assert_eq!(store.balance_and_refill(&bob.id).await.unwrap().1, None);
    store
        .admin_set_refill(&actor, &bob.id, Some(CREDIT), Some(3600))
        .await
        .unwrap();
    let (_, amount, interval) = store.balance_and_refill(&bob.id).await.unwrap();
    assert_eq!((amount, interval), (Some(CREDIT), Some(3600)));
    let listed = store.account_listing(&bob.id).await.unwrap().unwrap();
    assert_eq!(listed.refill_amount, Some(CREDIT));
    let entry = &store.audit_log(&audit_of(bob.id.as_str())).await.unwrap()[0];
    assert_eq!(entry.action, "set_refill");
    assert_eq!(entry.before.as_ref().unwrap()["refill_amount"], json!(null));
    assert_eq!(
        entry.after.as_ref().unwrap()["refill_interval_secs"],
        json!(3600)
    );

    // Provider figures: one row per instance and provider, replaced on each write,
    // read back fresh only, pruned a day after their instance stopped writing.
    let now = now_ms();
    let stat = |instance: &str, attempts: i64, at: i64| ProviderStat {
        instance_id: instance.into(),
        provider: "p".into(),
        attempts,
        failures: 1,
        first_token_p50_ms: Some(120),
        first_token_p95_ms: None,
        last_error: Some("boom".into()),
        last_error_at: Some(at),
        updated_at: at,
    };
    store
        .write_provider_stats(&[stat("a", 5, now), stat("b", 7, now - 86_400_000 - 1)])
        .await
        .unwrap();
    store
        .write_provider_stats(&[stat("a", 9, now)])
        .await
        .unwrap();
    let fresh = store.provider_stats(now - 60_000).await.unwrap();
    assert_eq!(fresh, vec![stat("a", 9, now)]);
    assert_eq!(store.provider_stats(0).await.unwrap().len(), 2);
    store.prune_stats(now).await.unwrap();
    assert_eq!(
        store.provider_stats(0).await.unwrap(),
        vec![stat("a", 9, now)]
    );
    store.close().await;
}

#[tokio::test]
async fn admin_store_suite_on_sqlite() {
    let (store, dir) = support::sqlite_store().await;
    suite(store).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn admin_store_suite_on_postgres() {
    let (store, name) = support::postgres_store().await;
    suite(store).await;
    support::drop_pg(&name).await;
}
