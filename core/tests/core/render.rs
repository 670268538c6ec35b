//! The chat commands and the progressive renderer through `Core`, on the scripted
//! model. The platform side is core's recording message board (`chat::testing`: what
//! a chat platform keeps — messages, their edits and when they came), standing in for
//! the surface only; the Matrix e2e tests run the same code against a real homeserver.

use chorus_core::Core;
use chorus_core::chat::testing::{RecordingBoard, private_channel};
use chorus_core::chat::{ChatContext, ChatOutcome, Command, MessageSink, SinkFactory, SinkLimits};
use chorus_core::config::Config;
use chorus_store::Identity;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PREFIX: &str = "!chorus";

fn config(dir: &std::path::Path, text: &str, tokens_per_second: f64) -> Config {
    let toml = format!(
        "data_dir = {:?}\n[engine]\ndefault_model = \"scripted/demo\"\ncheckpoint_interval_ms = 100\n\
         [[providers]]\nid = \"scripted\"\nkind = \"scripted\"\nmodels = [\"demo\"]\ntext = {:?}\ntokens_per_second = {tokens_per_second}\n",
        dir.display().to_string(),
        text
    );
    Config::from_toml(&toml, &BTreeMap::new()).unwrap()
}

fn ctx(user: &str, channel: &str) -> ChatContext {
    ChatContext {
        surface: "test".into(),
        channel_key: channel.into(),
        identity: Identity::new("test", user),
        display_name: None,
    }
}

fn factory(
    board: &RecordingBoard,
    max_bytes: usize,
    interval_ms: u64,
    cap: u32,
) -> Arc<dyn SinkFactory> {
    board.factory(SinkLimits {
        max_bytes,
        min_edit_interval: Duration::from_millis(interval_ms),
        max_edits_per_message: cap,
    })
}

