//! Property tests (proptest) of core's parsers of outside input, with generated and
//! mutated inputs: the chat command parser, the message splitter and the config
//! loader. None may panic; each keeps its documented promises on every input.
//!
//! CI runs 64 cases per property; `PROPTEST_CASES=100000` runs more (README,
//! "Fuzzing"). A failure proptest finds is kept as a regression test below.

use chorus_core::chat::split::{MIN_PART_BYTES, close_open_fence, split_message};
use chorus_core::chat::{Command, parse_command};
use chorus_core::config::Config;
use proptest::prelude::*;
use std::collections::BTreeMap;

/// Cases per property: 64 unless `PROPTEST_CASES` says otherwise.
fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 64;
    }
    config
}

/// Text made of the pieces chat messages and markdown replies are made of.
fn chat_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => "[a-zA-Z0-9]{1,12}",
        3 => Just(" ".to_string()),
        2 => Just("\n".to_string()),
        1 => Just("\t".to_string()),
        1 => Just("```".to_string()),
        1 => Just("```rust\n".to_string()),
        1 => Just("~~~\n".to_string()),
        1 => Just("    ".to_string()),
        1 => Just("!chorus".to_string()),
        1 => Just("é✓日本語🎉".to_string()),
        1 => Just("\u{200b}\u{feff}\r".to_string()),
        1 => any::<String>(),
    ];
    prop::collection::vec(piece, 0..60).prop_map(|p| p.concat())
}

/// A command name as a person may type it.
fn command_name() -> impl Strategy<Value = (String, &'static str)> {
    prop::sample::select(vec![
        "help",
        "new",
        "model",
        "stop",
        "continue",
        "regenerate",
        "resume",
        "link",
        "usage",
        "ask",
    ])
    .prop_flat_map(|name| {
        prop::collection::vec(any::<bool>(), name.len()).prop_map(move |upper| {
            let typed: String = name
                .chars()
                .zip(upper)
                .map(|(c, u)| if u { c.to_ascii_uppercase() } else { c })
                .collect();
            (typed, name)
        })
    })
}

fn blank() -> impl Strategy<Value = String> {
    "[ \t\n]{0,3}"
}

fn word() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_./-]{1,16}"
}

