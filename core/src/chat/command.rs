//! The command set every chat surface shares, parsed from text (`!chorus model gpt`)
//! and built directly by surfaces that have buttons, slash commands or reactions.

use std::fmt;

/// One thing a person asks of the bot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// A question for the model.
    Ask(String),
    /// Stop the reply being written in this binding.
    Stop,
    /// Go on with the last stopped, interrupted or cut-off reply.
    Continue,
    /// Answer the last question again (a new branch of the conversation).
    Regenerate,
    /// Without an argument: list conversations to resume. With one (a number from the
    /// list or a conversation id): bind this channel to it.
    Resume(Option<String>),
    /// Start a new conversation here, optionally titled.
    New(Option<String>),
    /// Without an argument: list models. With one: use it from now on.
    Model(Option<String>),
    /// Without an argument: issue a link code. With one: redeem it.
    Link(Option<String>),
    /// Balance and recent usage.
    Usage,
    /// The command list, or the help of one command.
    Help(Option<String>),
}

/// Text that starts with the prefix but is not a valid command. Its `Display` is the
/// reply to post: what was wrong, then how to use the command.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct CommandError {
    pub problem: String,
    pub usage: String,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\n\n{}", self.problem, self.usage)
    }
}

/// Every command with its arguments and what it does, for `help`.
const COMMANDS: &[(&str, &str, &str)] = &[
    (
        "help",
        "[COMMAND]",
        "show this list, or the help of one command",
    ),
    ("new", "[TITLE]", "start a new conversation here"),
    (
        "model",
        "[NAME]",
        "list the models, or use NAME from now on",
    ),
    ("stop", "", "stop the reply being written"),
    (
        "continue",
        "",
        "go on with a stopped, interrupted or cut-off reply",
    ),
    ("regenerate", "", "answer the last question again"),
    (
        "resume",
        "[N | ID]",
        "list your conversations with unfinished or recent replies (from any surface), or bind this place to one",
    ),
    (
        "link",
        "[CODE]",
        "get a code to join another account (web, Discord, Slack...) to this one, or redeem one",
    ),
    ("usage", "", "your balance and recent usage"),
];

/// Parses text addressed to the bot: a command when it starts with `prefix`,
/// otherwise a question. An empty command (the prefix alone) is `help`.
pub fn parse_command(text: &str, prefix: &str) -> Result<Command, CommandError> {
    let text = text.trim();
    let Some(rest) = strip_prefix(text, prefix) else {
        return Ok(Command::Ask(text.to_string()));
    };
    let rest = rest.trim();
    let (name, args) = match rest.split_once(char::is_whitespace) {
        Some((name, args)) => (name, args.trim()),
        None => (rest, ""),
    };
    let arg = (!args.is_empty()).then(|| args.to_string());
    let one_word = |command: &str| -> Result<Option<String>, CommandError> {
        match &arg {
            Some(a) if a.split_whitespace().count() > 1 => Err(error(
                prefix,
                command,
                format!("`{command}` takes one argument, not {a:?}."),
            )),
            _ => Ok(arg.clone()),
        }
    };
    let none = |command: &str, cmd: Command| -> Result<Command, CommandError> {
        match &arg {
            Some(a) => Err(error(
                prefix,
                command,
                format!("`{command}` takes no argument, but got {a:?}."),
            )),
            None => Ok(cmd),
        }
    };
    match name.to_ascii_lowercase().as_str() {
        "" | "help" => match one_word("help")? {
            Some(topic) if !COMMANDS.iter().any(|(n, _, _)| *n == topic) => Err(error(
                prefix,
                "help",
                format!("There is no command `{topic}`."),
            )),
            topic => Ok(Command::Help(topic)),
        },
        "ask" => match arg {
            Some(question) => Ok(Command::Ask(question)),
            None => Err(error(prefix, "help", "`ask` needs a question.".into())),
        },
        "stop" => none("stop", Command::Stop),
        "continue" => none("continue", Command::Continue),
        "regenerate" => none("regenerate", Command::Regenerate),
        "usage" => none("usage", Command::Usage),
        "resume" => one_word("resume").map(Command::Resume),
        "model" => one_word("model").map(Command::Model),
        "link" => one_word("link").map(Command::Link),
        "new" => Ok(Command::New(arg)),
        other => Err(CommandError {
            problem: format!("Unknown command `{other}`."),
            usage: help_text(prefix, None),
        }),
    }
}

