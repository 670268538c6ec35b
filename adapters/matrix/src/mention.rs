//! Whether a message addresses the bot, and the text it asks once the address is
//! removed. Pure string work, so every rule is unit-tested.

/// The names the bot answers to in a message: its user id, its localpart (with and
/// without `@`) and its display name.
#[derive(Clone, Debug)]
pub struct BotNames {
    user_id: String,
    names: Vec<String>,
}

impl BotNames {
    /// `user_id` is the full id (`@chorus:example.org`).
    pub fn new(user_id: &str, display_name: Option<&str>) -> Self {
        let localpart = user_id
            .strip_prefix('@')
            .and_then(|r| r.split_once(':'))
            .map_or("", |(l, _)| l);
        let mut names: Vec<String> = [
            Some(user_id),
            Some(localpart),
            Some(&*format!("@{localpart}")),
            display_name,
        ]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|n| !n.is_empty() && *n != "@")
        .map(str::to_string)
        .collect();
        // Longest first, so `@chorus:example.org` is not read as `@chorus` + `:example.org`.
        names.sort_by_key(|n| std::cmp::Reverse(n.len()));
        names.dedup();
        Self {
            user_id: user_id.to_string(),
            names,
        }
    }

    /// `body` without a leading address of the bot ("Chorus: ...", "@chorus:example.org
    /// ..."), or `None` when the body does not start with one. The name must be followed
    /// by `:`, `,`, a space or the end, so "chorusline" is not an address.
    pub fn strip_leading(&self, body: &str) -> Option<String> {
        let text = body.trim_start();
        for name in &self.names {
            let Some(head) = text.get(..name.len()) else {
                continue;
            };
            if head.to_lowercase() != name.to_lowercase() {
                continue;
            }
            let rest = &text[name.len()..];
            // `@chorus:other.org` is another user, not `@chorus` + `:`.
            if name.starts_with('@')
                && rest
                    .strip_prefix(':')
                    .is_some_and(|r| r.starts_with(|c: char| !c.is_whitespace()))
            {
                continue;
            }
            match rest.chars().next() {
                None => return Some(String::new()),
                Some(c) if c == ':' || c == ',' || c.is_whitespace() => {
                    let rest = rest.strip_prefix([':', ',']).unwrap_or(rest);
                    return Some(rest.trim().to_string());
                }
                Some(_) => {}
            }
        }
        None
    }

    /// Whether the HTML body links to the bot (a "pill": `https://matrix.to/#/@bot:server`
    /// or `matrix:u/bot:server`), plain or percent-encoded.
    pub fn pilled_in(&self, html: &str) -> bool {
        let html = html.to_lowercase();
        let id = self.user_id.to_lowercase();
        let encoded = id.replace('@', "%40").replace(':', "%3a");
        let bare = id.trim_start_matches('@');
        [
            format!("matrix.to/#/{id}"),
            format!("matrix.to/#/{encoded}"),
            format!("matrix:u/{bare}"),
        ]
        .iter()
        .any(|link| {
            html.match_indices(link.as_str()).any(|(at, m)| {
                // The id must end there: `@bot:server` is not `@bot:server.evil`.
                !html[at + m.len()..]
                    .starts_with(|c: char| c.is_alphanumeric() || c == '.' || c == '-')
            })
        })
    }
}

/// A message as the addressing rules see it.
#[derive(Clone, Debug, Default)]
pub struct Incoming<'a> {
    /// The plain `body` (reply fallback already removed).
    pub body: &'a str,
    /// The HTML `formatted_body`, if any.
    pub html: Option<&'a str>,
    /// Whether `m.mentions.user_ids` names the bot.
    pub mentions_bot: bool,
    /// A direct chat (always answered).
    pub direct: bool,
}

/// The text to hand to core when the bot must answer `msg`, else `None`. In direct
/// chats every message is for the bot; in group rooms only a mention (intentional
/// mention, pill, or a leading name) or the command prefix addresses it. A leading
/// mention is removed; the prefix stays, core parses it.
pub fn addressed(names: &BotNames, msg: &Incoming<'_>, prefix: &str) -> Option<String> {
    if let Some(rest) = names.strip_leading(msg.body) {
        return (!rest.is_empty()).then_some(rest);
    }
    let body = msg.body.trim();
    let prefixed = body
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace));
    let mentioned = msg.mentions_bot || msg.html.is_some_and(|h| names.pilled_in(h));
    if msg.direct || prefixed || mentioned {
        return (!body.is_empty()).then(|| body.to_string());
    }
    None
}

