//! The buttons on the bot's replies: Stop while a reply streams, Continue and
//! Regenerate once it has ended (Continue only when it can go on), as Discord message
//! components whose custom ids are the kit's [`Control::button_id`]s.

use chorus_core::chat::Control;
use serde_json::{Value, json};

/// Discord's component types and button styles used here.
const ACTION_ROW: u8 = 1;
const BUTTON: u8 = 2;
const PRIMARY: u8 = 1;
const SECONDARY: u8 = 2;
const DANGER: u8 = 4;

fn button(control: Control) -> Value {
    let (label, style) = match control {
        Control::Stop => ("Stop", DANGER),
        Control::Continue => ("Continue", PRIMARY),
        Control::Regenerate => ("Regenerate", SECONDARY),
    };
    json!({
        "type": BUTTON,
        "style": style,
        "label": label,
        "custom_id": control.button_id(),
        "emoji": {"name": control.reaction()},
    })
}

fn row(controls: &[Control]) -> Value {
    json!([{
        "type": ACTION_ROW,
        "components": controls.iter().map(|c| button(*c)).collect::<Vec<_>>(),
    }])
}

/// The components of a reply that is being written.
pub fn streaming() -> Value {
    row(&[Control::Stop])
}

/// The components of an ended reply: Continue (when it can go on) and Regenerate.
pub fn ended(continuable: bool) -> Value {
    if continuable {
        row(&[Control::Continue, Control::Regenerate])
    } else {
        row(&[Control::Regenerate])
    }
}

/// No components (an earlier part of a long reply).
pub fn none() -> Value {
    json!([])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(components: &Value) -> Vec<String> {
        components[0]["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["custom_id"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn buttons_carry_the_kits_ids() {
        assert_eq!(ids(&streaming()), ["chorus:stop"]);
        assert_eq!(ids(&ended(true)), ["chorus:continue", "chorus:regenerate"]);
        assert_eq!(ids(&ended(false)), ["chorus:regenerate"]);
        for id in ids(&ended(true)) {
            assert!(Control::from_button_id(&id).is_some());
        }
        assert_eq!(none(), json!([]));
    }
}
