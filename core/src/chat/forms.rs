//! How a surface's people give commands, for the answers that name one: core's replies
//! point at other commands ("`!chorus resume` lists your conversations", "stop it
//! first"), and each surface says that in its own form — text with its prefix on
//! Matrix, slash commands and buttons on Discord, `/chorus …` and buttons on Slack —
//! through its [`SinkFactory`] ([`SinkFactory::command_hint`], [`SinkFactory::help`]).

use crate::chat::command::usage_line;
use crate::chat::{RenderHub, SinkFactory};

/// A surface's command forms, handed to `Core::chat_text` / `Core::chat_command`:
/// the prefix of its text commands and, from its [`RenderHub`], its factory's forms.
/// A bare prefix (`"!chorus".into()`) names every command as text.
#[derive(Clone, Copy)]
pub struct CommandForms<'a> {
    prefix: &'a str,
    factory: Option<&'a dyn SinkFactory>,
}

impl CommandForms<'_> {
    /// The prefix of text commands (`!chorus`).
    pub fn prefix(&self) -> &str {
        self.prefix
    }

    /// How a person gives the command `name` of the shared set with `args` (its
    /// arguments as its help shows them, e.g. `N`; empty for none): a markdown noun
    /// phrase, e.g. "`!chorus resume N`" or "the **Stop** button (or `/stop`)".
    pub fn hint(&self, name: &str, args: &str) -> String {
        match self.factory {
            Some(factory) => factory.command_hint(self.prefix, name, args),
            None => text_hint(self.prefix, name, args),
        }
    }

    /// The answer to `help`: every command, or one command's usage.
    pub fn help(&self, topic: Option<&str>) -> String {
        match self.factory {
            Some(factory) => factory.help(self.prefix, topic),
            None => crate::chat::help_text(self.prefix, topic),
        }
    }
}

/// The text form of a command: "`PREFIX name args`" (the default of
/// [`SinkFactory::command_hint`]).
pub fn text_hint(prefix: &str, name: &str, args: &str) -> String {
    format!("`{}`", usage_line(prefix, name, args))
}

impl<'a> From<&'a str> for CommandForms<'a> {
    fn from(prefix: &'a str) -> Self {
        CommandForms {
            prefix,
            factory: None,
        }
    }
}

impl<'a> From<&'a RenderHub> for CommandForms<'a> {
    fn from(hub: &'a RenderHub) -> Self {
        hub.command_forms()
    }
}

impl<'a> CommandForms<'a> {
    /// The forms of a surface whose text commands start with `prefix` and whose
    /// factory is `factory`.
    pub(crate) fn of(prefix: &'a str, factory: &'a dyn SinkFactory) -> Self {
        CommandForms {
            prefix,
            factory: Some(factory),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_prefix_names_commands_as_text() {
        let forms = CommandForms::from("!chorus");
        assert_eq!(forms.hint("resume", "N"), "`!chorus resume N`");
        assert_eq!(forms.hint("continue", ""), "`!chorus continue`");
        assert!(forms.help(None).contains("`!chorus stop`"));
    }
}
