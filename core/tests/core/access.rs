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

/// A group gives its members models on top of their role's (the union), from the
/// moment they join until they leave or it is deleted; others of the same role get
/// the role's alone. Names are checked as for a role, group names are unique.
#[tokio::test(flavor = "multi_thread")]
async fn a_group_adds_models_to_its_members_only() {
    let dir = std::env::temp_dir().join(format!("chorus-groups-{}", uuid::Uuid::new_v4().simple()));
    let toml = format!(
        r#"data_dir = {:?}
[engine]
default_model = "scripted/demo"
[[providers]]
id = "scripted"
kind = "scripted"
models = ["demo", "big"]
[access.roles.user]
models = ["scripted/demo"]
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
    let bob = core
        .create_account("bob", false, Some("correct horse battery"))
        .await
        .unwrap();
    let admin = core.admin(&root).unwrap();

    for bad in ["", "   ", &"x".repeat(65), "tab\there"] {
        let err = core.create_access_group(&admin, bad).await.unwrap_err();
        assert!(
            matches!(err, CoreError::Invalid(InvalidInput::GroupName { .. })),
            "{bad:?}: {err}"
        );
    }
    let group = core
        .create_access_group(&admin, "big models")
        .await
        .unwrap();
    let err = core
        .create_access_group(&admin, "big models")
        .await
        .unwrap_err();
    assert!(matches!(err, CoreError::Conflict(_)), "{err}");
    let err = core
        .set_group_access(
            &admin,
            &group.id,
            AccessResource::Models,
            vec!["scripted/nope".into()],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, CoreError::Invalid(InvalidInput::AccessName { .. })),
        "{err}"
    );
    assert!(
        core.set_group_access(
            &admin,
            &group.id,
            AccessResource::Models,
            vec!["scripted/big".into()]
        )
        .await
        .unwrap()
    );
    // A group without members changes nobody's lists.
    assert_eq!(
        ids(&core.models_for(&alice).await.unwrap()),
        ["scripted/demo"]
    );

    assert!(
        core.set_group_member(&admin, &group.id, &alice.id, true)
            .await
            .unwrap()
    );
    assert!(
        !core
            .set_group_member(&admin, &group.id, &alice.id, true)
            .await
            .unwrap(),
        "already a member"
    );
    assert_eq!(
        ids(&core.models_for(&alice).await.unwrap()),
        ["scripted/demo", "scripted/big"]
    );
    assert_eq!(
        ids(&core.models_for(&bob).await.unwrap()),
        ["scripted/demo"]
    );
    assert!(
        core.create_conversation(&alice, None, Some("scripted/big"), None)
            .await
            .is_ok()
    );
    let err = core
        .create_conversation(&bob, None, Some("scripted/big"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, CoreError::Forbidden(Forbidden::ModelNotAllowed { .. })),
        "{err}"
    );
    let view = core.access_view(&admin).await.unwrap();
    assert_eq!(view.groups.len(), 1);
    assert_eq!(
        (view.groups[0].group.name.as_str(), view.groups[0].members),
        ("big models", 1)
    );
    let detail = core.access_group(&admin, &group.id, 0).await.unwrap();
    assert_eq!(detail.member_list.len(), 1);
    assert_eq!(detail.member_list[0].name, "alice");
    assert_eq!(
        core.groups_of(&admin, &alice.id).await.unwrap()[0].id,
        group.id
    );

    // Leaving the group takes the model away at once; so does deleting the group.
    core.set_group_member(&admin, &group.id, &alice.id, false)
        .await
        .unwrap();
    assert_eq!(
        ids(&core.models_for(&alice).await.unwrap()),
        ["scripted/demo"]
    );
    core.set_group_member(&admin, &group.id, &alice.id, true)
        .await
        .unwrap();
    core.delete_access_group(&admin, &group.id).await.unwrap();
    assert_eq!(
        ids(&core.models_for(&alice).await.unwrap()),
        ["scripted/demo"]
    );
    assert!(core.access_view(&admin).await.unwrap().groups.is_empty());
    assert!(matches!(
        core.access_group(&admin, &group.id, 0).await.unwrap_err(),
        CoreError::NotFound(_)
    ));
    core.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}
