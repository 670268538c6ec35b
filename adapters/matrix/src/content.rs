//! The events the sink sends: a reply in a thread and its edits, each kept under the
//! Matrix event size limit.
//!
//! Size budget: the homeserver refuses a PDU over 65 536 bytes (signatures, hashes and
//! the envelope included, roughly 1.5 KB). An edit carries the text four times: `body`
//! and HTML `formatted_body` at the top (with the `* ` fallback) and again in
//! `m.new_content`. In an encrypted room the whole plaintext event is base64'd into the
//! ciphertext (4/3 larger). So the content JSON may be at most [`MAX_CONTENT_BYTES`]:
//! (45 000 + ~300 of event envelope) × 4/3 ≈ 60 400, plus the megolm and PDU envelope,
//! stays under 64 KiB. Typical markdown grows about 4.4× in an edit (HTML adds ~15%,
//! JSON escaping some), so 8 000 bytes of markdown per message (the `max_message_bytes`
//! cap) give ~35 KB; pathological text (all `<`, `"` or control characters) can grow
//! more, and [`fit`] then drops the HTML and, as a last resort, trims the text.

use matrix_sdk::ruma::OwnedEventId;
use matrix_sdk::ruma::events::Mentions;
use matrix_sdk::ruma::events::relation::Thread;
use matrix_sdk::ruma::events::room::message::{
    Relation, ReplacementMetadata, RoomMessageEventContent,
};

/// The largest content JSON the sink sends (see the module docs for the budget).
pub const MAX_CONTENT_BYTES: usize = 45_000;

/// How a text is rendered into an event, from richest to most compact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rendering {
    /// `body` = markdown, `formatted_body` = HTML from it.
    Html,
    /// `body` only.
    Plain,
}

fn message(markdown: &str, rendering: Rendering) -> RoomMessageEventContent {
    let content = match rendering {
        Rendering::Html => RoomMessageEventContent::text_markdown(markdown),
        Rendering::Plain => RoomMessageEventContent::text_plain(markdown),
    };
    // Empty `m.mentions`: the reply and its edits never ping anyone.
    content.add_mentions(Mentions::new())
}

/// A new reply in the thread rooted at `root`. `latest` is the thread's latest event,
/// the `m.in_reply_to` fallback for clients without thread support.
pub fn post(markdown: &str, root: &OwnedEventId, latest: &OwnedEventId) -> RoomMessageEventContent {
    fit(markdown, |text, rendering| {
        let mut content = message(text, rendering);
        content.relates_to = Some(Relation::Thread(Thread::plain(
            root.clone(),
            latest.clone(),
        )));
        content
    })
}

/// A message outside any thread (the bot's direct room with a person).
pub fn top_level(markdown: &str) -> RoomMessageEventContent {
    fit(markdown, message)
}

/// An `m.replace` of `target` whose `m.new_content` is the whole new text (clients show
/// the `* text` fallback when they do not know edits).
pub fn edit(markdown: &str, target: &OwnedEventId) -> RoomMessageEventContent {
    fit(markdown, |text, rendering| {
        message(text, rendering).make_replacement(ReplacementMetadata::new(
            target.clone(),
            Some(Mentions::new()),
        ))
    })
}

/// Builds the richest event that fits [`MAX_CONTENT_BYTES`]: with HTML, else plain
/// text, else plain text cut (at a character boundary) with a `…` marker. Never
/// returns an oversized event.
fn fit(
    markdown: &str,
    build: impl Fn(&str, Rendering) -> RoomMessageEventContent,
) -> RoomMessageEventContent {
    for rendering in [Rendering::Html, Rendering::Plain] {
        let content = build(markdown, rendering);
        if size(&content) <= MAX_CONTENT_BYTES {
            return content;
        }
    }
    tracing::warn!(
        bytes = markdown.len(),
        "matrix: message too large for one event even as plain text; sending it trimmed"
    );
    // Binary search on the cut point: the longest prefix whose plain event fits.
    let (mut lo, mut hi) = (0usize, markdown.len());
    while lo < hi {
        let mid = floor_boundary(markdown, (lo + hi).div_ceil(2));
        if mid <= lo {
            break;
        }
        if size(&build(&trimmed(markdown, mid), Rendering::Plain)) <= MAX_CONTENT_BYTES {
            lo = mid;
        } else {
            hi = floor_boundary(markdown, mid - 1);
        }
    }
    build(&trimmed(markdown, lo), Rendering::Plain)
}