proptest! {
    #![proptest_config(config())]

    /// Any text parses or is refused with a reply; text without the prefix is a
    /// question, trimmed.
    #[test]
    fn any_text_is_a_command_or_a_question(text in chat_text(), prefix in "!?[a-z]{1,8}") {
        // The prefix is matched without regard to ASCII case.
        let addressed = text
            .trim()
            .get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(&prefix));
        match parse_command(&text, &prefix) {
            Ok(Command::Ask(q)) => {
                if !addressed {
                    prop_assert_eq!(q, text.trim());
                }
            }
            Ok(_) => prop_assert!(addressed),
            Err(e) => {
                prop_assert!(addressed);
                prop_assert!(!e.problem.is_empty() && !e.usage.is_empty());
            }
        }
    }

    /// Typed commands, in any letter case and spacing, parse to what they say.
    #[test]
    fn typed_commands_parse_to_what_they_say(
        (typed, name) in command_name(),
        lead in blank(),
        gap in "[ \t]{1,3}",
        tail in blank(),
        arg in proptest::option::of(word()),
    ) {
        let text = match &arg {
            Some(a) => format!("{lead}!chorus {typed}{gap}{a}{tail}"),
            None => format!("{lead}!chorus {typed}{tail}"),
        };
        let parsed = parse_command(&text, "!chorus");
        let expected = match (name, arg.clone()) {
            ("help", None) => Some(Command::Help(None)),
            ("new", a) => Some(Command::New(a)),
            ("model", a) => Some(Command::Model(a)),
            ("resume", a) => Some(Command::Resume(a)),
            ("link", a) => Some(Command::Link(a)),
            ("ask", Some(q)) => Some(Command::Ask(q)),
            ("stop", None) => Some(Command::Stop),
            ("continue", None) => Some(Command::Continue),
            ("regenerate", None) => Some(Command::Regenerate),
            ("usage", None) => Some(Command::Usage),
            // `help WORD` is help on a command, refused for any other word; commands
            // without arguments refuse one; `ask` needs a question.
            _ => None,
        };
        match expected {
            Some(command) => prop_assert_eq!(parsed, Ok(command), "{:?}", text),
            None if name == "help" && arg.as_deref().is_some_and(|a| {
                ["help", "new", "model", "stop", "continue", "regenerate", "resume", "link", "usage"].contains(&a)
            }) => prop_assert_eq!(parsed, Ok(Command::Help(arg.clone())), "{:?}", text),
            None => {
                let err = parsed.expect_err("refused");
                prop_assert!(err.to_string().contains("!chorus"), "{}", err);
            }
        }
    }

    /// Every part fits the limit, no part leaves a code fence open, text without
    /// fences comes back exactly, and parts that are full never change as the text
    /// grows (what the progressive renderer relies on).
    #[test]
    fn split_parts_fit_close_their_fences_and_stay_put(
        text in chat_text(),
        max in 0usize..400,
        cut in any::<prop::sample::Index>(),
    ) {
        let limit = max.max(MIN_PART_BYTES);
        // A fence's opening line longer than a part is cut like text (a known limit,
        // kept by `an_opening_fence_line_longer_than_a_part_is_cut_as_text`).
        prop_assume!(!has_fence_opener_longer_than(&text, limit / 2));
        let parts = split_message(&text, max);
        prop_assert!(!parts.is_empty());
        let (last, full) = parts.split_last().expect("one part at least");
        for part in full {
            prop_assert!(part.len() <= limit, "part of {} bytes over {}: {:?}", part.len(), limit, part);
            prop_assert_eq!(&close_open_fence(part), part, "a part leaves a fence open");
        }
        // The last part leaves a fence open only when the text itself does.
        prop_assert!(last.len() <= limit, "part of {} bytes over {}: {:?}", last.len(), limit, last);
        prop_assert_eq!(
            close_open_fence(last) == *last,
            close_open_fence(&text) == text,
            "{:?}", last
        );
        if !text.contains("```") && !text.contains("~~~") {
            prop_assert_eq!(parts.concat(), text.clone());
        }
        // A prefix of the text, cut at a character boundary.
        let mut at = cut.index(text.len() + 1);
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        let earlier = split_message(&text[..at], max);
        for (i, part) in earlier.iter().enumerate().take(earlier.len().saturating_sub(1)) {
            prop_assert_eq!(part, &parts[i], "full part {} changed as the text grew", i);
        }
    }

    /// Any file the loader is given is a config or an error that says something;
    /// never a panic.
    #[test]
    fn any_config_text_loads_or_is_explained(text in prop_oneof![any::<String>(), toml_like()]) {
        if let Err(e) = Config::from_toml(&text, &BTreeMap::new()) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    /// The example config with lines dropped, repeated or swapped, and values
    /// replaced: loads or is explained, naming a key or the TOML problem.
    #[test]
    fn a_mutated_example_config_loads_or_is_explained(
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..4, toml_value()), 1..6),
    ) {
        let example = include_str!("../../../chorus.example.toml");
        let mut lines: Vec<String> = example.lines().map(str::to_string).collect();
        for (at, op, value) in edits {
            let i = at.index(lines.len());
            match op {
                0 => { lines.remove(i); }
                1 => { let l = lines[i].clone(); lines.insert(i, l); }
                2 => {
                    if let Some((key, _)) = lines[i].split_once(" = ") {
                        lines[i] = format!("{key} = {value}");
                    }
                }
                _ => { let j = (i + 7) % lines.len(); lines.swap(i, j); }
            }
        }
        let env: BTreeMap<String, String> =
            [("OPENAI_API_KEY".to_string(), "sk-x".to_string())].into();
        if let Err(e) = Config::from_toml(&lines.join("\n"), &env) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    /// Environment overrides with any name and value load or are explained.
    #[test]
    fn any_environment_override_loads_or_is_explained(
        key in "CHORUS_[A-Z_]{1,12}(__[A-Z0-9_]{1,12}){0,3}",
        value in prop_oneof![any::<String>(), toml_value()],
    ) {
        let env: BTreeMap<String, String> = [(key, value)].into();
        if let Err(e) = Config::from_toml("", &env) {
            prop_assert!(!e.to_string().is_empty());
        }
    }
}

/// Text shaped like TOML: sections, keys, values of every type.
fn toml_like() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        "\\[[a-z_.]{1,12}\\]",
        "\\[\\[[a-z_.]{1,12}\\]\\]",
        ("[a-z_]{1,16}", toml_value()).prop_map(|(k, v)| format!("{k} = {v}")),
        Just("[server]\nlisten = \"127.0.0.1:0\"".to_string()),
        Just("[quota]\nenabled = false".to_string()),
        Just("[[providers]]\nid = \"x\"\nkind = \"openai\"".to_string()),
    ];
    prop::collection::vec(line, 0..12).prop_map(|l| l.join("\n"))
}

