//! Identities and single sign-on flows in the store, run against SQLite and
//! PostgreSQL: every identity gets an id whoever inserts it (a trigger on SQLite, a
//! column default on PostgreSQL), a flow is taken once and not after it expired, and
//! unlinking refuses what the caller's rule refuses and another account's identity.
//!
//! PostgreSQL is required: set `CHORUS_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); `scripts/test` starts one.

use crate::support;

use chorus_model::ids::AccountId;
use chorus_model::time::now_ms;
use chorus_store::{Role, SsoFlow, Store, StoreConflict, StoreError};

async fn suite(store: &Store) {
    // The web identity create_account inserts (without an id) gets one.
    let alice = store
        .create_account("alice", Role::User, None)
        .await
        .unwrap();
    let bob = store.create_account("bob", Role::User, None).await.unwrap();
    let ids = store.identities_of(&alice.id).await.unwrap();
    assert_eq!(ids.len(), 1);
    assert_eq!(
        (ids[0].platform.as_str(), ids[0].external_id.as_str()),
        ("web", "alice")
    );
    assert!(!ids[0].id.is_empty());

    store
        .add_identity("discord", "80351110224678912", &alice.id, "nelly")
        .await
        .unwrap();
    let taken = store
        .add_identity("discord", "80351110224678912", &bob.id, "nelly")
        .await;
    assert!(
        matches!(
            taken,
            Err(StoreError::Conflict(StoreConflict::IdentityLinked { ref platform })) if platform == "discord"
        ),
        "{taken:?}"
    );
    let owner = store
        .account_by_identity("discord", "80351110224678912")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(owner.id, alice.id);
    store
        .set_identity_label("discord", "80351110224678912", "nelly2")
        .await
        .unwrap();
    let ids = store.identities_of(&alice.id).await.unwrap();
    let discord = ids
        .iter()
        .find(|i| i.platform == "discord")
        .unwrap()
        .clone();
    assert_eq!(discord.label.as_deref(), Some("nelly2"));
    assert_ne!(discord.id, ids[0].id);

    // Another account's identity: not found, and untouched.
    assert_eq!(
        store
            .unlink_identity(&bob.id, &discord.id, |_, _| true)
            .await
            .unwrap(),
        None
    );
    // Refused by the rule: nothing changes.
    assert_eq!(
        store
            .unlink_identity(&alice.id, &discord.id, |target, rest| {
                assert_eq!(target.platform, "discord");
                assert_eq!(rest.len(), 1);
                false
            })
            .await
            .unwrap(),
        Some(false)
    );
    assert_eq!(store.identities_of(&alice.id).await.unwrap().len(), 2);
    assert_eq!(
        store
            .unlink_identity(&alice.id, &discord.id, |_, _| true)
            .await
            .unwrap(),
        Some(true)
    );
    assert!(
        store
            .account_by_identity("discord", "80351110224678912")
            .await
            .unwrap()
            .is_none()
    );

    // An account that lost a first-login race is removed with its identities.
    let loser = store
        .create_account("loser", Role::User, None)
        .await
        .unwrap();
    store.discard_new_account(&loser.id).await.unwrap();
    assert!(store.account(&loser.id).await.unwrap().is_none());
    assert!(
        store
            .account_by_identity("web", "loser")
            .await
            .unwrap()
            .is_none()
    );

    store.set_account_role(&bob.id, Role::Admin).await.unwrap();
    assert_eq!(
        store.account(&bob.id).await.unwrap().unwrap().role,
        Role::Admin
    );

    // Flows: taken once; an expired one is gone.
    let flow = |expires_at, link: Option<AccountId>| SsoFlow {
        provider_id: "corp".into(),
        nonce: "n".into(),
        pkce_verifier: "v".into(),
        link_account_id: link,
        expires_at,
    };
    store
        .save_sso_flow("state-1", &flow(now_ms() + 60_000, Some(alice.id.clone())))
        .await
        .unwrap();
    let taken = store.take_sso_flow("state-1").await.unwrap().unwrap();
    assert_eq!(taken.link_account_id, Some(alice.id.clone()));
    assert_eq!(
        (taken.nonce.as_str(), taken.pkce_verifier.as_str()),
        ("n", "v")
    );
    assert!(store.take_sso_flow("state-1").await.unwrap().is_none());
    store
        .save_sso_flow("state-2", &flow(now_ms() - 1, None))
        .await
        .unwrap();
    assert!(store.take_sso_flow("state-2").await.unwrap().is_none());
    assert!(store.take_sso_flow("never-saved").await.unwrap().is_none());
}

#[tokio::test]
async fn identities_and_flows_on_sqlite() {
    let (store, dir) = support::sqlite_store().await;
    suite(&store).await;
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn identities_and_flows_on_postgres() {
    let (store, name) = support::postgres_store().await;
    suite(&store).await;
    store.close().await;
    support::drop_pg(&name).await;
}
