//! The Access page's store: each override and its audit entry land together, an
//! identical setting writes neither, and removing an override goes back to the
//! config (no row); on SQLite and PostgreSQL.

use crate::support;

use chorus_store::{AccessResource, Actor, AuditFilter, Store};
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