/// A TOML value of any type, well-formed or not.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| format!("{n:?}")),
        any::<bool>().prop_map(|b| b.to_string()),
        "[a-zA-Z0-9 ${}:/._-]{0,20}".prop_map(|s| format!("{s:?}")),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("\"${UNSET_VARIABLE}\"".to_string()),
        Just("nan".to_string()),
        Just("-0".to_string()),
        Just("18446744073709551616".to_string()),
        Just("\"".to_string()),
    ]
}

/// Whether a line of `text` that may open a code fence is longer than `bytes`.
fn has_fence_opener_longer_than(text: &str, bytes: usize) -> bool {
    text.split_inclusive('\n').any(|line| {
        let body = line.trim_start_matches(' ');
        line.len() - body.len() <= 3
            && (body.starts_with("```") || body.starts_with("~~~"))
            && line.len() > bytes
    })
}

/// Found by `split_parts_fit_close_their_fences_and_stay_put`: a line longer than a
/// part cut at the space before a mid-line ``` put a fence marker at the start of the
/// next part, which then rendered as a code block the reply never had.
#[test]
fn a_cut_never_starts_a_part_with_a_fence_marker_from_mid_line() {
    let text = format!("{} ```not a fence{}", "a".repeat(40), "b".repeat(40));
    let parts = split_message(&text, 64);
    assert_eq!(parts.concat(), text);
    for part in &parts[1..] {
        let body = part.trim_start_matches(' ');
        assert!(!body.starts_with("```"), "{parts:?}");
    }
    for part in &parts {
        assert_eq!(&close_open_fence(part), part, "{parts:?}");
    }
}

/// Found by `split_parts_fit_close_their_fences_and_stay_put`: the opening line of a
/// fence (its info string) longer than a part is cut where it must be, as text: every
/// part stays within the limit and the parts are the text exactly; the part that
/// holds the cut opening line renders as an empty code block. Reopening a fence whose
/// opening line does not fit a part is impossible, so this is the behaviour kept.
#[test]
fn an_opening_fence_line_longer_than_a_part_is_cut_as_text() {
    let text = format!("intro\n```{}\nfn main() {{}}\n```\n", "x".repeat(150));
    let parts = split_message(&text, 64);
    assert!(parts.len() > 2, "{parts:?}");
    assert!(parts.iter().all(|p| p.len() <= 64), "{parts:?}");
    assert_eq!(parts.concat(), text);
}

/// Found by `split_parts_fit_close_their_fences_and_stay_put`: a reply that is only an
/// opening fence stays one part that leaves it open, as the reply does (the property
/// had wrongly required every part to close its fences).
#[test]
fn a_lone_opening_fence_is_one_part_left_open() {
    assert_eq!(split_message("```", 0), vec!["```".to_string()]);
    assert_eq!(close_open_fence("```"), "```\n```");
}

/// Found by `split_parts_fit_close_their_fences_and_stay_put`: a long line cut just
/// before ``` (not yet written when the reply was shorter) moved its cut a character
/// back once the marker arrived, so a part already posted changed. A cut now depends
/// only on the text up to the end of its part's room, for every prefix alike.
#[test]
fn a_cut_before_a_fence_marker_stays_put_as_the_text_grows() {
    let text = "a```rust\n\u{200b}\u{feff}\r     é✓日本語🎉a0a  ```  a aA 0a0®ͺ A𐩠𐾰𚿵a𐿠ਏΣଅaA0aa\u{200b}\u{feff}\rA0a     ~~~\n~~~\n ~~~\n~~~\n  \u{200b}\u{feff}\rA~~~\nA~~~\n~~~\n!chorus~~~\n0A0AaAAA00aA ```rust\n";
    let parts = split_message(text, 96);
    for at in (0..=text.len()).filter(|&at| text.is_char_boundary(at)) {
        let earlier = split_message(&text[..at], 96);
        for (i, part) in earlier
            .iter()
            .enumerate()
            .take(earlier.len().saturating_sub(1))
        {
            assert_eq!(part, &parts[i], "part {i} changed at {at} bytes");
        }
    }
}
