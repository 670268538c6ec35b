//! Reactions on the bot's reply as controls.

/// What a reaction asks of the run it annotates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReactionControl {
    Stop,
    Continue,
    Regenerate,
}

/// The control a reaction key stands for: ⏹️/🛑 stop, ▶️/⏩ continue, 🔁/🔄 regenerate,
/// with or without the emoji (U+FE0F) or text (U+FE0E) variation selector, which
/// clients add or leave out as they please.
pub fn control_of(key: &str) -> Option<ReactionControl> {
    let bare: String = key
        .trim()
        .chars()
        .filter(|c| !matches!(c, '\u{FE0F}' | '\u{FE0E}'))
        .collect();
    match bare.as_str() {
        "\u{23F9}" | "\u{1F6D1}" => Some(ReactionControl::Stop),
        "\u{25B6}" | "\u{23E9}" => Some(ReactionControl::Continue),
        "\u{1F501}" | "\u{1F504}" => Some(ReactionControl::Regenerate),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reaction_keys_map_to_controls() {
        for key in ["⏹️", "⏹", "🛑", "🛑\u{FE0F}"] {
            assert_eq!(control_of(key), Some(ReactionControl::Stop), "{key:?}");
        }
        for key in ["▶️", "▶", "⏩", "▶\u{FE0E}"] {
            assert_eq!(control_of(key), Some(ReactionControl::Continue), "{key:?}");
        }
        for key in ["🔁", "🔄", "🔄\u{FE0F}"] {
            assert_eq!(
                control_of(key),
                Some(ReactionControl::Regenerate),
                "{key:?}"
            );
        }
        for key in ["👍", "", "⏹️⏹️", "stop", "\u{FE0F}"] {
            assert_eq!(control_of(key), None, "{key:?}");
        }
    }
}
