//! The slash commands: their definitions (registered at start) and the parsing of an
//! invocation into the kit's [`Command`], pure so that a malformed one gets a clear
//! error instead of a crash.

use chorus_core::chat::Command;
use serenity::all::{CommandDataOption, CommandOptionType, CreateCommand, CreateCommandOption};

/// How a command is answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slash {
    /// Carried out by core; `ephemeral` answers only the person who asked, and
    /// `opens_thread` makes a thread for it when it is used in a guild channel.
    Run {
        command: Command,
        ephemeral: bool,
        opens_thread: bool,
    },
    /// `/resume` without a choice: the menu of the person's recent conversations.
    ResumeMenu,
    /// `/help`: what a Discord user can use ([`help_text`]).
    Help,
}

/// Every slash command, as registered.
pub fn definitions() -> Vec<CreateCommand> {
    let text = |name: &str, description: &str, required: bool| {
        CreateCommandOption::new(CommandOptionType::String, name, description).required(required)
    };
    vec![
        CreateCommand::new("ask")
            .description("Ask a question: the answer streams here (a thread in a channel)")
            .add_option(text("question", "What to ask", true).max_length(4000)),
        CreateCommand::new("new")
            .description("Start a new conversation here")
            .add_option(text("title", "Its title", false).max_length(100)),
        CreateCommand::new("model")
            .description("Show the models, or switch this conversation's model")
            .add_option(
                text("name", "The model to use here", false)
                    .set_autocomplete(true)
                    .max_length(200),
            ),
        CreateCommand::new("stop").description("Stop the reply being written here"),
        CreateCommand::new("continue")
            .description("Go on with a stopped or interrupted reply here"),
        CreateCommand::new("regenerate").description("Answer the last question here again"),
        CreateCommand::new("resume")
            .description("Bring one of your conversations (from any surface) here"),
        CreateCommand::new("link")
            .description("Get a code to join another account to this one, or redeem one")
            .add_option(
                text("code", "A code from the web or another surface", false).max_length(64),
            ),
        CreateCommand::new("usage").description("Your balance and usage (only you see it)"),
        CreateCommand::new("help").description("What the bot can do"),
    ]
}

/// Why an invocation cannot be carried out.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SlashError {
    #[error("I do not know the command /{0}. Try /help.")]
    Unknown(String),
    #[error("/{command} needs `{option}`.")]
    Missing {
        command: &'static str,
        option: &'static str,
    },
    #[error("`{option}` of /{command} must be text.")]
    NotText {
        command: &'static str,
        option: &'static str,
    },
}

fn option<'a>(
    options: &'a [CommandDataOption],
    command: &'static str,
    name: &'static str,
) -> Result<Option<&'a str>, SlashError> {
    match options.iter().find(|o| o.name == name) {
        None => Ok(None),
        Some(o) => match o.value.as_str() {
            Some(s) if s.trim().is_empty() => Ok(None),
            Some(s) => Ok(Some(s.trim())),
            None => Err(SlashError::NotText {
                command,
                option: name,
            }),
        },
    }
}

/// The invocation `/name options…` as what to do.
pub fn parse(name: &str, options: &[CommandDataOption]) -> Result<Slash, SlashError> {
    let run = |command, ephemeral, opens_thread| Slash::Run {
        command,
        ephemeral,
        opens_thread,
    };
    Ok(match name {
        "ask" => {
            let question = option(options, "ask", "question")?.ok_or(SlashError::Missing {
                command: "ask",
                option: "question",
            })?;
            run(Command::Ask(question.to_string()), false, true)
        }
        "new" => run(
            Command::New(option(options, "new", "title")?.map(str::to_string)),
            false,
            true,
        ),
        "model" => run(
            Command::Model(option(options, "model", "name")?.map(str::to_string)),
            true,
            false,
        ),
        "stop" => run(Command::Stop, true, false),
        "continue" => run(Command::Continue, true, false),
        "regenerate" => run(Command::Regenerate, true, false),
        "resume" => Slash::ResumeMenu,
        "link" => run(
            Command::Link(option(options, "link", "code")?.map(str::to_string)),
            true,
            false,
        ),
        "usage" => run(Command::Usage, true, false),
        "help" => Slash::Help,
        other => return Err(SlashError::Unknown(other.chars().take(40).collect())),
    })
}

/// The answer to `/help` and to `!chorus help`: what a Discord user can use — the
/// slash commands as registered (from [`definitions`], so the list cannot drift from
/// what Discord shows), the buttons and reactions on a reply, and the text commands
/// last. Core's help lists only the text commands (`!chorus …`), which are not how
/// people use a Discord bot.
pub fn help_text(prefix: &str) -> String {
    let mut text = String::from(
        "Ask me anything: write to me in a direct message, mention me in a channel (a thread opens for the conversation; answer in it to go on), or use `/ask`.\n\n**Slash commands**\n",
    );
    for def in definitions() {
        let Ok(json) = serde_json::to_value(&def) else {
            continue;
        };
        let mut usage = format!("/{}", json["name"].as_str().unwrap_or_default());
        for option in json["options"].as_array().into_iter().flatten() {
            let name = option["name"].as_str().unwrap_or_default();
            if option["required"] == true {
                usage.push_str(&format!(" {name}"));
            } else {
                usage.push_str(&format!(" [{name}]"));
            }
        }
        text.push_str(&format!(
            "- `{usage}` — {}\n",
            json["description"].as_str().unwrap_or_default()
        ));
    }
    text.push_str(
        "\n**Buttons** on a reply: **Stop** while it is written; **Continue** (when it can go on) and **Regenerate** once it has ended. Only the person who asked can press them. The reactions ⏹️ ▶️ 🔁 do the same.\n",
    );
    text.push_str(&format!(
        "\nThe same commands also work as text in a DM or a mention: `{prefix} COMMAND` (`{prefix} help COMMAND` shows one)."
    ));
    text
}

