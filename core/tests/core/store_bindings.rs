//! Bindings and render state (migration 0005) on SQLite and PostgreSQL alike: a
//! channel rebinds, a render's parts are found again by message id, unfinished renders
//! are listed for a restarted process, and deleting a conversation leaves none behind.
//! Channel marks (migration 0013) are set, replaced and found by key prefix.
//!
//! PostgreSQL is required: set `CHORUS_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); `scripts/test` starts one.

use crate::support;

use chorus_model::ids::{AccountId, ConversationId, MessageId, RunId};
use chorus_store::{NewTurn, RenderState, Role, Store, TurnIds};

const OWNER: &str = "instance-a";

/// A question and the start of its answer's run.
async fn turn(store: &Store, account: &AccountId, conversation: &ConversationId) -> TurnIds {
    store
        .start_turn(
            &NewTurn {
                account_id: account.clone(),
                conversation_id: conversation.clone(),
                parent_id: None,
                content: "hi".into(),
                model: "scripted/demo".into(),
            },
            OWNER,
            i64::MAX / 2,
        )
        .await
        .unwrap()
}

async fn suite(store: &Store) {
    let erin = store
        .create_account("erin", Role::User, None)
        .await
        .unwrap();
    let first = store
        .create_conversation(&erin.id, "first", "scripted/demo", None)
        .await
        .unwrap();
    let second = store
        .create_conversation(&erin.id, "second", "scripted/demo", None)
        .await
        .unwrap();
    let key = "!room|$root";
    assert_eq!(store.binding("matrix", key).await.unwrap(), None);
    assert!(store.bind("matrix", key, &first.id).await.unwrap());
    assert_eq!(
        store.binding("matrix", key).await.unwrap(),
        Some(first.id.clone())
    );
    assert!(store.bind("matrix", key, &second.id).await.unwrap());
    assert_eq!(
        store.binding("matrix", key).await.unwrap(),
        Some(second.id.clone())
    );
    // Another account cannot rebind erin's thread to its own conversation.
    let mallory = store
        .create_account("mallory", Role::User, None)
        .await
        .unwrap();
    let theirs = store
        .create_conversation(&mallory.id, "theirs", "scripted/demo", None)
        .await
        .unwrap();
    assert!(!store.bind("matrix", key, &theirs.id).await.unwrap());
    assert_eq!(
        store.binding("matrix", key).await.unwrap(),
        Some(second.id.clone()),
        "the owner's binding stays"
    );
    assert_eq!(
        store.surfaces_of(&second.id).await.unwrap(),
        vec!["matrix".to_string(), "web".to_string()]
    );
    assert_eq!(
        store.surfaces_of(&first.id).await.unwrap(),
        vec!["web".to_string()]
    );
    assert!(
        store
            .bind("matrix", "!other|$root", &second.id)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .bindings_of_conversation("matrix", &second.id)
            .await
            .unwrap(),
        vec!["!other|$root".to_string(), key.to_string()]
    );
    assert!(
        store
            .bindings_of_conversation("matrix", &first.id)
            .await
            .unwrap()
            .is_empty()
    );

    let ids = turn(store, &erin.id, &second.id).await;
    let latest = store
        .latest_run_of_conversation(&second.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.id, ids.run_id);
    assert_eq!(
        store
            .latest_run_of_message(&ids.assistant_message_id)
            .await
            .unwrap()
            .unwrap()
            .id,
        ids.run_id
    );

    let mut state = RenderState {
        message_id: ids.assistant_message_id.clone(),
        run_id: ids.run_id.clone(),
        parts: vec!["$one".into()],
        rendered_seq: 4,
        finished: false,
    };
    store
        .save_render_state("matrix", key, &state, &["$one".to_string()])
        .await
        .unwrap();
    state.parts.push("$two".into());
    state.rendered_seq = 9;
    store
        .save_render_state("matrix", key, &state, &["$two".to_string()])
        .await
        .unwrap();
    assert_eq!(
        store.render_state("matrix", key).await.unwrap(),
        Some(state.clone())
    );
    assert_eq!(
        store.unfinished_renders("matrix").await.unwrap(),
        vec![(key.to_string(), state.clone())]
    );
    assert!(
        store
            .unfinished_renders("discord")
            .await
            .unwrap()
            .is_empty()
    );
    for part in ["$one", "$two"] {
        assert_eq!(
            store
                .channel_of_message("matrix", part)
                .await
                .unwrap()
                .as_deref(),
            Some(key)
        );
    }
    assert_eq!(
        store.channel_of_message("slack", "$one").await.unwrap(),
        None
    );
    state.finished = true;
    store
        .save_render_state("matrix", key, &state, &[])
        .await
        .unwrap();
    assert!(store.unfinished_renders("matrix").await.unwrap().is_empty());

    // Another message's render replaces the binding's row.
    let other = RenderState {
        message_id: MessageId::from_stored("m-other".into()),
        run_id: RunId::from_stored("r-other".into()),
        parts: vec![],
        rendered_seq: 0,
        finished: false,
    };
    store
        .save_render_state("matrix", "!room|$other", &other, &[])
        .await
        .unwrap();
    assert_eq!(store.unfinished_renders("matrix").await.unwrap().len(), 1);
}

