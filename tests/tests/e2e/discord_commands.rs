//! The other slash commands: `/model` autocompletes from the models and switches the
//! conversation's model, `/new`, `/stop` and `/regenerate` answer, `/help` answers only the person who asked, with what a
//! Discord user can use: the slash commands and the reply buttons (as `!chorus help`
//! does), and core's answers name those, not the text commands; the access policy
//! (here the config file's default) narrows what `/model` offers and takes.

use crate::discord_support::*;
use anyhow::{Result, ensure};
use chorus_tests::script;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_model_autocompletes_and_switches_and_help_is_ephemeral() -> Result<()> {
    let text = script(5);
    let world = DiscordWorld::start(&text, 40.0, "").await?;
    let alice = alice();
    let dm = world.fake.dm_channel(&alice);

    let token = world.fake.raw_interaction(
        dm,
        &alice,
        4,
        json!({"id": "771825006014889984", "name": "model", "type": 1,
               "options": [{"type": 3, "name": "name", "value": "dem", "focused": true}]}),
    )?;
    let answer = world
        .fake
        .wait("the autocomplete's choices", WAIT, |s| {
            s.answers
                .get(&token)
                .filter(|a| a.callback == Some(8))
                .cloned()
        })
        .await?;
    ensure!(
        answer.callback_data["choices"] == json!([{"name": "s/demo", "value": "s/demo"}]),
        "choices: {}",
        answer.callback_data
    );

    let token = world
        .fake
        .slash(dm, &alice, "model", &[("name", "s/demo")])?;
    let (answer, shown) = world.fake.answer_of(&token, WAIT).await?;
    ensure!(
        answer.ephemeral && shown.content.contains("Using `s/demo` here"),
        "{shown:?}"
    );
    let token = world
        .fake
        .slash(dm, &alice, "model", &[("name", "nope/none")])?;
    let (_, refused) = world.fake.answer_of(&token, WAIT).await?;
    ensure!(refused.content.starts_with('⚠'), "{refused:?}");

    // Core's answers name Discord's own commands (slash commands, buttons), to slash
    // commands and text alike, never the text ones.
    let token = world.fake.slash(dm, &alice, "model", &[])?;
    let (_, models) = world.fake.answer_of(&token, WAIT).await?;
    ensure!(
        models.content.contains("`s/demo` ← in use here")
            && models.content.ends_with("`/model name` switches.")
            && !models.content.contains("!chorus"),
        "{models:?}"
    );
    let token = world.fake.slash(dm, &alice, "continue", &[])?;
    let (_, nothing) = world.fake.answer_of(&token, WAIT).await?;
    ensure!(
        nothing
            .content
            .contains("There is no reply to continue here. `/resume` lists your conversations."),
        "{nothing:?}"
    );
    // `/new`, `/stop` and `/regenerate` as slash commands: a new conversation here,
    // with nothing written and nothing to answer again yet.
    let token = world
        .fake
        .slash(dm, &alice, "new", &[("title", "Trip plans")])?;
    let (_, started) = world.fake.answer_of(&token, WAIT).await?;
    ensure!(
        started
            .content
            .contains("Started a new conversation, “Trip plans”"),
        "{started:?}"
    );
    let token = world.fake.slash(dm, &alice, "stop", &[])?;
    let (_, idle) = world.fake.answer_of(&token, WAIT).await?;
    ensure!(
        idle.ephemeral && idle.content.contains("Nothing is being written here"),
        "{idle:?}"
    );
    let token = world.fake.slash(dm, &alice, "regenerate", &[])?;
    let (_, nothing) = world.fake.answer_of(&token, WAIT).await?;
    ensure!(
        nothing.ephemeral && nothing.content.contains("no question to answer again"),
        "{nothing:?}"
    );
    world.fake.say(dm, &alice, "!chorus help", false)?;
    // The public answer to `/new` is the bot's first message here.
    let text_help = world.wait_partial(dm, 1, 100).await?;
    ensure!(
        text_help.content.contains("**Slash commands**")
            && text_help.content.contains("`/resume`")
            && !text_help.content.contains("`!chorus new"),
        "`!chorus help` answered {:?}",
        text_help.content
    );

    let token = world.fake.slash(dm, &alice, "help", &[])?;
    let (answer, help) = world.fake.answer_of(&token, WAIT).await?;
    ensure!(answer.ephemeral && help.ephemeral, "{help:?}");
    // Without `guild_ids`, the commands are registered globally.
    let registrations = registrations(&world).await?;
    ensure!(
        registrations.iter().all(|path| !path.contains("/guilds/")),
        "registered per guild without `guild_ids`: {registrations:?}"
    );
    let registered = world.fake.lock().commands.clone();
    ensure!(!registered.is_empty(), "no slash command registered");
    for command in &registered {
        let name = command["name"].as_str().unwrap_or_default();
        ensure!(
            help.content.contains(&format!("`/{name}")),
            "`/help` does not list /{name}: {:?}",
            help.content
        );
    }
    ensure!(
        help.content.contains("`/ask question`")
            && help.content.contains("**Stop**")
            && help.content.contains("**Regenerate**")
            && !help.content.contains("`!chorus new"),
        "`/help` answered {:?}",
        help.content
    );
    Ok(())
}

