//! How core's answers name commands in Slack: the buttons on a reply where there are
//! some, and the `/chorus` slash command; the help lists the commands in that form and
//! adds the buttons. Pure, used by the sink factory ([`SinkFactory::command_hint`],
//! [`SinkFactory::help`]).
//!
//! [`SinkFactory::command_hint`]: chorus_core::chat::SinkFactory::command_hint
//! [`SinkFactory::help`]: chorus_core::chat::SinkFactory::help

use chorus_core::chat::{help_text, text_hint};

/// What Slack's help adds to the command list: the buttons on a reply.
pub const CONTROLS_HELP: &str = "\nButtons on a reply: **Stop** while it is written; **Continue** (when it can go on) and **Regenerate** once it has ended. Only the person whose conversation it is can press them.";

/// `name` with `args` as a Slack user gives it: its button (or `/chorus name`) for the
/// reply controls, `/chorus name args` otherwise (`prefix` is the slash command).
pub fn command_hint(prefix: &str, name: &str, args: &str) -> String {
    let button = match name {
        "stop" => "Stop",
        "continue" => "Continue",
        "regenerate" => "Regenerate",
        _ => return text_hint(prefix, name, args),
    };
    format!(
        "the **{button}** button (or {})",
        text_hint(prefix, name, args)
    )
}

/// The command list with the buttons after it; one command's help as core writes it.
pub fn help(prefix: &str, topic: Option<&str>) -> String {
    match topic {
        None => format!("{}{CONTROLS_HELP}", help_text(prefix, None)),
        Some(_) => help_text(prefix, topic),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PREFIX;

    #[test]
    fn help_names_the_slash_command_and_the_buttons() {
        let text = help(PREFIX, None);
        assert!(text.contains("`/chorus resume [N | ID]`") && !text.contains("!chorus"));
        assert!(text.ends_with(CONTROLS_HELP));
        assert_eq!(
            help(PREFIX, Some("model")),
            help_text(PREFIX, Some("model")),
            "the help of one command is core's"
        );
    }

    #[test]
    fn hints_name_the_buttons_and_the_slash_command() {
        assert_eq!(
            command_hint(PREFIX, "stop", ""),
            "the **Stop** button (or `/chorus stop`)"
        );
        assert_eq!(
            command_hint(PREFIX, "continue", ""),
            "the **Continue** button (or `/chorus continue`)"
        );
        assert_eq!(command_hint(PREFIX, "resume", "N"), "`/chorus resume N`");
        assert_eq!(
            command_hint(PREFIX, "model", "NAME"),
            "`/chorus model NAME`"
        );
    }
}
