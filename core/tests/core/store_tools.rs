//! The tool history and tool selection of the store (migration 0004), on SQLite and
//! PostgreSQL alike: steps saved per run by its lease holder only, merged per message
//! over a continuation with offsets into the message text.
//!
//! PostgreSQL is required: set `CHORUS_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); `scripts/test` starts one.

use crate::support;

use chorus_model::history::{StepCall, StepResult, ToolStep};
use chorus_model::time::now_ms;
use chorus_store::{NewTurn, Role, RunOutcome, RunStatus, Store};

const OWNER: &str = "instance-a";

fn step(at: usize, id: &str, with_result: bool) -> ToolStep {
    ToolStep {
        at,
        calls: vec![StepCall {
            id: id.into(),
            name: "py__add".into(),
            arguments: serde_json::json!({"a": 1, "b": 2}),
        }],
        results: if with_result {
            vec![result(id)]
        } else {
            vec![]
        },
    }
}

fn result(id: &str) -> StepResult {
    StepResult {
        call_id: id.into(),
        name: "py__add".into(),
        output: "3".into(),
        is_error: false,
        truncated: false,
    }
}

fn outcome(status: RunStatus, text: &str) -> RunOutcome {
    RunOutcome {
        status,
        text: text.into(),
        seq: 5,
        finish_reason: Some("stopped".into()),
        error: None,
        prompt_tokens: None,
        completion_tokens: None,
        cached_prompt_tokens: None,
        reasoning_tokens: None,
    }
}

async fn suite(store: &Store) {
    let dana = store
        .create_account("dana", Role::User, None)
        .await
        .unwrap();
    let eve = store.create_account("eve", Role::User, None).await.unwrap();
    let conv = store
        .create_conversation(&dana.id, "t", "scripted/demo", None)
        .await
        .unwrap();

    // Tool selection: empty by default, set only by the owner.
    assert!(store.conversation_tools(&conv.id).await.unwrap().is_empty());
    let tools = vec!["py".to_string(), "everything__echo".to_string()];
    assert!(
        store
            .set_conversation_tools(&dana.id, &conv.id, &tools)
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_conversation_tools(&eve.id, &conv.id, &[])
            .await
            .unwrap()
    );
    assert_eq!(store.conversation_tools(&conv.id).await.unwrap(), tools);

    let lease = now_ms() + 60_000;
    let turn = NewTurn {
        account_id: dana.id.clone(),
        conversation_id: conv.id.clone(),
        parent_id: None,
        content: "hi".into(),
        model: "scripted/demo".into(),
    };
    let ids = store.start_turn(&turn, OWNER, lease).await.unwrap();
    // The first run said "Let me add" and was stopped while its call ran.
    store
        .save_tool_steps(&ids.run_id, OWNER, &[step(10, "c1", false)])
        .await
        .unwrap();
    // Another instance's write is ignored.
    store
        .save_tool_steps(&ids.run_id, "instance-b", &[])
        .await
        .unwrap();
    assert!(
        store
            .finish_run(
                &ids.run_id,
                OWNER,
                &outcome(RunStatus::Stopped, "Let me add")
            )
            .await
            .unwrap()
    );
    let run = store.run(&ids.run_id).await.unwrap().unwrap();
    // A continuation answers the pending call, then makes another.
    let next = store
        .start_continuation(&run, "scripted/demo", OWNER, lease)
        .await
        .unwrap();
    let steps = [
        ToolStep {
            at: 0,
            calls: vec![],
            results: vec![result("c1")],
        },
        step(4, "c2", true),
    ];
    store.save_tool_steps(&next, OWNER, &steps).await.unwrap();
    assert!(
        store
            .finish_run(&next, OWNER, &outcome(RunStatus::Complete, ": 3. 3"))
            .await
            .unwrap()
    );

    let all = store.conversation_tool_steps(&conv.id).await.unwrap();
    assert_eq!(all.len(), 1);
    let (message, merged) = &all[0];
    assert_eq!(message, &ids.assistant_message_id);
    assert_eq!(merged.len(), 2, "{merged:?}");
    assert_eq!(merged[0].at, 10);
    assert_eq!(merged[0].results, vec![result("c1")]);
    assert_eq!(
        merged[1].at, 14,
        "offset shifted by the continuation's prefix"
    );
    assert_eq!(
        store
            .message_content(&ids.assistant_message_id)
            .await
            .unwrap(),
        "Let me add: 3. 3"
    );
}

#[tokio::test]
async fn tool_steps_on_sqlite() {
    let (store, dir) = support::sqlite_store().await;
    suite(&store).await;
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn tool_steps_on_postgres() {
    let (store, name) = support::postgres_store().await;
    suite(&store).await;
    store.close().await;
    support::drop_pg(&name).await;
}