/// Removes the quoted reply fallback (`> <@user> text` lines and the blank line after
/// them) older clients put at the start of a reply's body.
pub fn strip_reply_fallback(body: &str) -> &str {
    if !body.starts_with("> <") {
        return body;
    }
    let mut rest = body;
    while rest.starts_with('>') {
        rest = rest.split_once('\n').map_or("", |(_, r)| r);
    }
    rest.strip_prefix('\n').unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bot() -> BotNames {
        BotNames::new("@chorus:example.org", Some("Chorus Bot"))
    }

    fn group(body: &str) -> Incoming<'_> {
        Incoming {
            body,
            ..Default::default()
        }
    }

    #[test]
    fn leading_names_address_the_bot_and_are_stripped() {
        let b = bot();
        for (body, text) in [
            ("@chorus:example.org: what is rust?", "what is rust?"),
            ("chorus: what is rust?", "what is rust?"),
            ("Chorus, what is rust?", "what is rust?"),
            ("@chorus what is rust?", "what is rust?"),
            ("Chorus Bot: what is rust?", "what is rust?"),
            ("  CHORUS:   spaced  ", "spaced"),
            ("chorus: !chorus help", "!chorus help"),
        ] {
            assert_eq!(
                addressed(&b, &group(body), "!chorus").as_deref(),
                Some(text),
                "{body}"
            );
        }
    }

    #[test]
    fn other_text_in_groups_is_ignored() {
        let b = bot();
        for body in [
            "hello everyone",
            "chorusline: is a musical",
            "ask chorus: later",
            "!chorusx help",
            "@chorus:example.orgy hi",
            "@chorus:elsewhere.org: hi",
        ] {
            assert_eq!(addressed(&b, &group(body), "!chorus"), None, "{body}");
        }
    }

    #[test]
    fn prefix_mentions_pills_and_direct_chats_address_the_bot() {
        let b = bot();
        assert_eq!(
            addressed(&b, &group("!chorus help"), "!chorus").as_deref(),
            Some("!chorus help")
        );
        assert_eq!(
            addressed(&b, &group("!chorus"), "!chorus").as_deref(),
            Some("!chorus")
        );
        let mentioned = Incoming {
            body: "hey there, explain tokio",
            mentions_bot: true,
            ..Default::default()
        };
        assert_eq!(
            addressed(&b, &mentioned, "!chorus").as_deref(),
            Some("hey there, explain tokio")
        );
        let pill = Incoming {
            body: "hey Chorus Bot explain",
            html: Some(
                r#"hey <a href="https://matrix.to/#/%40chorus%3Aexample.org">Chorus Bot</a> explain"#,
            ),
            ..Default::default()
        };
        assert!(addressed(&b, &pill, "!chorus").is_some());
        let other_pill = Incoming {
            body: "hey evil",
            html: Some(r#"<a href="https://matrix.to/#/@chorus:example.org.evil">x</a>"#),
            ..Default::default()
        };
        assert_eq!(addressed(&b, &other_pill, "!chorus"), None);
        let dm = Incoming {
            body: "what is rust?",
            direct: true,
            ..Default::default()
        };
        assert_eq!(
            addressed(&b, &dm, "!chorus").as_deref(),
            Some("what is rust?")
        );
        let dm_named = Incoming {
            body: "Chorus: what is rust?",
            direct: true,
            ..Default::default()
        };
        assert_eq!(
            addressed(&b, &dm_named, "!chorus").as_deref(),
            Some("what is rust?")
        );
    }

    #[test]
    fn a_bare_name_or_empty_text_asks_nothing() {
        let b = bot();
        assert_eq!(addressed(&b, &group("chorus:"), "!chorus"), None);
        let dm = Incoming {
            body: "   ",
            direct: true,
            ..Default::default()
        };
        assert_eq!(addressed(&b, &dm, "!chorus"), None);
    }

    #[test]
    fn reply_fallback_is_removed() {
        assert_eq!(
            strip_reply_fallback("> <@a:x> earlier\n> more\n\nthe answer"),
            "the answer"
        );
        assert_eq!(strip_reply_fallback("> quote\n\nkept"), "> quote\n\nkept");
        assert_eq!(strip_reply_fallback("plain"), "plain");
    }
}
