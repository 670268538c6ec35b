//! When a message is for the bot, and what it says once the mention is taken out:
//! DMs always, the bot's own threads always, elsewhere in a guild only on a mention.

/// What a channel is, as far as addressing goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    pub dm: bool,
    pub thread: bool,
    /// A thread the bot opened (one of its conversations).
    pub ours: bool,
    /// A thread's parent channel (allowlists apply to it).
    pub parent: Option<u64>,
}

impl Place {
    pub const DM: Place = Place {
        dm: true,
        thread: false,
        ours: false,
        parent: None,
    };
}

/// The text for the bot when the message is addressed to it, else `None`. An empty
/// text (only a mention) asks for the help.
pub fn addressed(
    place: &Place,
    mentioned: bool,
    content: &str,
    bot_id: u64,
    prefix: &str,
) -> Option<String> {
    let mention = format!("<@{bot_id}>");
    let nick_mention = format!("<@!{bot_id}>");
    let names_bot = mentioned || content.contains(&mention) || content.contains(&nick_mention);
    let for_us = place.dm || place.ours || names_bot || content.trim_start().starts_with(prefix);
    if !for_us {
        return None;
    }
    let text = content
        .replace(&nick_mention, " ")
        .replace(&mention, " ")
        .trim()
        .to_string();
    if text.is_empty() {
        return Some(format!("{prefix} help"));
    }
    Some(text)
}

/// A thread's name from the question: its first line, at most 80 characters.
pub fn thread_name(text: &str) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let mut name: String = line.chars().take(80).collect();
    if line.chars().count() > 80 {
        name.push('…');
    }
    if name.is_empty() {
        name = "Conversation".into();
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUILD: Place = Place {
        dm: false,
        thread: false,
        ours: false,
        parent: None,
    };

    #[test]
    fn dms_and_our_threads_need_no_mention() {
        assert_eq!(
            addressed(&Place::DM, false, "hello", 42, "!chorus").as_deref(),
            Some("hello")
        );
        let ours = Place {
            thread: true,
            ours: true,
            parent: Some(1),
            ..GUILD
        };
        assert_eq!(
            addressed(&ours, false, "and then?", 42, "!chorus").as_deref(),
            Some("and then?")
        );
        let theirs = Place {
            ours: false,
            ..ours
        };
        assert_eq!(addressed(&theirs, false, "chat", 42, "!chorus"), None);
    }

    #[test]
    fn guild_channels_need_a_mention_or_the_prefix() {
        assert_eq!(addressed(&GUILD, false, "lunch?", 42, "!chorus"), None);
        assert_eq!(
            addressed(&GUILD, true, "<@42> what is Chorus?", 42, "!chorus").as_deref(),
            Some("what is Chorus?")
        );
        assert_eq!(
            addressed(&GUILD, false, "hey <@!42>, why?", 42, "!chorus").as_deref(),
            Some("hey  , why?")
        );
        assert_eq!(
            addressed(&GUILD, true, "<@42>", 42, "!chorus").as_deref(),
            Some("!chorus help")
        );
        assert_eq!(
            addressed(&GUILD, false, "!chorus usage", 42, "!chorus").as_deref(),
            Some("!chorus usage")
        );
        // Another user's mention is not the bot's.
        assert_eq!(addressed(&GUILD, false, "<@43> hi", 42, "!chorus"), None);
    }

    #[test]
    fn thread_names_are_short_first_lines() {
        assert_eq!(thread_name("\n  what is it?\nmore"), "what is it?");
        let long = "x".repeat(200);
        assert_eq!(thread_name(&long).chars().count(), 81);
        assert_eq!(thread_name("  "), "Conversation");
    }
}