/// The paths of the bot's slash-command registrations (`PUT …/commands`), once there
/// is one.
async fn registrations(world: &DiscordWorld) -> Result<Vec<String>> {
    world
        .fake
        .wait("the slash commands registered", WAIT, |s| {
            let paths: Vec<String> = s
                .calls
                .iter()
                .filter(|c| c.method == "PUT" && c.path.ends_with("/commands"))
                .map(|c| c.path.clone())
                .collect();
            (!paths.is_empty()).then_some(paths)
        })
        .await
}

/// The config file's `[access]` default reaches Discord: `/model`'s autocomplete
/// offers only the models the sender's role may use, and `/model` refuses another
/// one by name. With `guild_ids`, the commands are registered in those guilds only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_model_autocomplete_shows_only_the_roles_models() -> Result<()> {
    let text = script(5);
    let guilds = ["81384788765712384", "81384788765712385"];
    let world = DiscordWorld::start_with(
        chorus_tests::ServerConfig::new()
            .scripted("s", &text, 40.0)
            .scripted("t", &text, 40.0)
            .raw_toml("[access.roles.user]\nmodels = [\"s/*\"]\n"),
        &format!("guild_ids = [\"{}\", \"{}\"]", guilds[0], guilds[1]),
    )
    .await?;
    let registered = world
        .fake
        .wait("the commands registered in both guilds", WAIT, |s| {
            let paths: Vec<String> = s
                .calls
                .iter()
                .filter(|c| c.method == "PUT" && c.path.ends_with("/commands"))
                .map(|c| c.path.clone())
                .collect();
            (paths.len() >= guilds.len()).then_some(paths)
        })
        .await?;
    ensure!(
        registered.len() == guilds.len()
            && guilds.iter().all(|g| registered
                .iter()
                .any(|p| p.ends_with(&format!("/guilds/{g}/commands")))),
        "registered at {registered:?}, not in the guilds {guilds:?} only"
    );
    let alice = alice();
    let dm = world.fake.dm_channel(&alice);
    let token = world.fake.raw_interaction(
        dm,
        &alice,
        4,
        json!({"id": "771825006014889984", "name": "model", "type": 1,
               "options": [{"type": 3, "name": "name", "value": "demo", "focused": true}]}),
    )?;
    let answer = world
        .fake
        .wait("the autocomplete's choices", WAIT, |s| {
            s.answers
                .get(&token)
                .filter(|a| a.callback == Some(8))
                .cloned()
        })
        .await?;
    ensure!(
        answer.callback_data["choices"] == json!([{"name": "s/demo", "value": "s/demo"}]),
        "choices: {}",
        answer.callback_data
    );
    let token = world
        .fake
        .slash(dm, &alice, "model", &[("name", "t/demo")])?;
    let (_, refused) = world.fake.answer_of(&token, WAIT).await?;
    ensure!(
        refused
            .content
            .contains("`t/demo` is not available to your account"),
        "{refused:?}"
    );
    Ok(())
}
