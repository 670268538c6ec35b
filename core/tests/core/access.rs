//! The access policy through the facade: a model restricted to a role disappears
//! from that role's model lists (the chat `model` command included), is refused when
//! a run names it with a message naming it, and stays for the other role; the
//! config file is the default and an admin's override replaces it until reset.

use chorus_core::chat::{ChatContext, ChatOutcome};
use chorus_core::config::Config;
use chorus_core::{AccessResource, AccessSetting, Core, CoreError, Forbidden, InvalidInput};
use chorus_model::Role;
use chorus_store::Identity;
use std::collections::BTreeMap;

fn ids(models: &[chorus_providers::ModelInfo]) -> Vec<&str> {
    models.iter().map(|m| m.id.as_str()).collect()
}

fn reply(outcome: ChatOutcome) -> String {
    match outcome {
        ChatOutcome::Reply(text) => text,
        other => panic!("expected a reply, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restricted_model_leaves_the_roles_lists_and_runs() {
    let dir = std::env::temp_dir().join(format!("chorus-access-{}", uuid::Uuid::new_v4().simple()));
    // The config lets users use the scripted provider's models only (which is all
    // of them here); the default model is the one the admin will take away.
    let toml = format!(
        r#"data_dir = {:?}
[engine]
default_model = "scripted/big"
[[providers]]
id = "scripted"
kind = "scripted"
models = ["demo", "big"]
[access.roles.user]
models = ["scripted/*"]
"#,
        dir.display().to_string()
    );
    let core = Core::start(Config::from_toml(&toml, &BTreeMap::new()).unwrap())
        .await
        .unwrap();
    let root = core
        .create_account("root", true, Some("correct horse battery"))
        .await
        .unwrap();
    let alice = core
        .create_account("alice", false, Some("correct horse battery"))
        .await
        .unwrap();
    let admin = core.admin(&root).unwrap();
    assert_eq!(
        ids(&core.models_for(&alice).await.unwrap()),
        ["scripted/demo", "scripted/big"]
    );
    let before = core
        .create_conversation(&alice, None, None, None)
        .await
        .unwrap();
    assert_eq!(before.model, "scripted/big");

    // Names that are no model are refused, and nothing is stored.
    let err = core
        .set_access(
            &admin,
            Role::User,
            AccessResource::Models,
            AccessSetting::Only(vec!["scripted/nope".into()]),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, CoreError::Invalid(InvalidInput::AccessName { .. })),
        "{err}"
    );
    assert_eq!(
        core.access_view(&admin).await.unwrap().roles[0].models_source,
        "config"
    );

    assert!(
        core.set_access(
            &admin,
            Role::User,
            AccessResource::Models,
            AccessSetting::Only(vec!["scripted/demo".into()])
        )
        .await
        .unwrap()
    );
    // The same setting again changes nothing.
    assert!(
        !core
            .set_access(
                &admin,
                Role::User,
                AccessResource::Models,
                AccessSetting::Only(vec!["scripted/demo".into()])
            )
            .await
            .unwrap()
    );
    let view = core.access_view(&admin).await.unwrap();
    assert_eq!(view.roles[0].role, "user");
    assert_eq!(view.roles[0].models_source, "override");
    assert_eq!(
        view.roles[0].config_models,
        Some(vec!["scripted/*".to_string()])
    );

    assert_eq!(
        ids(&core.models_for(&alice).await.unwrap()),
        ["scripted/demo"]
    );
    assert_eq!(
        ids(&core.models_for(&root).await.unwrap()),
        ["scripted/demo", "scripted/big"]
    );
    // A new conversation gets the first model the role may use.
    assert_eq!(
        core.default_model_for(&alice).await.unwrap(),
        "scripted/demo"
    );
    assert_eq!(
        core.create_conversation(&alice, None, None, None)
            .await
            .unwrap()
            .model,
        "scripted/demo"
    );
    // A run of the conversation made before is refused, naming the model.
    let err = core
        .send_message(&alice, &before.id, "Hello", None, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, CoreError::Forbidden(Forbidden::ModelNotAllowed { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("`scripted/big`"), "{err}");
    assert!(
        core.create_conversation(&alice, None, Some("scripted/big"), None)
            .await
            .is_err()
    );
    assert!(
        core.create_conversation(&root, None, Some("scripted/big"), None)
            .await
            .is_ok()
    );

    // A chat surface: the `model` command lists only the role's models and refuses
    // the other; a chat identity without an account yet gets the default role's.
    let ctx = ChatContext {
        surface: "matrix".into(),
        channel_key: "!room:example.org|$root".into(),
        identity: Identity::new("matrix", "@bob:example.org"),
        display_name: Some("bob".into()),
    };
    assert_eq!(
        ids(&core.models_for_identity(&ctx.identity).await.unwrap()),
        ["scripted/demo"]
    );
    let list = reply(core.chat_text(&ctx, "!chorus model", "!chorus").await);
    assert!(
        list.contains("`scripted/demo`") && !list.contains("scripted/big"),
        "{list}"
    );
    let refused = reply(
        core.chat_text(&ctx, "!chorus model scripted/big", "!chorus")
            .await,
    );
    assert!(
        refused.contains("`scripted/big` is not available to your account"),
        "{refused}"
    );

    // Back to the config file: every scripted model again.
    assert!(
        core.set_access(
            &admin,
            Role::User,
            AccessResource::Models,
            AccessSetting::Config
        )
        .await
        .unwrap()
    );
    assert_eq!(
        ids(&core.models_for(&alice).await.unwrap()),
        ["scripted/demo", "scripted/big"]
    );
    // An empty list leaves the role no model at all.
    core.set_access(
        &admin,
        Role::User,
        AccessResource::Models,
        AccessSetting::Only(vec![]),
    )
    .await
    .unwrap();
    assert!(core.models_for(&alice).await.unwrap().is_empty());
    core.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}
