//! The controls a surface shows on the bot's replies — reactions (Matrix, Discord,
//! Slack) and buttons (Discord, Slack) — mapped the same way on every surface.

use super::Command;

/// What a reaction or a button on the bot's reply asks of the run it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Control {
    Stop,
    Continue,
    Regenerate,
}

impl Control {
    /// Every control, in the order a surface shows them.
    pub const ALL: [Control; 3] = [Control::Stop, Control::Continue, Control::Regenerate];

    /// The control a reaction key stands for: ⏹️/🛑 stop, ▶️/⏩ continue, 🔁/🔄
    /// regenerate, with or without the emoji (U+FE0F) or text (U+FE0E) variation
    /// selector, which clients add or leave out as they please.
    pub fn from_reaction(key: &str) -> Option<Control> {
        let bare: String = key
            .trim()
            .chars()
            .filter(|c| !matches!(c, '\u{FE0F}' | '\u{FE0E}'))
            .collect();
        match bare.as_str() {
            "\u{23F9}" | "\u{1F6D1}" => Some(Control::Stop),
            "\u{25B6}" | "\u{23E9}" => Some(Control::Continue),
            "\u{1F501}" | "\u{1F504}" => Some(Control::Regenerate),
            _ => None,
        }
    }

    /// The emoji a surface offers as this control's reaction (one that
    /// [`Control::from_reaction`] maps back to it).
    pub fn reaction(self) -> &'static str {
        match self {
            Control::Stop => "\u{23F9}\u{FE0F}",
            Control::Continue => "\u{25B6}\u{FE0F}",
            Control::Regenerate => "\u{1F501}",
        }
    }

    /// The id of this control's button (`chorus:stop`, `chorus:continue`,
    /// `chorus:regenerate`), for platforms whose buttons carry a custom id.
    pub fn button_id(self) -> &'static str {
        match self {
            Control::Stop => "chorus:stop",
            Control::Continue => "chorus:continue",
            Control::Regenerate => "chorus:regenerate",
        }
    }

    /// The control a button id stands for (see [`Control::button_id`]).
    pub fn from_button_id(id: &str) -> Option<Control> {
        Control::ALL.into_iter().find(|c| c.button_id() == id)
    }

    /// The command this control carries out on its binding.
    pub fn command(self) -> Command {
        match self {
            Control::Stop => Command::Stop,
            Control::Continue => Command::Continue,
            Control::Regenerate => Command::Regenerate,
        }
    }
}

impl From<Control> for Command {
    fn from(control: Control) -> Self {
        control.command()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reaction_keys_map_to_controls() {
        for key in ["⏹️", "⏹", "🛑", "🛑\u{FE0F}"] {
            assert_eq!(Control::from_reaction(key), Some(Control::Stop), "{key:?}");
        }
        for key in ["▶️", "▶", "⏩", "▶\u{FE0E}"] {
            assert_eq!(
                Control::from_reaction(key),
                Some(Control::Continue),
                "{key:?}"
            );
        }
        for key in ["🔁", "🔄", "🔄\u{FE0F}"] {
            assert_eq!(
                Control::from_reaction(key),
                Some(Control::Regenerate),
                "{key:?}"
            );
        }
        for key in ["👍", "", "⏹️⏹️", "stop", "\u{FE0F}"] {
            assert_eq!(Control::from_reaction(key), None, "{key:?}");
        }
    }

    #[test]
    fn every_control_round_trips_through_its_reaction_and_button() {
        for control in Control::ALL {
            assert_eq!(Control::from_reaction(control.reaction()), Some(control));
            assert_eq!(Control::from_button_id(control.button_id()), Some(control));
        }
        assert_eq!(Control::from_button_id("chorus:nope"), None);
        assert_eq!(Control::from_button_id("stop"), None);
    }

    #[test]
    fn controls_are_commands() {
        assert_eq!(Command::from(Control::Stop), Command::Stop);
        assert_eq!(Control::Continue.command(), Command::Continue);
        assert_eq!(Control::Regenerate.command(), Command::Regenerate);
    }
}