/// The help reply: every command, or one command's usage.
pub fn help_text(prefix: &str, topic: Option<&str>) -> String {
    if let Some((name, args, what)) = topic.and_then(|t| COMMANDS.iter().find(|(n, _, _)| *n == t))
    {
        return format!("`{}` — {what}", usage_line(prefix, name, args));
    }
    let mut text = format!(
        "Ask me anything: write to me in a direct message, or mention me. Commands (`{prefix} COMMAND`):\n"
    );
    for (name, args, what) in COMMANDS {
        text.push_str(&format!(
            "- `{}` — {what}\n",
            usage_line(prefix, name, args)
        ));
    }
    text
}

/// `PREFIX name args` (no args: `PREFIX name`).
pub(crate) fn usage_line(prefix: &str, name: &str, args: &str) -> String {
    if args.is_empty() {
        format!("{prefix} {name}")
    } else {
        format!("{prefix} {name} {args}")
    }
}

fn error(prefix: &str, command: &str, problem: String) -> CommandError {
    CommandError {
        problem,
        usage: format!("Usage: {}", help_text(prefix, Some(command))),
    }
}

/// The text after `prefix` when `text` starts with it as a whole word (`!chorus`,
/// not `!chorusbot`), case-insensitively.
fn strip_prefix<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = &text[prefix.len()..];
    (rest.is_empty() || rest.starts_with(char::is_whitespace)).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "!chorus";

    #[test]
    fn plain_text_is_a_question() {
        assert_eq!(
            parse_command("  what is 2+2? ", P),
            Ok(Command::Ask("what is 2+2?".into()))
        );
        assert_eq!(
            parse_command("!chorusbot hi", P),
            Ok(Command::Ask("!chorusbot hi".into()))
        );
    }

    #[test]
    fn commands_with_and_without_arguments() {
        assert_eq!(parse_command("!chorus", P), Ok(Command::Help(None)));
        assert_eq!(parse_command("!CHORUS Help", P), Ok(Command::Help(None)));
        assert_eq!(
            parse_command("!chorus help model", P),
            Ok(Command::Help(Some("model".into())))
        );
        assert_eq!(parse_command("!chorus stop", P), Ok(Command::Stop));
        assert_eq!(parse_command("!chorus continue", P), Ok(Command::Continue));
        assert_eq!(
            parse_command("!chorus regenerate", P),
            Ok(Command::Regenerate)
        );
        assert_eq!(
            parse_command("!chorus resume", P),
            Ok(Command::Resume(None))
        );
        assert_eq!(
            parse_command("!chorus resume 2", P),
            Ok(Command::Resume(Some("2".into())))
        );
        assert_eq!(
            parse_command("!chorus model scripted/demo", P),
            Ok(Command::Model(Some("scripted/demo".into())))
        );
        assert_eq!(
            parse_command("!chorus link ABCD-EFGH", P),
            Ok(Command::Link(Some("ABCD-EFGH".into())))
        );
        assert_eq!(
            parse_command("!chorus new Trip plans", P),
            Ok(Command::New(Some("Trip plans".into())))
        );
        assert_eq!(
            parse_command("!chorus ask why?", P),
            Ok(Command::Ask("why?".into()))
        );
        assert_eq!(parse_command("!chorus usage", P), Ok(Command::Usage));
    }

    #[test]
    fn bad_arguments_name_the_problem_and_show_usage() {
        let e = parse_command("!chorus stop now", P).unwrap_err();
        assert!(e.problem.contains("takes no argument"), "{e}");
        assert!(e.to_string().contains("!chorus stop"), "{e}");
        let e = parse_command("!chorus model a b", P).unwrap_err();
        assert!(e.problem.contains("one argument"), "{e}");
        assert!(e.to_string().contains("!chorus model [NAME]"), "{e}");
        let e = parse_command("!chorus frobnicate", P).unwrap_err();
        assert!(e.problem.contains("Unknown command `frobnicate`"), "{e}");
        assert!(e.usage.contains("!chorus resume"), "{e}");
        let e = parse_command("!chorus help nothing", P).unwrap_err();
        assert!(e.problem.contains("no command `nothing`"), "{e}");
        let e = parse_command("!chorus ask", P).unwrap_err();
        assert!(e.problem.contains("needs a question"), "{e}");
    }

    #[test]
    fn help_lists_every_command() {
        let help = help_text(P, None);
        for (name, _, _) in COMMANDS {
            assert!(help.contains(&format!("`!chorus {name}")), "{name}: {help}");
        }
    }
}
