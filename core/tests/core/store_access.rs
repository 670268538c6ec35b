//! The Access page's store: each override and its audit entry land together, an
//! identical setting writes neither, and removing an override goes back to the
//! config (no row); groups of accounts: created with unique names, their lists set,
//! members added and removed (each change audited in its transaction), memberships
//! following a merged account and leaving with a deleted one or a deleted group; on
//! SQLite and PostgreSQL.

use crate::support;

use chorus_model::time::now_ms;
use chorus_store::{AccessResource, Actor, AuditFilter, Identity, Role, Store, StoreError};
use serde_json::json;

async fn suite(store: Store) {
    let actor = Actor {
        id: None,
        name: "operator".into(),
    };
    let audit = || async {
        store
            .audit_log(&AuditFilter {
                action: Some("set_access".into()),
                limit: 100,
                ..AuditFilter::default()
            })
            .await
            .unwrap()
    };
    assert!(store.access_rules().await.unwrap().is_empty());

    let only = Some(Some(vec!["scripted/demo".to_string(), "fast".to_string()]));
    assert!(
        store
            .set_access_rule(&actor, "user", AccessResource::Models, only.clone())
            .await
            .unwrap()
    );
    assert!(
        store
            .set_access_rule(&actor, "admin", AccessResource::ToolServers, Some(None))
            .await
            .unwrap()
    );
    // The same rule again is no change and no entry.
    assert!(
        !store
            .set_access_rule(&actor, "user", AccessResource::Models, only.clone())
            .await
            .unwrap()
    );
    let rules = store.access_rules().await.unwrap();
    assert_eq!(rules.len(), 2);
    assert_eq!(
        (rules[0].role.as_str(), rules[0].resource),
        ("admin", AccessResource::ToolServers)
    );
    assert_eq!(rules[0].allow, None);
    assert_eq!(rules[1].allow, only.clone().unwrap());

    // A new list replaces the old one (upsert), then removing goes back to the config.
    let fewer = Some(Some(vec!["fast".to_string()]));
    store
        .set_access_rule(&actor, "user", AccessResource::Models, fewer)
        .await
        .unwrap();
    assert!(
        store
            .set_access_rule(&actor, "user", AccessResource::Models, None)
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_access_rule(&actor, "user", AccessResource::Models, None)
            .await
            .unwrap()
    );
    let rules = store.access_rules().await.unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].role, "admin");

    let entries = audit().await;
    let objects: Vec<&str> = entries
        .iter()
        .filter_map(|e| e.object_id.as_deref())
        .collect();
    assert_eq!(
        objects,
        [
            "user:models",
            "user:models",
            "admin:tool_servers",
            "user:models"
        ],
        "newest first, one per change"
    );
    assert!(
        entries
            .iter()
            .all(|e| e.kind == "admin" && e.actor_name == "operator")
    );
    assert_eq!(entries[3].before, Some(json!({"source": "config"})));
    assert_eq!(
        entries[3].after,
        Some(json!({"source": "override", "allow": ["scripted/demo", "fast"]}))
    );
    assert_eq!(
        entries[2].after,
        Some(json!({"source": "override", "allow": "all"}))
    );
    assert_eq!(
        entries[1].after,
        Some(json!({"source": "override", "allow": ["fast"]}))
    );
    assert_eq!(entries[0].before, entries[1].after);
    assert_eq!(entries[0].after, Some(json!({"source": "config"})));
    store.close().await;
}

