//! Slack's documented payloads (`tests/fixtures/slack/`), with the ids and text a
//! test needs filled in. Each one is checked to deserialize into slack-morphism's
//! types (the tests below), so the fake sends what the app's library reads.

use super::TEAM;
use serde_json::{Value, json};

fn load(name: &str) -> Value {
    let path = format!("{}/fixtures/slack/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn event_callback(fixture: &str, event_id: &str) -> Value {
    let mut callback = load(fixture);
    callback["team_id"] = json!(TEAM);
    callback["event_id"] = json!(event_id);
    callback
}

/// An `app_mention` of the app in `channel` by `user`, at `ts` (in the thread
/// `thread_ts`, if any).
pub fn app_mention(
    event_id: &str,
    channel: &str,
    user: &str,
    ts: &str,
    thread_ts: Option<&str>,
    text: &str,
) -> Value {
    let mut callback = event_callback("event_callback_app_mention.json", event_id);
    let event = &mut callback["event"];
    event["channel"] = json!(channel);
    event["user"] = json!(user);
    event["ts"] = json!(ts);
    event["event_ts"] = json!(ts);
    event["text"] = json!(text);
    if let Some(thread) = thread_ts {
        event["thread_ts"] = json!(thread);
    }
    callback
}

/// A message in the DM `channel` from `user` (in the thread `thread_ts`, if any).
pub fn message_im(
    event_id: &str,
    channel: &str,
    user: &str,
    ts: &str,
    thread_ts: Option<&str>,
    text: &str,
) -> Value {
    let mut callback = event_callback("event_callback_message_im.json", event_id);
    let event = &mut callback["event"];
    event["channel"] = json!(channel);
    event["user"] = json!(user);
    event["ts"] = json!(ts);
    event["event_ts"] = json!(ts);
    event["text"] = json!(text);
    if let Some(thread) = thread_ts {
        event["thread_ts"] = json!(thread);
    }
    callback
}

/// `assistant_thread_started`: `user` opened the app's split view, thread
/// `thread_ts` of the DM `channel`.
pub fn assistant_thread_started(
    event_id: &str,
    channel: &str,
    user: &str,
    thread_ts: &str,
) -> Value {
    let mut callback = event_callback("event_callback_assistant_thread_started.json", event_id);
    let thread = &mut callback["event"]["assistant_thread"];
    thread["channel_id"] = json!(channel);
    thread["user_id"] = json!(user);
    thread["thread_ts"] = json!(thread_ts);
    callback
}

/// `user` pressed the button `action_id` on the message `message_ts` of `channel`.
pub fn block_actions(user: &str, channel: &str, message_ts: &str, action_id: &str) -> Value {
    let mut payload = load("block_actions.json");
    payload["team"]["id"] = json!(TEAM);
    payload["user"]["id"] = json!(user);
    payload["user"]["team_id"] = json!(TEAM);
    payload["container"]["message_ts"] = json!(message_ts);
    payload["container"]["channel_id"] = json!(channel);
    payload["channel"]["id"] = json!(channel);
    payload["actions"][0]["action_id"] = json!(action_id);
    payload
}

/// `/chorus TEXT` typed by `user` in `channel`: the fields of the command, as a
/// JSON object (Socket Mode's payload; the Events API posts them as a form).
pub fn slash_command(user: &str, channel: &str, text: &str) -> Value {
    let mut payload = load("slash_command.json");
    payload["team_id"] = json!(TEAM);
    payload["user_id"] = json!(user);
    payload["channel_id"] = json!(channel);
    payload["command"] = json!("/chorus");
    payload["text"] = json!(text);
    payload
}

/// The Events API's `url_verification` with `challenge`.
pub fn url_verification(challenge: &str) -> Value {
    let mut payload = load("url_verification.json");
    payload["challenge"] = json!(challenge);
    payload
}

pub fn socket_hello() -> Value {
    load("socket_hello.json")
}

pub fn socket_disconnect() -> Value {
    load("socket_disconnect.json")
}

pub fn socket_envelope() -> Value {
    load("socket_envelope.json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use slack_morphism::prelude::*;

    fn parses<T: serde::de::DeserializeOwned>(what: &str, value: Value) -> T {
        serde_json::from_value(value).unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    #[test]
    fn event_callbacks_are_what_slack_morphism_reads() {
        for fixture in [
            "event_callback_app_mention.json",
            "event_callback_message_im.json",
            "event_callback_assistant_thread_started.json",
        ] {
            let event: SlackPushEvent = parses(fixture, load(fixture));
            let SlackPushEvent::EventCallback(callback) = event else {
                panic!("{fixture} is not an event_callback");
            };
            assert!(
                !matches!(callback.event, SlackEventCallbackBody::Unknown(_)),
                "{fixture}: slack-morphism does not know the event: {:?}",
                callback.event
            );
        }
        let mention: SlackPushEventCallback = parses(
            "app_mention",
            app_mention("Ev1", "C1", "U1", "1.000001", Some("1.000000"), "<@U0> hi"),
        );
        let SlackEventCallbackBody::AppMention(m) = mention.event else {
            panic!("not an app_mention");
        };
        assert_eq!(
            m.origin.thread_ts.map(|t| t.to_string()).as_deref(),
            Some("1.000000")
        );
        let im: SlackPushEventCallback = parses(
            "message_im",
            message_im("Ev2", "D1", "U1", "1.000002", None, "hi"),
        );
        assert!(matches!(im.event, SlackEventCallbackBody::Message(_)));
        let started: SlackPushEventCallback = parses(
            "assistant_thread_started",
            assistant_thread_started("Ev3", "D1", "U1", "1.000003"),
        );
        assert!(matches!(
            started.event,
            SlackEventCallbackBody::AssistantThreadStarted(_)
        ));
        let verification: SlackPushEvent = parses("url_verification", url_verification("c"));
        assert!(matches!(verification, SlackPushEvent::UrlVerification(_)));
    }

    #[test]
    fn interactions_and_commands_are_what_slack_morphism_reads() {
        let doc: SlackInteractionEvent = parses("block_actions.json", load("block_actions.json"));
        assert!(matches!(doc, SlackInteractionEvent::BlockActions(_)));
        let pressed: SlackInteractionEvent = parses(
            "block_actions",
            block_actions("U1", "C1", "1.000001", "chorus:stop"),
        );
        let SlackInteractionEvent::BlockActions(pressed) = pressed else {
            panic!("not block_actions");
        };
        assert_eq!(
            pressed.actions.unwrap()[0].action_id.to_string(),
            "chorus:stop"
        );
        let _: SlackCommandEvent = parses("slash_command.json", load("slash_command.json"));
        let command: SlackCommandEvent = parses("slash_command", slash_command("U1", "C1", "link"));
        assert_eq!(command.text.as_deref(), Some("link"));
    }

    /// slack-morphism keeps its Socket Mode frame types private: the app's start
    /// waiting for `hello`, and every e2e test's acked envelope, show it reads these
    /// frames. Here: their shape, and that each envelope's payload is one of its
    /// public types.
    #[test]
    fn socket_mode_frames_carry_what_slack_morphism_reads() {
        let hello = socket_hello();
        assert_eq!(hello["type"], "hello");
        assert!(
            hello["connection_info"]["app_id"].is_string()
                && hello["debug_info"]["host"].is_string()
        );
        let bye = socket_disconnect();
        assert_eq!(bye["type"], "disconnect");
        assert!(bye["reason"].is_string() && bye["debug_info"]["host"].is_string());
        let envelope = socket_envelope();
        assert!(
            envelope["envelope_id"].is_string()
                && envelope["accepts_response_payload"].is_boolean(),
            "{envelope}"
        );
        let _: SlackPushEventCallback = parses(
            "events_api payload",
            app_mention("Ev1", "C1", "U1", "1.000001", None, "hi"),
        );
        let _: SlackInteractionEvent = parses(
            "interactive payload",
            block_actions("U1", "C1", "1.000001", "chorus:stop"),
        );
        let _: SlackCommandEvent =
            parses("slash_commands payload", slash_command("U1", "C1", "help"));
    }
}