fn trimmed(markdown: &str, end: usize) -> String {
    format!("{}…", &markdown[..end])
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Bytes of the content as JSON, as it goes to the homeserver.
pub fn size(content: &RoomMessageEventContent) -> usize {
    serde_json::to_vec(content).map_or(usize::MAX, |v| v.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MAX_MATRIX_MESSAGE_BYTES;
    use serde_json::Value;

    fn id(s: &str) -> OwnedEventId {
        OwnedEventId::try_from(s).unwrap()
    }

    fn json(c: &RoomMessageEventContent) -> Value {
        serde_json::to_value(c).unwrap()
    }

    #[test]
    fn a_post_is_html_in_the_thread_with_reply_fallback_and_no_mentions() {
        let c = json(&post("**hi** `x`", &id("$root"), &id("$last")));
        assert_eq!(c["msgtype"], "m.text");
        assert_eq!(c["body"], "**hi** `x`");
        assert_eq!(c["format"], "org.matrix.custom.html");
        assert!(
            c["formatted_body"]
                .as_str()
                .unwrap()
                .contains("<strong>hi</strong>")
        );
        let rel = &c["m.relates_to"];
        assert_eq!(rel["rel_type"], "m.thread");
        assert_eq!(rel["event_id"], "$root");
        assert_eq!(rel["is_falling_back"], true);
        assert_eq!(rel["m.in_reply_to"]["event_id"], "$last");
        assert_eq!(c["m.mentions"], serde_json::json!({}));
    }

    #[test]
    fn an_edit_replaces_with_new_content_and_a_star_fallback() {
        let c = json(&edit("new *text*", &id("$msg")));
        assert_eq!(c["m.relates_to"]["rel_type"], "m.replace");
        assert_eq!(c["m.relates_to"]["event_id"], "$msg");
        assert_eq!(c["body"], "* new *text*");
        assert_eq!(c["m.new_content"]["body"], "new *text*");
        assert!(
            c["m.new_content"]["formatted_body"]
                .as_str()
                .unwrap()
                .contains("<em>text</em>")
        );
        assert_eq!(c["m.mentions"], serde_json::json!({}));
        assert_eq!(c["m.new_content"]["m.mentions"], serde_json::json!({}));
    }

    #[test]
    fn a_full_message_of_ordinary_markdown_fits_with_html() {
        // The largest message the renderer sends, of markdown with code, quotes and lists.
        let unit = "Some **bold** text, a [link](https://example.org/a?b=c&d=e) and `code <T>`.\n\
                    > a \"quoted\" line\n- item one\n- item two\n```rust\nfn main() { println!(\"{}\", 1 < 2); }\n```\n";
        let mut md = String::new();
        while md.len() + unit.len() <= MAX_MATRIX_MESSAGE_BYTES {
            md.push_str(unit);
        }
        let c = edit(&md, &id("$msg"));
        let v = json(&c);
        assert!(v["formatted_body"].is_string(), "HTML was dropped");
        assert_eq!(v["m.new_content"]["body"], md.as_str());
        assert!(size(&c) <= MAX_CONTENT_BYTES, "{}", size(&c));
        // Encrypted, the event (content + envelope) is base64'd: still under 64 KiB.
        assert!((size(&c) + 1_500) * 4 / 3 + 1_500 < 65_536);
    }

    #[test]
    fn pathological_text_drops_html_then_is_trimmed_but_never_oversized() {
        // Each `<` is `&lt;` in HTML: four copies outgrow the budget, plain does not.
        let angles = "<".repeat(MAX_MATRIX_MESSAGE_BYTES);
        let c = edit(&angles, &id("$msg"));
        assert!(size(&c) <= MAX_CONTENT_BYTES);
        assert_eq!(json(&c)["m.new_content"]["body"], angles.as_str());
        assert!(json(&c)["m.new_content"]["formatted_body"].is_null());

        // Control characters are six bytes each in JSON: even plain does not fit.
        let controls = "\u{1}é".repeat(MAX_MATRIX_MESSAGE_BYTES / 2);
        let c = edit(&controls, &id("$msg"));
        assert!(size(&c) <= MAX_CONTENT_BYTES, "{}", size(&c));
        let body = json(&c)["m.new_content"]["body"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(body.ends_with('…'));
        assert!(controls.starts_with(body.trim_end_matches('…')));
        assert!(
            body.len() > MAX_CONTENT_BYTES / 16,
            "trimmed too much: {}",
            body.len()
        );

        let c = post(&controls, &id("$root"), &id("$root"));
        assert!(size(&c) <= MAX_CONTENT_BYTES);
        assert_eq!(json(&c)["m.relates_to"]["rel_type"], "m.thread");
    }

    /// Cases per property: 32 unless `PROPTEST_CASES` says otherwise.
    fn fuzz_config() -> proptest::prelude::ProptestConfig {
        let mut config = proptest::prelude::ProptestConfig::default();
        if std::env::var_os("PROPTEST_CASES").is_none() {
            config.cases = 32;
        }
        config
    }

    /// Markdown made of what replies hold, pathological pieces included, sometimes
    /// repeated past the event budget.
    fn markdown() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            "[a-zA-Z0-9 ]{1,20}",
            Just("\n".to_string()),
            Just("**bold** _it_ `code`".to_string()),
            Just("```rust\nfn main() {}\n```\n".to_string()),
            Just("| a | b |\n|---|---|\n| 1 | 2 |\n".to_string()),
            Just("<script>\"&'</script>".to_string()),
            Just("\u{1}\u{7f}\u{200b}é✓🎉".to_string()),
            Just("[link](https://example.org) ![img](x)".to_string()),
            Just("> quote\n- item\n1. item\n".to_string()),
            any::<String>(),
        ];
        (prop::collection::vec(piece, 0..40), 1usize..3000).prop_map(|(pieces, times)| {
            let text = pieces.concat();
            // Now and then past the budget, as a runaway reply would be.
            if times > 2900 {
                text.repeat(times / 20)
            } else {
                text
            }
        })
    }

    proptest::proptest! {
        #![proptest_config(fuzz_config())]

        /// Every event built from any markdown fits the budget; markdown that fits
        /// plain is kept whole.
        #[test]
        fn every_event_fits_whatever_the_markdown(text in markdown()) {
            for c in [
                post(&text, &id("$root"), &id("$last")),
                edit(&text, &id("$msg")),
                top_level(&text),
            ] {
                proptest::prop_assert!(size(&c) <= MAX_CONTENT_BYTES, "{} bytes", size(&c));
                let v = json(&c);
                let body = v["m.new_content"]["body"]
                    .as_str()
                    .or(v["body"].as_str())
                    .unwrap_or_default();
                // Whole, or cut at a character boundary and marked with `…`.
                let cut = body.strip_suffix('…').is_some_and(|kept| text.starts_with(kept));
                proptest::prop_assert!(body == text || cut, "{} of {} bytes kept", body.len(), text.len());
            }
        }
    }
}