/// How core's answers name a command on Discord ([`SinkFactory::command_hint`]): the
/// reply buttons where there are some, and the slash commands, which every Discord
/// user has (text commands need the message-content intent outside DMs and mentions).
/// `resume N` names the text form too: `/resume` offers a menu, not the numbers of a
/// list already shown.
///
/// [`SinkFactory::command_hint`]: chorus_core::chat::SinkFactory::command_hint
pub fn command_hint(prefix: &str, name: &str, args: &str) -> String {
    match name {
        "stop" => "the **Stop** button (or `/stop`)".into(),
        "continue" => "the **Continue** button (or `/continue`)".into(),
        "regenerate" => "the **Regenerate** button (or `/regenerate`)".into(),
        "resume" if !args.is_empty() => format!("`/resume` (or `{prefix} resume {args}`)"),
        "model" if !args.is_empty() => "`/model name`".into(),
        _ => format!("`/{name}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(json: serde_json::Value) -> Vec<CommandDataOption> {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn every_definition_parses() {
        for def in definitions() {
            let json = serde_json::to_value(&def).unwrap();
            let name = json["name"].as_str().unwrap();
            let opts = if name == "ask" {
                options(serde_json::json!([{"name":"question","type":3,"value":"hi"}]))
            } else {
                Vec::new()
            };
            assert!(parse(name, &opts).is_ok(), "/{name}");
        }
    }

    #[test]
    fn invocations_become_commands() {
        let ask = parse(
            "ask",
            &options(serde_json::json!([{"name":"question","type":3,"value":"  why? "}])),
        )
        .unwrap();
        assert_eq!(
            ask,
            Slash::Run {
                command: Command::Ask("why?".into()),
                ephemeral: false,
                opens_thread: true
            }
        );
        let link = parse(
            "link",
            &options(serde_json::json!([{"name":"code","type":3,"value":"ABCD2345"}])),
        )
        .unwrap();
        assert!(
            matches!(link, Slash::Run { command: Command::Link(Some(c)), ephemeral: true, .. } if c == "ABCD2345")
        );
        assert!(matches!(
            parse("usage", &[]).unwrap(),
            Slash::Run {
                ephemeral: true,
                ..
            }
        ));
        assert_eq!(parse("resume", &[]).unwrap(), Slash::ResumeMenu);
        assert_eq!(parse("help", &[]).unwrap(), Slash::Help);
    }

    #[test]
    fn help_lists_the_slash_commands_and_buttons() {
        let help = help_text("!chorus");
        for def in definitions() {
            let json = serde_json::to_value(&def).unwrap();
            let name = json["name"].as_str().unwrap();
            assert!(help.contains(&format!("`/{name}")), "/{name}: {help}");
        }
        assert!(help.contains("`/ask question`") && help.contains("`/link [code]`"));
        assert!(help.contains("**Stop**") && help.contains("**Continue**"));
        // The text commands are named, not listed in place of the slash ones.
        assert_eq!(help.matches("!chorus").count(), 2, "{help}");
        assert!(!help.contains("`!chorus new"), "{help}");
        assert!(help.len() < 2000, "one Discord message: {}", help.len());
    }

    #[test]
    fn hints_name_buttons_and_slash_commands_that_exist() {
        let names: Vec<String> = definitions()
            .iter()
            .map(|d| {
                serde_json::to_value(d).unwrap()["name"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        for (name, args) in [
            ("stop", ""),
            ("continue", ""),
            ("regenerate", ""),
            ("resume", ""),
            ("resume", "N"),
            ("model", "NAME"),
            ("link", ""),
            ("usage", ""),
        ] {
            let hint = command_hint("!chorus", name, args);
            assert!(
                names.contains(&name.to_string()),
                "/{name} is not registered"
            );
            assert!(hint.contains(&format!("`/{name}")), "{name}: {hint}");
        }
        assert_eq!(
            command_hint("!chorus", "continue", ""),
            "the **Continue** button (or `/continue`)"
        );
        assert_eq!(command_hint("!chorus", "resume", ""), "`/resume`");
        assert_eq!(
            command_hint("!chorus", "resume", "N"),
            "`/resume` (or `!chorus resume N`)"
        );
        // `/model`'s option is `name`.
        assert_eq!(command_hint("!chorus", "model", "NAME"), "`/model name`");
    }

    #[test]
    fn malformed_invocations_are_named() {
        assert_eq!(
            parse("ask", &[]).unwrap_err(),
            SlashError::Missing {
                command: "ask",
                option: "question"
            }
        );
        let wrong = options(serde_json::json!([{"name":"question","type":4,"value":5}]));
        assert!(matches!(
            parse("ask", &wrong).unwrap_err(),
            SlashError::NotText { .. }
        ));
        assert!(
            parse("frobnicate", &[])
                .unwrap_err()
                .to_string()
                .contains("/frobnicate")
        );
    }
}