async fn deleting_a_conversation_removes_its_renders(store: &Store) {
    let finn = store
        .create_account("finn", Role::User, None)
        .await
        .unwrap();
    let c = store
        .create_conversation(&finn.id, "gone", "scripted/demo", None)
        .await
        .unwrap();
    let ids = turn(store, &finn.id, &c.id).await;
    assert!(store.bind("matrix", "k", &c.id).await.unwrap());
    let state = RenderState {
        message_id: ids.assistant_message_id.clone(),
        run_id: ids.run_id.clone(),
        parts: vec![],
        rendered_seq: 0,
        finished: false,
    };
    store
        .save_render_state("matrix", "k", &state, &[])
        .await
        .unwrap();
    store
        .finish_run(&ids.run_id, OWNER, &support_outcome())
        .await
        .unwrap();
    assert!(store.delete_conversation(&finn.id, &c.id).await.unwrap());
    assert_eq!(store.render_state("matrix", "k").await.unwrap(), None);
    assert_eq!(store.binding("matrix", "k").await.unwrap(), None);
}

async fn channel_marks(store: &Store) {
    assert_eq!(
        store
            .surface_mark("slack", "T1:D1:1.1", "asker")
            .await
            .unwrap(),
        None
    );
    store
        .set_surface_mark("slack", "T1:D1:1.1", "asker", "U1")
        .await
        .unwrap();
    store
        .set_surface_mark("slack", "T1:D1:1.1", "asker", "U2")
        .await
        .unwrap();
    store
        .set_surface_mark("slack", "T1:D1:1.1", "assistant", "")
        .await
        .unwrap();
    assert_eq!(
        store
            .surface_mark("slack", "T1:D1:1.1", "asker")
            .await
            .unwrap(),
        Some("U2".into())
    );
    assert_eq!(
        store
            .surface_mark("discord", "T1:D1:1.1", "asker")
            .await
            .unwrap(),
        None,
        "marks are per surface"
    );
    // The newest place marked for a person, under a channel's key.
    for (key, user) in [
        ("T1:C1", "U1"),
        ("T1:C1:2.2", "U1"),
        ("T1:C10:3.3", "U1"),
        ("T1:C1:4.4", "U2"),
    ] {
        store
            .set_surface_mark("slack", key, "last_asked", user)
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let latest = |prefix: &'static str, user: &'static str| async move {
        store
            .latest_marked_channel("slack", prefix, ':', "last_asked", user)
            .await
            .unwrap()
    };
    assert_eq!(latest("T1:C1", "U1").await, Some("T1:C1:2.2".into()));
    assert_eq!(latest("T1:C1", "U2").await, Some("T1:C1:4.4".into()));
    assert_eq!(latest("T1:C10", "U1").await, Some("T1:C10:3.3".into()));
    assert_eq!(latest("T1:C2", "U1").await, None);
    store
        .set_surface_mark("slack", "T1:C1", "last_asked", "U1")
        .await
        .unwrap();
    assert_eq!(latest("T1:C1", "U1").await, Some("T1:C1".into()));
}

fn support_outcome() -> chorus_store::RunOutcome {
    chorus_store::RunOutcome {
        status: chorus_store::RunStatus::Complete,
        text: "hello".into(),
        seq: 3,
        finish_reason: Some("stop".into()),
        error: None,
        prompt_tokens: None,
        completion_tokens: None,
        cached_prompt_tokens: None,
        reasoning_tokens: None,
    }
}

#[tokio::test]
async fn bindings_on_sqlite() {
    let (store, dir) = support::sqlite_store().await;
    suite(&store).await;
    deleting_a_conversation_removes_its_renders(&store).await;
    channel_marks(&store).await;
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn bindings_on_postgres() {
    let (store, name) = support::postgres_store().await;
    suite(&store).await;
    deleting_a_conversation_removes_its_renders(&store).await;
    channel_marks(&store).await;
    store.close().await;
    support::drop_pg(&name).await;
}