fn texts(board: &RecordingBoard) -> Vec<String> {
    board.texts()
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn script(lines: usize) -> String {
    let mut s = String::from("Here is the plan:\n\n```rust\n");
    for i in 0..lines {
        s.push_str(&format!("let step_{i} = \"ünïcödé {i}\";\n"));
    }
    s.push_str("```\n\nThat is all.");
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_reply_is_split_edited_gently_and_finished() {
    let dir = tempfile::tempdir().unwrap();
    let text = script(60);
    let core = Core::start(config(dir.path(), &text, 400.0)).await.unwrap();
    core.start_background();
    let board = RecordingBoard::rate_limited(vec![3], Duration::from_millis(400));
    let hub = core.render_hub("test", PREFIX, factory(&board, 400, 150, 5));
    let outcome = core
        .chat_text(&ctx("@a:x", "room|t1"), "plan it", PREFIX)
        .await;
    let ChatOutcome::Render { run_id, .. } = outcome else {
        panic!("expected a render, got {outcome:?}")
    };
    hub.render("room|t1", run_id);
    wait_for("the final text", || {
        let parts = texts(&board);
        parts.last().is_some_and(|p| p.ends_with("That is all."))
    })
    .await;
    hub.shutdown().await;
    core.shutdown().await;
    let b = board.lock();
    assert!(b.messages.len() > 3, "{} parts", b.messages.len());
    let mut joined = String::new();
    for (i, m) in b.messages.iter().enumerate() {
        let (part, edits) = (&m.text, &m.edits);
        assert!(part.len() <= 400);
        assert_eq!(
            part.matches("```").count() % 2,
            0,
            "unbalanced part {part:?}"
        );
        assert!(edits.len() <= 5, "part {i} edited {} times", edits.len());
        for pair in edits.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_millis(140) || i + 1 < b.messages.len());
        }
        let mut p = part.as_str();
        if i > 0 {
            p = p.strip_prefix("```rust\n").unwrap_or(p);
        }
        if i + 1 < b.messages.len() {
            p = p.strip_suffix("```\n").unwrap_or(p);
        }
        joined.push_str(p);
    }
    assert_eq!(joined, text);
    // After the rate-limited third call, nothing was sent for the 400 ms asked.
    let limited_at = b.calls[2];
    assert!(b.calls[3] - limited_at >= Duration::from_millis(390));
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_stop_continue_and_resume_across_bindings() {
    let dir = tempfile::tempdir().unwrap();
    let text = "one two three four five six seven eight nine ten ".repeat(8);
    let core = Core::start(config(dir.path(), &text, 40.0)).await.unwrap();
    core.start_background();
    let board = RecordingBoard::new();
    let hub = core.render_hub("test", PREFIX, factory(&board, 4000, 100, 30));
    let alice = ctx("@alice:x", "room|t1");

    let bad = core.chat_text(&alice, "!chorus stop now", PREFIX).await;
    assert!(
        matches!(&bad, ChatOutcome::Reply(t) if t.contains("takes no argument") && t.contains("Usage")),
        "{bad:?}"
    );
    let ChatOutcome::Render { run_id, .. } = core.chat_text(&alice, "count", PREFIX).await else {
        panic!("no render")
    };
    hub.render("room|t1", run_id);
    wait_for("some text", || {
        texts(&board).first().is_some_and(|t| t.len() > 20)
    })
    .await;
    let busy = core.chat_text(&alice, "another", PREFIX).await;
    assert!(
        matches!(&busy, ChatOutcome::Reply(t) if t.contains("still being written")),
        "{busy:?}"
    );
    // Someone else in the same thread cannot drive alice's conversation.
    let bob = ctx("@bob:x", "room|t1");
    let refused = core.chat_text(&bob, "!chorus stop", PREFIX).await;
    assert!(
        matches!(&refused, ChatOutcome::Reply(t) if t.contains("another person")),
        "{refused:?}"
    );

    assert_eq!(
        core.chat_text(&alice, "!chorus stop", PREFIX).await,
        ChatOutcome::Nothing
    );
    wait_for("the stopped note", || texts(&board)[0].contains("Stopped")).await;
    let stopped = texts(&board)[0].clone();
    assert!(stopped.contains("`!chorus continue`"), "{stopped}");
    // The sink is told the reply ended, continuable (its buttons change).
    wait_for("the stopped reply's end for the controls", || {
        board
            .lock()
            .ended
            .contains(&(vec!["$m0".to_string()], true))
    })
    .await;

    // Elsewhere (another thread, as on another surface), resume lists and binds it.
    let elsewhere = ctx("@alice:x", "room|t2");
    let ChatOutcome::Reply(list) = core.chat_text(&elsewhere, "!chorus resume", PREFIX).await
    else {
        panic!("no list")
    };
    assert!(list.contains("1. count — **reply stopped**"), "{list}");
    let resumed = core.chat_text(&elsewhere, "!chorus resume 1", PREFIX).await;
    let ChatOutcome::Render { run_id, notice } = resumed else {
        panic!("no render: {resumed:?}")
    };
    assert!(notice.unwrap().contains("Resuming “count”"));
    hub.render("room|t2", run_id);
    wait_for("the stopped reply shown again", || {
        texts(&board).len() == 2 && texts(&board)[1].contains("Stopped")
    })
    .await;
    let ChatOutcome::Render { run_id, .. } =
        core.chat_text(&elsewhere, "!chorus continue", PREFIX).await
    else {
        panic!("no continuation")
    };
    hub.render("room|t2", run_id);
    wait_for("the finished reply", || {
        texts(&board).get(1).is_some_and(|t| t == &text)
    })
    .await;
    assert_eq!(texts(&board).len(), 2, "continued in the same message");
    // (The redisplay of the stopped reply announced its own end, continuable, first;
    // under load that call may land after this one, so the order is not checked.)
    wait_for("the finished reply's end for the controls", || {
        board
            .lock()
            .ended
            .contains(&(vec!["$m1".to_string()], false))
    })
    .await;
    // Regenerate answers the same question again, as a new message beside the old.
    let again = core
        .chat_text(&elsewhere, "!chorus regenerate", PREFIX)
        .await;
    let ChatOutcome::Render { run_id, .. } = again else {
        panic!("no regeneration: {again:?}")
    };
    hub.render("room|t2", run_id.clone());
    wait_for("the regenerated reply", || {
        texts(&board).get(2).is_some_and(|t| t == &text)
    })
    .await;
    assert_eq!(texts(&board)[1], text, "the first answer stays as it was");
    let view = core
        .conversation(
            &core
                .account_for_identity(&alice.identity)
                .await
                .unwrap()
                .unwrap(),
            &core
                .owned_run(
                    &core
                        .account_for_identity(&alice.identity)
                        .await
                        .unwrap()
                        .unwrap(),
                    &run_id,
                )
                .await
                .unwrap()
                .conversation_id,
        )
        .await
        .unwrap();
    let questions: Vec<_> = view.messages.iter().filter(|m| m.role == "user").collect();
    assert_eq!(questions.len(), 2);
    assert_eq!(questions[0].content, questions[1].content);
    assert_eq!(
        questions[0].parent_id, questions[1].parent_id,
        "a sibling branch"
    );
    let wrong = core.chat_text(&elsewhere, "!chorus resume 9", PREFIX).await;
    assert!(
        matches!(&wrong, ChatOutcome::Reply(t) if t.contains("no conversation number 9")),
        "{wrong:?}"
    );
    let model = core
        .chat_text(&elsewhere, "!chorus model nope/none", PREFIX)
        .await;
    assert!(
        matches!(&model, ChatOutcome::Reply(t) if t.contains("nope")),
        "{model:?}"
    );
    hub.shutdown().await;
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn link_codes_and_balances_reach_their_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let core = Core::start(config(dir.path(), "Fine.", 200.0))
        .await
        .unwrap();
    let board = RecordingBoard::new();
    let hub = core.render_hub("test", PREFIX, factory(&board, 4000, 50, 30));
    let alice = ctx("@alice:x", "room|t1");
    let private = private_channel(&alice.identity);
    let code_of = |text: &str| {
        text.split_whitespace()
            .find(|w| w.trim_end_matches('.').len() == 9 && w.as_bytes()[4] == b'-')
            .map(|w| w.trim_end_matches('.').to_string())
    };

    // In a shared room: a notice there, the code and the balance in private only.
    for (command, notice) in [("!chorus link", "link code"), ("!chorus usage", "usage")] {
        let outcome = core.chat_text(&alice, command, PREFIX).await;
        assert!(
            matches!(&outcome, ChatOutcome::Private { to, .. } if to == &alice.identity),
            "{outcome:?}"
        );
        hub.deliver("room|t1", outcome).await;
        let b = board.lock();
        let last = b.messages.len() - 2;
        let (sent, shown) = (&b.messages[last], &b.messages[last + 1]);
        assert_eq!(sent.channel, private, "{sent:?}");
        assert_eq!(shown.channel, "room|t1", "{shown:?}");
        assert!(
            shown.text.contains("privately") && shown.text.contains(notice),
            "{shown:?}"
        );
    }
    {
        let b = board.lock();
        let code = code_of(&b.messages[0].text).expect("a code sent privately");
        assert!(
            b.messages[2].text.starts_with("Balance:"),
            "{:?}",
            b.messages[2]
        );
        assert!(
            b.messages
                .iter()
                .filter(|m| m.channel == "room|t1")
                .all(|m| !m.text.contains(&code) && !m.text.contains("Balance")),
            "{:?}",
            b.messages
        );
    }

    // A private channel cannot be opened: the room is told so, and sees no code.
    board.lock().no_private = true;
    let n = board.texts().len();
    let outcome = core.chat_text(&alice, "!chorus link", PREFIX).await;
    hub.deliver("room|t1", outcome).await;
    {
        let b = board.lock();
        assert_eq!(b.messages.len(), n + 1, "{:?}", b.messages);
        assert_eq!(b.messages[n].channel, "room|t1");
        assert!(
            b.messages[n].text.contains("could not send"),
            "{:?}",
            b.messages[n]
        );
        assert_eq!(code_of(&b.messages[n].text), None);
    }

    // In a direct chat, the code is the reply itself.
    board.lock().private_channels.push("dm|t1".into());
    let direct = ctx("@alice:x", "dm|t1");
    let outcome = core.chat_text(&direct, "!chorus link", PREFIX).await;
    hub.deliver("dm|t1", outcome).await;
    {
        let b = board.lock();
        let last = b.messages.last().unwrap();
        assert_eq!(last.channel, "dm|t1");
        assert!(code_of(&last.text).is_some(), "{last:?}");
        assert_eq!(b.messages.len(), n + 2);
    }
    hub.shutdown().await;
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nobody_rebinds_another_persons_thread() {
    let dir = tempfile::tempdir().unwrap();
    let core = Core::start(config(dir.path(), "Fine.", 200.0))
        .await
        .unwrap();
    let alice = ctx("@alice:x", "room|t1");
    let started = core.chat_text(&alice, "!chorus new Mine", PREFIX).await;
    assert!(
        matches!(&started, ChatOutcome::Reply(t) if t.contains("“Mine”")),
        "{started:?}"
    );
    let alice_account = core
        .account_for_identity(&alice.identity)
        .await
        .unwrap()
        .unwrap();
    let mine = core.list_conversations(&alice_account).await.unwrap();
    assert_eq!(mine.len(), 1);

    // Bob has a conversation of his own elsewhere, and tries to take alice's thread.
    let bob_home = ctx("@bob:x", "room|t9");
    core.chat_text(&bob_home, "!chorus new Bob's", PREFIX).await;
    let bob = ctx("@bob:x", "room|t1");
    for attempt in ["!chorus new Taken", "!chorus resume 1"] {
        let refused = core.chat_text(&bob, attempt, PREFIX).await;
        assert!(
            matches!(&refused, ChatOutcome::Reply(t) if t.contains("another person's conversation")),
            "{attempt}: {refused:?}"
        );
    }
    let bob_account = core
        .account_for_identity(&bob.identity)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        core.list_conversations(&bob_account).await.unwrap().len(),
        1,
        "a refused `new` makes no conversation"
    );

    // The thread still speaks in alice's conversation.
    let asked = core.chat_text(&alice, "hello", PREFIX).await;
    let ChatOutcome::Render { run_id, .. } = asked else {
        panic!("no render: {asked:?}")
    };
    let run = core.owned_run(&alice_account, &run_id).await.unwrap();
    assert_eq!(run.conversation_id, mine[0].id);
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_process_finishes_the_same_messages() {
    let dir = tempfile::tempdir().unwrap();
    let text = "alpha beta gamma delta epsilon zeta eta theta iota kappa ".repeat(6);
    let board = RecordingBoard::new();
    let factory = factory(&board, 4000, 100, 30);
    let alice = ctx("@alice:x", "room|t1");
    {
        let core = Core::start(config(dir.path(), &text, 30.0)).await.unwrap();
        core.start_background();
        let hub = core.render_hub("test", PREFIX, factory.clone());
        let ChatOutcome::Render { run_id, .. } = core.chat_text(&alice, "greek", PREFIX).await
        else {
            panic!("no render")
        };
        hub.render("room|t1", run_id);
        wait_for("some text", || {
            texts(&board).first().is_some_and(|t| t.len() > 30)
        })
        .await;
        // A restart: renderers stop first, then the core interrupts the run.
        hub.shutdown().await;
        core.shutdown().await;
    }
    let partial = texts(&board)[0].clone();
    assert!(!partial.is_empty() && partial.len() < text.len());
    let core = Core::start(config(dir.path(), &text, 200.0)).await.unwrap();
    core.start_background();
    let hub = core.render_hub("test", PREFIX, factory);
    hub.resume_unfinished().await;
    wait_for("the finished reply", || texts(&board)[0] == text).await;
    assert_eq!(
        texts(&board).len(),
        1,
        "finished in the same message, not a new one"
    );
    hub.shutdown().await;
    core.shutdown().await;
}

/// A reply interrupted elsewhere (here: a process that died, its render not resumed
/// but brought to the binding as `resume` does) waits for Continue: only a render the
/// surface's own restart left unfinished goes on by itself.
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_reply_brought_here_waits_for_continue() {
    let dir = tempfile::tempdir().unwrap();
    let text = "alpha beta gamma delta epsilon zeta eta theta iota kappa ".repeat(6);
    let board = RecordingBoard::new();
    let factory = factory(&board, 4000, 100, 30);
    let alice = ctx("@alice:x", "room|t1");
    let run_id = {
        let core = Core::start(config(dir.path(), &text, 30.0)).await.unwrap();
        core.start_background();
        let hub = core.render_hub("test", PREFIX, factory.clone());
        let ChatOutcome::Render { run_id, .. } = core.chat_text(&alice, "greek", PREFIX).await
        else {
            panic!("no render")
        };
        hub.render("room|t1", run_id.clone());
        wait_for("some text", || {
            texts(&board).first().is_some_and(|t| t.len() > 30)
        })
        .await;
        hub.shutdown().await;
        core.shutdown().await;
        run_id
    };
    let core = Core::start(config(dir.path(), &text, 200.0)).await.unwrap();
    core.start_background();
    let hub = core.render_hub("test", PREFIX, factory);
    hub.render("room|t1", run_id);
    wait_for("the interrupted note", || {
        texts(&board)[0].contains("Interrupted")
    })
    .await;
    let shown = texts(&board)[0].clone();
    let (partial, _) = shown.rsplit_once("\n\n_").expect("a note after the text");
    assert!(
        !partial.is_empty() && partial.len() < text.len() && text.starts_with(partial),
        "{shown:?}"
    );
    let outcome = core
        .chat_command(&alice, chorus_core::chat::Command::Continue, PREFIX)
        .await;
    assert!(matches!(outcome, ChatOutcome::Render { .. }), "{outcome:?}");
    hub.deliver("room|t1", outcome).await;
    wait_for("the continued reply", || texts(&board)[0] == text).await;
    assert_eq!(texts(&board).len(), 1, "continued in the same message");
    hub.shutdown().await;
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn outcomes_are_delivered_as_replies_notices_and_renders() {
    let dir = tempfile::tempdir().unwrap();
    let text = "A short answer.";
    let core = Core::start(config(dir.path(), text, 200.0)).await.unwrap();
    core.start_background();
    let board = RecordingBoard::new();
    let hub = core.render_hub("test", PREFIX, factory(&board, 80, 50, 30));
    let alice = ctx("@alice:x", "room|t1");

    // A reply longer than the surface's limit arrives in parts.
    let help = core.chat_text(&alice, "!chorus help", PREFIX).await;
    assert!(
        matches!(&help, ChatOutcome::Reply(t) if t.len() > 80),
        "{help:?}"
    );
    hub.deliver("room|t1", help).await;
    let parts = texts(&board);
    assert!(
        parts.len() > 1 && parts.iter().all(|p| p.len() <= 80),
        "{parts:?}"
    );
    let n = parts.len();

    // A question renders.
    let asked = core.chat_text(&alice, "hello", PREFIX).await;
    assert!(
        matches!(asked, ChatOutcome::Render { notice: None, .. }),
        "{asked:?}"
    );
    hub.deliver("room|t1", asked).await;
    wait_for("the answer", || {
        texts(&board).get(n).is_some_and(|t| t == text)
    })
    .await;
    hub.deliver("room|t1", ChatOutcome::Nothing).await;
    assert_eq!(texts(&board).len(), n + 1);

    // A resumed conversation: the notice first, then the reply rendered again.
    let elsewhere = ctx("@alice:x", "room|t2");
    let _list = core.chat_text(&elsewhere, "!chorus resume", PREFIX).await;
    let resumed = core.chat_text(&elsewhere, "!chorus resume 1", PREFIX).await;
    assert!(
        matches!(
            resumed,
            ChatOutcome::Render {
                notice: Some(_),
                ..
            }
        ),
        "{resumed:?}"
    );
    hub.deliver("room|t2", resumed).await;
    wait_for("the reply shown again", || {
        texts(&board).last().is_some_and(|t| t == text) && texts(&board).len() > n + 2
    })
    .await;
    {
        let b = board.lock();
        let shown: Vec<_> = b.messages[n + 1..].iter().collect();
        assert!(shown[0].text.starts_with("Resuming"), "{shown:?}");
        assert!(shown.iter().all(|m| m.channel == "room|t2"), "{shown:?}");
    }
    hub.shutdown().await;
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_started_on_the_web_shows_in_the_bound_channel() {
    let dir = tempfile::tempdir().unwrap();
    let text = "The same answer, wherever it was asked.";
    let core = Core::start(config(dir.path(), text, 200.0)).await.unwrap();
    core.start_background();
    let board = RecordingBoard::new();
    let hub = core.render_hub("test", PREFIX, factory(&board, 4000, 50, 30));
    let alice = ctx("@alice:x", "room|t1");

    // Asked on the surface: its own delivery and the run's announcement render it once.
    let asked = core.chat_text(&alice, "hello", PREFIX).await;
    let ChatOutcome::Render { run_id, .. } = asked.clone() else {
        panic!("no render: {asked:?}")
    };
    hub.deliver("room|t1", asked).await;
    wait_for("the answer", || {
        texts(&board).first().is_some_and(|t| t == text)
    })
    .await;

    // Asked on the web in the same conversation: it shows in the bound channel.
    let account = core
        .account_for_identity(&alice.identity)
        .await
        .unwrap()
        .unwrap();
    let conversation = core
        .owned_run(&account, &run_id)
        .await
        .unwrap()
        .conversation_id;
    let sent = core
        .send_message(&account, &conversation, "and from the web?", None, None)
        .await
        .unwrap();
    wait_for("the web run's answer", || {
        texts(&board).get(1).is_some_and(|t| t == text)
    })
    .await;
    let run = core.owned_run(&account, &sent.run_id).await.unwrap();
    assert_eq!(run.text, text);
    // Announcements are shown in order, so the first one was handled before the
    // second: had it posted again, there would be a third message.
    {
        let b = board.lock();
        let channels: Vec<&str> = b.messages.iter().map(|m| m.channel.as_str()).collect();
        assert_eq!(channels, ["room|t1", "room|t1"], "each run posted once");
    }
    hub.shutdown().await;
    core.shutdown().await;
}

/// A surface with slash commands (as Discord's and Slack's factories say): its own
/// forms for core's answers, the rest as the recording factory does it.
struct SlashForms(Arc<dyn SinkFactory>);

#[async_trait::async_trait]
impl SinkFactory for SlashForms {
    fn sink(&self, channel_key: &str) -> Option<Arc<dyn MessageSink>> {
        self.0.sink(channel_key)
    }

    fn command_hint(&self, _prefix: &str, name: &str, _args: &str) -> String {
        format!("`/{name}`")
    }

    fn help(&self, _prefix: &str, topic: Option<&str>) -> String {
        format!("Slash commands ({topic:?}).")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_name_commands_in_the_surfaces_own_form() {
    let dir = tempfile::tempdir().unwrap();
    let core = Core::start(config(dir.path(), &script(60), 20.0))
        .await
        .unwrap();
    core.start_background();
    let board = RecordingBoard::new();
    let slashes = Arc::new(SlashForms(factory(&board, 4000, 50, 30)));
    let hub = core.render_hub("test", PREFIX, slashes);
    let alice = ctx("@alice:x", "room|t1");
    let reply = |outcome: ChatOutcome| match outcome {
        ChatOutcome::Reply(text) => text,
        other => panic!("not a reply: {other:?}"),
    };

    assert_eq!(
        reply(core.chat_text(&alice, "!chorus continue", &hub).await),
        "There is no reply to continue here. `/resume` lists your conversations."
    );
    assert_eq!(
        reply(core.chat_text(&alice, "!chorus help", &hub).await),
        "Slash commands (None)."
    );
    assert_eq!(
        reply(
            core.chat_command(&alice, Command::Help(Some("stop".into())), &hub)
                .await
        ),
        "Slash commands (Some(\"stop\"))."
    );
    let models = reply(core.chat_text(&alice, "!chorus model", &hub).await);
    assert!(models.ends_with("\n`/model` switches."), "{models}");

    let ChatOutcome::Render { .. } = core.chat_text(&alice, "count", &hub).await else {
        panic!("no run")
    };
    let busy = reply(core.chat_text(&alice, "and again", &hub).await);
    assert!(busy.ends_with("stop it with `/stop`."), "{busy}");
    assert_eq!(
        core.chat_command(&alice, Command::Stop, &hub).await,
        ChatOutcome::Nothing
    );
    let list = reply(core.chat_text(&alice, "!chorus resume", &hub).await);
    assert!(
        list.ends_with(
            "\n`/resume` brings one here; then `/continue` goes on with a stopped or interrupted reply."
        ),
        "{list}"
    );
    let wrong = reply(core.chat_text(&alice, "!chorus resume 9", &hub).await);
    assert!(wrong.contains("`/resume` lists them"), "{wrong}");
    // A bare prefix names the text commands.
    let wrong = reply(core.chat_text(&alice, "!chorus resume 9", PREFIX).await);
    assert!(wrong.contains("`!chorus resume` lists them"), "{wrong}");
    hub.shutdown().await;
    core.shutdown().await;
}