async fn groups_suite(store: Store) {
    let actor = Actor {
        id: None,
        name: "operator".into(),
    };
    let audit = |action: &'static str| {
        let store = store.clone();
        async move {
            store
                .audit_log(&AuditFilter {
                    action: Some(action.into()),
                    limit: 100,
                    ..AuditFilter::default()
                })
                .await
                .unwrap()
        }
    };
    let alice = store
        .create_account("alice", Role::User, None)
        .await
        .unwrap();
    let bob = store.create_account("bob", Role::User, None).await.unwrap();
    assert!(store.access_groups().await.unwrap().is_empty());

    let staff = store.create_access_group(&actor, "staff").await.unwrap();
    assert!(staff.models.is_empty() && staff.tool_servers.is_empty());
    let err = store
        .create_access_group(&actor, "staff")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    let other = store.create_access_group(&actor, "another").await.unwrap();
    let names: Vec<String> = store
        .access_groups()
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.name)
        .collect();
    assert_eq!(names, ["another", "staff"], "by name");

    // Lists: set, the same again is no change, each resource on its own.
    let models = vec!["openai/*".to_string(), "fast".to_string()];
    assert!(
        store
            .set_access_group_list(&actor, &staff.id, AccessResource::Models, &models)
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_access_group_list(&actor, &staff.id, AccessResource::Models, &models)
            .await
            .unwrap()
    );
    store
        .set_access_group_list(
            &actor,
            &staff.id,
            AccessResource::ToolServers,
            &["everything".to_string()],
        )
        .await
        .unwrap();
    let got = store.access_group(&staff.id).await.unwrap().unwrap();
    assert_eq!(got.models, models);
    assert_eq!(got.tool_servers, ["everything"]);
    let err = store
        .set_access_group_list(&actor, "nope", AccessResource::Models, &[])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    let entries = audit("set_group_access").await;
    assert_eq!(entries.len(), 2, "one entry per change");
    assert_eq!(entries[1].object_id.as_deref(), Some(staff.id.as_str()));
    assert_eq!(entries[1].before.as_ref().unwrap()["models"], json!([]));
    assert_eq!(entries[1].after.as_ref().unwrap()["models"], json!(models));

    // Members: add (twice is no change), list, remove; audited on the account.
    for group in [&staff.id, &other.id] {
        assert!(
            store
                .set_access_group_member(&actor, group, &alice.id, true)
                .await
                .unwrap()
        );
    }
    assert!(
        !store
            .set_access_group_member(&actor, &staff.id, &alice.id, true)
            .await
            .unwrap()
    );
    assert!(
        store
            .set_access_group_member(&actor, &staff.id, &bob.id, true)
            .await
            .unwrap()
    );
    let mut mine = vec![staff.id.clone(), other.id.clone()];
    mine.sort();
    assert_eq!(store.account_access_groups(&alice.id).await.unwrap(), mine);
    let members = store.access_group_members(&staff.id, 0, 10).await.unwrap();
    let member_names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(member_names, ["alice", "bob"]);
    assert_eq!(
        store.access_group_members(&staff.id, 1, 10).await.unwrap()[0].name,
        "bob"
    );
    let mut sizes = store.access_group_sizes().await.unwrap();
    sizes.sort();
    let mut expected = vec![(staff.id.clone(), 2), (other.id.clone(), 1)];
    expected.sort();
    assert_eq!(sizes, expected);
    assert!(
        store
            .set_access_group_member(&actor, &staff.id, &bob.id, false)
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_access_group_member(&actor, &staff.id, &bob.id, false)
            .await
            .unwrap()
    );
    assert!(
        store
            .account_access_groups(&bob.id)
            .await
            .unwrap()
            .is_empty()
    );
    let added = audit("add_to_group").await;
    assert_eq!(added.len(), 3);
    assert_eq!(added[2].object_type, "account");
    assert_eq!(added[2].object_id.as_deref(), Some(alice.id.as_str()));
    assert_eq!(added[2].before, Some(json!({"groups": []})));
    assert_eq!(added[2].after, Some(json!({"groups": ["staff"]})));
    assert_eq!(
        added[1].after,
        Some(json!({"groups": ["another", "staff"]}))
    );
    let removed = audit("remove_from_group").await;
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].after, Some(json!({"groups": []})));

    // A merge moves alice's memberships to bob (who keeps his own).
    store
        .create_link_code(&bob.id, "code-hash", now_ms() + 60_000, 5)
        .await
        .unwrap();
    store
        .redeem_link_code("code-hash", &Identity::web("alice"))
        .await
        .unwrap();
    assert!(
        store
            .account_access_groups(&alice.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.account_access_groups(&bob.id).await.unwrap(), mine);
    // A merged account cannot join a group.
    let err = store
        .set_access_group_member(&actor, &staff.id, &alice.id, true)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound("account")), "{err}");

    // Deleting a group takes its memberships with it; deleting an account, its own.
    store.delete_access_group(&actor, &other.id).await.unwrap();
    assert_eq!(
        store.account_access_groups(&bob.id).await.unwrap(),
        [staff.id.as_str()]
    );
    assert!(store.access_group(&other.id).await.unwrap().is_none());
    let deleted = audit("delete_access_group").await;
    assert_eq!(deleted[0].before.as_ref().unwrap()["members"], json!(1));
    assert_eq!(deleted[0].after, None);
    store.admin_delete_account(&actor, &bob.id).await.unwrap();
    assert!(store.access_group_sizes().await.unwrap().is_empty());
    assert_eq!(audit("create_access_group").await.len(), 2);
    store.close().await;
}

#[tokio::test]
async fn groups_store_suite_on_sqlite() {
    let (store, dir) = support::sqlite_store().await;
    groups_suite(store).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn groups_store_suite_on_postgres() {
    let (store, name) = support::postgres_store().await;
    groups_suite(store).await;
    support::drop_pg(&name).await;
}

#[tokio::test]
async fn access_store_suite_on_sqlite() {
    let (store, dir) = support::sqlite_store().await;
    suite(store).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn access_store_suite_on_postgres() {
    let (store, name) = support::postgres_store().await;
    suite(store).await;
    support::drop_pg(&name).await;
}
