//! Telemetry end to end: `/metrics` scraped while replies run on two surfaces (the web
//! API and the OpenAI-compatible gateway), one of them falling back from a provider
//! nobody listens for and calling a real MCP server's tool, every value read by name
//! and labels from the Prometheus text format; the spans of one such reply received by
//! a local OTLP/HTTP receiver, parented as one trace, with the JSON log lines carrying
//! its trace id; sandbox executions (real Docker) counted and traced; a chat surface
//! (the fake Slack) with its connection state and a 429 waited out; and metrics kept
//! off the public listener unless configured.

use crate::mcp_tools::{admin_client, connected, mcp_dir, python, set_tools};
use anyhow::{Context, Result, bail, ensure};
use chorus_tests::client::delta_text;
use chorus_tests::fake_discord_bot::TOKEN as DISCORD_TOKEN;
use chorus_tests::otlp_receiver::{OtlpReceiver, ReceivedSpan};
use chorus_tests::prometheus::Metrics;
use chorus_tests::server::free_port;
use chorus_tests::services::TestRedis;
use chorus_tests::{Resume, ServerConfig, TestServer, logged_in_client, script, unique_name, wait};
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// What the scripted model of the tool replies says after its tool call.
fn tool_script(tail_tokens: usize) -> String {
    format!(
        "@call py__add {{\"a\": 2, \"b\": 3}}\nThe sum is {{{{tool_results}}}}. {}",
        script(tail_tokens)
    )
}

/// Prices (credits per million tokens) for a scripted provider's `demo` model.
fn priced_demo() -> toml::Value {
    let mut demo = toml::Table::new();
    demo.insert("prompt_price".into(), 1000.0.into());
    demo.insert("completion_price".into(), 2000.0.into());
    let mut info = toml::Table::new();
    info.insert("demo".into(), toml::Value::Table(demo));
    toml::Value::Table(info)
}

/// A server whose alias `resilient` goes from a provider nobody listens for (no
/// retries) to the scripted tool model `s/demo`, with the Python MCP server over
/// stdio, the plain scripted model `plain/demo` for the gateway, both priced, and
/// `extra` TOML.
fn config(tail_tokens: usize, tokens_per_second: f64, extra: &str) -> Result<ServerConfig> {
    let dead = format!("http://127.0.0.1:{}/v1", free_port()?);
    let toml = format!(
        "[[aliases]]\nname = \"resilient\"\nmodels = [\"dead/gpt-4o-mini\", \"s/demo\"]\n\n\
         [[mcp.servers]]\nid = \"py\"\ncommand = {:?}\nargs = [{:?}, \"stdio\"]\n\n\
         [quota]\nenabled = true\n\n[accounts]\ndefault_balance = 100.0\n\n{extra}",
        python()?,
        mcp_dir().join("py_server.py").display().to_string(),
    );
    Ok(ServerConfig::new()
        .openai("dead", &dead, "sk-dead", &["gpt-4o-mini"])
        .provider_setting("dead", "max_retries", 0)
        .scripted("s", &tool_script(tail_tokens), tokens_per_second)
        .provider_setting("s", "model_info", priced_demo())
        .scripted("plain", "one two three four five six seven eight", 200.0)
        .provider_setting("plain", "model_info", priced_demo())
        .raw_toml(&toml))
}

/// One gateway reply (Chat Completions, not streamed) on `plain/demo`.
async fn gateway_reply(server: &TestServer, key: &str) -> Result<Value> {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", server.url()))
        .bearer_auth(key)
        .json(&json!({
            "model": "plain/demo",
            "messages": [{"role": "user", "content": "count to eight"}],
        }))
        .timeout(WAIT)
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    ensure!(status == 200, "gateway: HTTP {status}: {body}");
    Ok(body)
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_replies_on_two_surfaces_a_fallback_and_a_tool_call() -> Result<()> {
    let redis = TestRedis::new().await?;
    let metrics_port = free_port()?;
    let discord_down = free_port()?;
    let extra = format!(
        "[telemetry]\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n\n\
         [discord]\ntoken = \"{DISCORD_TOKEN}\"\napi_url = \"http://127.0.0.1:{discord_down}\"\n\
         connect_timeout_secs = 2\n"
    );
    let server =
        TestServer::start(config(30, 20.0, &extra)?.redis_journal(redis.url(), redis.prefix()))
            .await?;
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let admin = admin_client(&server).await?;
    connected(&admin, &["py"]).await?;

    // The web surface: the alias falls back from `dead`, the model calls the tool,
    // then streams its answer slowly enough to be scraped mid-stream.
    let user = logged_in_client(&server, &unique_name("metrics")).await?;
    let conversation = user.create_conversation(Some("resilient")).await?;
    set_tools(&user, &conversation, json!(["py"])).await?;
    let sent = user.send_message(&conversation, "add 2 and 3").await?;
    let mut stream = user.events(&sent.run_id, Resume::Start).await?;
    let mut events = Vec::new();
    loop {
        match stream.next().await? {
            Some(e) if e.kind == "delta" => {
                events.push(e);
                break;
            }
            Some(e) => events.push(e),
            None => bail!("the run ended before its first delta: {events:?}"),
        }
    }
    let mid = Metrics::scrape(&metrics_url, None).await?;
    ensure!(
        mid.sum("chorus_replies_streaming", &[("surface", "web")]) == 1.0,
        "one web reply streams: {}",
        mid.describe("chorus_replies_streaming")
    );
    ensure!(
        mid.sum("chorus_sse_readers", &[("surface", "web")]) == 1.0,
        "one web event stream is open: {}",
        mid.describe("chorus_sse_readers")
    );
    events.extend(stream.to_finished().await?);
    drop(stream);
    ensure!(
        events.iter().any(|e| e.kind == "fallback")
            && events.iter().any(|e| e.kind == "tool_result"),
        "the reply fell back and called the tool: {events:?}"
    );
    ensure!(delta_text(&events).contains("The sum is"), "{events:?}");

    // The gateway surface: one reply on another model.
    server.create_user("gw", chorus_tests::PASSWORD).await?;
    let key = server.create_api_key("gw").await?;
    let completion = gateway_reply(&server, &key).await?;
    ensure!(
        completion["choices"][0]["message"]["content"] == "one two three four five six seven eight",
        "{completion}"
    );

    // Both runs have ended (the gateway answered; the web stream saw `finished`), but
    // a run's task leaves the streaming gauge just after its final write.
    let m = wait::until(
        "both replies to leave the streaming gauge",
        WAIT,
        || async {
            let m = Metrics::scrape(&metrics_url, None).await?;
            let streaming = m.sum("chorus_replies_streaming", &[]);
            let readers = m.sum("chorus_sse_readers", &[]);
            Ok((streaming == 0.0 && readers == 0.0).then_some(m))
        },
    )
    .await?;

    let web = [("surface", "web")];
    let gateway = [("surface", "gateway")];
    let expect = |name: &str, labels: &[(&str, &str)], want: f64| -> Result<()> {
        let got = m.sum(name, labels);
        ensure!(
            got == want,
            "{name}{labels:?} is {got}, expected {want}; samples:\n{}",
            m.describe(name)
        );
        Ok(())
    };
    // Started with the first model of the chain, ended with the one that answered.
    expect(
        "chorus_replies_started_total",
        &[
            ("surface", "web"),
            ("provider", "dead"),
            ("model", "dead/gpt-4o-mini"),
        ],
        1.0,
    )?;
    expect(
        "chorus_replies_ended_total",
        &[
            ("surface", "web"),
            ("provider", "s"),
            ("model", "s/demo"),
            ("status", "complete"),
        ],
        1.0,
    )?;
    expect(
        "chorus_replies_started_total",
        &[
            ("surface", "gateway"),
            ("provider", "plain"),
            ("model", "plain/demo"),
        ],
        1.0,
    )?;
    expect(
        "chorus_replies_ended_total",
        &[
            ("surface", "gateway"),
            ("provider", "plain"),
            ("status", "complete"),
        ],
        1.0,
    )?;
    expect("chorus_replies_ended_total", &[], 2.0)?;
    for status in ["stopped", "interrupted", "failed"] {
        expect("chorus_replies_ended_total", &[("status", status)], 0.0)?;
    }
    // Each generation walks the chain from its start: the one before the tool call
    // and the one after it both failed on `dead` and fell back.
    expect(
        "chorus_provider_errors_total",
        &[("provider", "dead"), ("kind", "connect")],
        2.0,
    )?;
    expect(
        "chorus_provider_fallbacks_total",
        &[("from", "dead/gpt-4o-mini"), ("to", "s/demo")],
        2.0,
    )?;
    expect("chorus_provider_retries_total", &[], 0.0)?;
    expect(
        "chorus_tool_calls_total",
        &[("source", "py"), ("result", "ok")],
        1.0,
    )?;
    expect("chorus_tool_calls_total", &[], 1.0)?;
    ensure!(m.count("chorus_tool_call_seconds", &[("source", "py")]) == 1.0);
    for surface in [&web[..], &gateway[..]] {
        ensure!(
            m.sum("chorus_tokens_in_total", surface) > 0.0
                && m.sum("chorus_tokens_out_total", surface) > 0.0
                && m.sum("chorus_credits_charged_micros_total", surface) > 0.0,
            "{surface:?}: tokens and credits counted:\n{}\n{}\n{}",
            m.describe("chorus_tokens_in_total"),
            m.describe("chorus_tokens_out_total"),
            m.describe("chorus_credits_charged_micros_total")
        );
        ensure!(
            m.count("chorus_reply_first_token_seconds", surface) == 1.0,
            "{surface:?}: one first token: {}",
            m.describe("chorus_reply_first_token_seconds")
        );
    }
    // The gateway's 8 tokens are counted as billed: its prompt estimate plus 8.
    expect(
        "chorus_tokens_out_total",
        &[("surface", "gateway"), ("model", "plain/demo")],
        8.0,
    )?;
    ensure!(
        m.count(
            "chorus_reply_first_token_seconds",
            &[("provider", "s"), ("model", "s/demo")]
        ) == 1.0
    );
    ensure!(m.count("chorus_reply_event_interval_seconds", &web) >= 30.0);
    // Every event of both replies was appended by its writer, and the web reader got
    // the live ones through the Redis journal's fan-out.
    ensure!(
        m.count("chorus_journal_append_seconds", &[]) >= events.len() as f64,
        "{} appends for {} web events",
        m.count("chorus_journal_append_seconds", &[]),
        events.len()
    );
    ensure!(m.count("chorus_journal_fanout_seconds", &[]) >= 30.0);
    // The Discord surface cannot reach its API: down, not starting or connected.
    let discord = wait::until("the Discord surface to be down", WAIT, || async {
        let m = Metrics::scrape(&metrics_url, None).await?;
        Ok((m.sum(
            "chorus_surface_state",
            &[("surface", "discord"), ("state", "down")],
        ) == 1.0)
            .then_some(m))
    })
    .await?;
    for state in ["starting", "connected"] {
        ensure!(
            discord.sum(
                "chorus_surface_state",
                &[("surface", "discord"), ("state", state)]
            ) == 0.0,
            "{}",
            discord.describe("chorus_surface_state")
        );
    }
    // Sampled at each scrape: the pool, a database round trip, a Redis PING.
    ensure!(
        m.has("chorus_db_pool_connections") && m.sum("chorus_db_pool_max_connections", &[]) > 0.0,
        "{}",
        m.describe("chorus_db_pool_connections")
    );
    ensure!(m.count("chorus_db_round_trip_seconds", &[]) >= 2.0);
    ensure!(m.count("chorus_redis_round_trip_seconds", &[]) >= 2.0);
    // Label sets are bounded: no run, conversation or account id anywhere.
    let text = reqwest::get(&metrics_url).await?.text().await?;
    for id in [&sent.run_id, &conversation] {
        ensure!(!text.contains(id.as_str()), "{id} appears in the metrics");
    }
    Ok(())
}

/// The spans of the trace the run `run_id` belongs to, once its run span (the last to
/// end) has arrived.
async fn trace_of(receiver: &OtlpReceiver, run_id: &str) -> Result<Vec<ReceivedSpan>> {
    wait::until("the reply's spans to be exported", WAIT, || async {
        let spans = receiver.spans();
        let Some(run) = spans
            .iter()
            .find(|s| s.name == "chorus.run" && s.attr("run_id") == Some(run_id))
        else {
            return Ok(None);
        };
        let trace = run.trace_id.clone();
        Ok(Some(
            spans.into_iter().filter(|s| s.trace_id == trace).collect(),
        ))
    })
    .await
}

fn one<'a>(spans: &'a [ReceivedSpan], name: &str) -> Result<&'a ReceivedSpan> {
    let found: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.name == name).collect();
    match found[..] {
        [span] => Ok(span),
        _ => bail!(
            "expected one {name} span, got {}: {:?}",
            found.len(),
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        ),
    }
}

fn children<'a>(
    spans: &'a [ReceivedSpan],
    parent: &ReceivedSpan,
    name: &str,
) -> Vec<&'a ReceivedSpan> {
    spans
        .iter()
        .filter(|s| s.name == name && s.parent_span_id == parent.span_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reply_is_one_trace_from_the_surface_to_the_final_write() -> Result<()> {
    let receiver = OtlpReceiver::start().await?;
    let extra = format!(
        "[telemetry]\notlp_endpoint = {:?}\nservice_name = \"chorus-e2e\"\nlog_format = \"json\"\n",
        receiver.endpoint()
    );
    let server = TestServer::start(
        config(3, 200.0, &extra)?
            // Export each batch within 100 ms instead of 5 s (the SDK's own setting).
            .env("OTEL_BSP_SCHEDULE_DELAY", "100"),
    )
    .await?;
    let admin = admin_client(&server).await?;
    connected(&admin, &["py"]).await?;
    let user = logged_in_client(&server, &unique_name("trace")).await?;
    let conversation = user.create_conversation(Some("resilient")).await?;
    set_tools(&user, &conversation, json!(["py"])).await?;
    const QUESTION: &str = "what is 2 plus 3, secret-question-7731?";
    let sent = user.send_message(&conversation, QUESTION).await?;
    let events = user.events_to_finished(&sent.run_id, Resume::Start).await?;
    let answer = delta_text(&events);
    ensure!(answer.contains("The sum is"), "{events:?}");

    let spans = trace_of(&receiver, &sent.run_id).await?;
    ensure!(spans.iter().all(|s| s.service == "chorus-e2e"));
    // The surface's request is the root; admission and the run are its children (the
    // run outlives the request, as it belongs to the server).
    let reply = one(&spans, "chorus.reply")?;
    ensure!(
        reply.parent_span_id.is_empty() && reply.attr("surface") == Some("web"),
        "{reply:?}"
    );
    let admission = one(&spans, "chorus.admission")?;
    ensure!(admission.parent_span_id == reply.span_id, "{admission:?}");
    let run = one(&spans, "chorus.run")?;
    ensure!(run.parent_span_id == reply.span_id, "{run:?}");
    for (key, value) in [
        ("chorus.status", "complete"),
        ("gen_ai.request.model", "resilient"),
        ("gen_ai.response.model", "s/demo"),
        ("chorus.fallbacks", "2"),
        ("chorus.tool_rounds", "1"),
    ] {
        ensure!(run.attr(key) == Some(value), "{key} of {run:?}");
    }
    for key in ["gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"] {
        ensure!(
            run.attr(key)
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|n| n > 0),
            "{key} of {run:?}"
        );
    }
    // Two generations (before and after the tool round); each tried `dead`, failed to
    // connect, and fell back to `s` (the log line is an event of its generation).
    let generations = children(&spans, run, "chorus.generation");
    ensure!(generations.len() == 2, "{spans:#?}");
    let (first, second) = if generations[0].attr("chorus.step") == Some("0") {
        (generations[0], generations[1])
    } else {
        (generations[1], generations[0])
    };
    for generation in [first, second] {
        let attempts = children(&spans, generation, "chorus.provider.attempt");
        ensure!(attempts.len() == 2, "{attempts:#?}");
        let dead = attempts
            .iter()
            .find(|a| a.attr("gen_ai.system") == Some("dead"))
            .context("no attempt on the dead provider")?;
        ensure!(
            dead.attr("chorus.outcome") == Some("error")
                && dead.attr("error.type") == Some("connect"),
            "{dead:?}"
        );
        let live = attempts
            .iter()
            .find(|a| a.attr("gen_ai.system") == Some("s"))
            .context("no attempt on the fallback")?;
        ensure!(live.attr("chorus.outcome") == Some("ok"), "{live:?}");
        ensure!(
            generation.events.iter().any(|e| e.contains("falling back")),
            "the fallback is an event of its generation: {generation:?}"
        );
    }
    // The tool round and its call.
    let round = one(&spans, "chorus.tool_round")?;
    ensure!(round.parent_span_id == run.span_id, "{round:?}");
    let call = one(&spans, "chorus.tool.call")?;
    ensure!(
        call.parent_span_id == round.span_id
            && call.attr("gen_ai.tool.name") == Some("py__add")
            && call.attr("chorus.tool.source") == Some("py")
            && call.attr("chorus.tool.result") == Some("ok"),
        "{call:?}"
    );
    let finish = one(&spans, "chorus.run.finish")?;
    ensure!(finish.parent_span_id == run.span_id, "{finish:?}");
    // No message text leaves without `include_content`.
    for span in &spans {
        for value in span.attributes.values() {
            ensure!(
                !value.contains("secret-question-7731") && !value.contains("The sum is"),
                "message text in {span:?}"
            );
        }
    }
    // The JSON log lines of the run carry its trace id.
    let trace_id = run.trace_id.clone();
    let log = server.log();
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect();
    ensure!(!lines.is_empty(), "the log is JSON lines: {log}");
    ensure!(
        lines
            .iter()
            .any(|l| l["message"] == "run ended" && l["trace_id"] == trace_id.as_str()),
        "the run's end is logged with trace id {trace_id}: {log}"
    );
    ensure!(!log.contains("secret-question-7731"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_off_the_public_listener_unless_configured() -> Result<()> {
    // Defaults: no metrics anywhere.
    let plain = TestServer::start(ServerConfig::new().scripted("s", "hi", 200.0)).await?;
    let public = plain.client().get("/metrics").await?;
    ensure!(
        public.status() == 404,
        "default: GET /metrics is {}",
        public.status()
    );
    drop(plain);

    // Their own listener: served there, still not on the public one.
    let port = free_port()?;
    let own = TestServer::start(
        ServerConfig::new()
            .scripted("s", "hi", 200.0)
            .raw_toml(&format!(
                "[telemetry]\nmetrics_listen = \"127.0.0.1:{port}\"\n"
            )),
    )
    .await?;
    ensure!(own.client().get("/metrics").await?.status() == 404);
    let m = Metrics::scrape(&format!("http://127.0.0.1:{port}/metrics"), None).await?;
    ensure!(
        m.has("chorus_db_pool_connections"),
        "the listener serves metrics"
    );
    drop(own);

    // A path of the public listener, behind a token.
    let guarded = TestServer::start(ServerConfig::new().scripted("s", "hi", 200.0).raw_toml(
        "[telemetry]\nmetrics_path = \"/internal/metrics\"\nmetrics_token = \"scrape-me\"\n",
    ))
    .await?;
    let url = format!("{}/internal/metrics", guarded.url());
    let refused = reqwest::Client::new()
        .get(&url)
        .bearer_auth("wrong")
        .send()
        .await?;
    ensure!(
        refused.status() == 401,
        "a wrong token gets {}",
        refused.status()
    );
    ensure!(
        reqwest::get(&url).await?.status() == 401,
        "no token is refused"
    );
    let m = Metrics::scrape(&url, Some("scrape-me")).await?;
    ensure!(m.has("chorus_db_round_trip_seconds"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sandbox_executions_are_counted_and_traced() -> Result<()> {
    let receiver = OtlpReceiver::start().await?;
    let metrics_port = free_port()?;
    // Two calls at once: one that prints, one that runs past the time limit.
    let script = format!(
        "@call code_interpreter {}\n@call code_interpreter {}\nDone: {{{{tool_results}}}}",
        json!({"language": "python", "code": "print(6 * 7)"}),
        json!({"language": "python", "code": "while True:\n    pass"}),
    );
    let server = TestServer::start(
        ServerConfig::new()
            .scripted("s", &script, 200.0)
            .instance_id(&unique_name("sbmetrics"))
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .raw_toml(&format!(
                "[sandbox]\nenabled = true\ndocker_host = \"{}\"\ntimeout_secs = 2\n\n\
                 [telemetry]\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\notlp_endpoint = {:?}\n",
                crate::sandbox_tool::docker_host(),
                receiver.endpoint()
            )),
    )
    .await?;
    let user = logged_in_client(&server, &unique_name("sb")).await?;
    let conversation = user.create_conversation(Some("s/demo")).await?;
    set_tools(&user, &conversation, json!(["code_interpreter"])).await?;
    let sent = user.send_message(&conversation, "compute").await?;
    let events = user.events_to_finished(&sent.run_id, Resume::Start).await?;
    ensure!(
        events.iter().filter(|e| e.kind == "tool_result").count() == 2,
        "{events:?}"
    );

    let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");
    // The containers are removed (and the gauge back to 0) once both calls ended.
    let m = wait::until("the sandbox containers to be removed", WAIT, || async {
        let m = Metrics::scrape(&metrics_url, None).await?;
        Ok(
            (m.has("chorus_sandbox_containers") && m.sum("chorus_sandbox_containers", &[]) == 0.0)
                .then_some(m),
        )
    })
    .await?;
    for result in ["ok", "timeout"] {
        let got = m.sum(
            "chorus_sandbox_executions_total",
            &[("language", "python"), ("result", result)],
        );
        ensure!(
            got == 1.0,
            "{result}: {got}\n{}",
            m.describe("chorus_sandbox_executions_total")
        );
    }
    ensure!(
        m.count(
            "chorus_sandbox_execution_seconds",
            &[("language", "python")]
        ) == 2.0
    );
    ensure!(m.sum("chorus_tool_calls_total", &[("source", "sandbox")]) == 2.0);

    // Each execution is a span under its tool call, in the reply's trace.
    let spans = wait::until("both executions' spans", WAIT, || async {
        let spans = trace_of(&receiver, &sent.run_id).await?;
        Ok((spans
            .iter()
            .filter(|s| s.name == "chorus.sandbox.execute")
            .count()
            == 2)
            .then_some(spans))
    })
    .await?;
    let mut results = Vec::new();
    for execution in spans.iter().filter(|s| s.name == "chorus.sandbox.execute") {
        let call = spans
            .iter()
            .find(|s| s.span_id == execution.parent_span_id)
            .context("an execution without its parent")?;
        ensure!(
            call.name == "chorus.tool.call" && call.attr("chorus.tool.source") == Some("sandbox"),
            "{execution:?} under {call:?}"
        );
        results.push(
            execution
                .attr("chorus.sandbox.result")
                .unwrap_or_default()
                .to_string(),
        );
    }
    results.sort();
    ensure!(results == ["ok", "timeout"], "{results:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_surface_reports_its_state_replies_and_rate_limit_waits() -> Result<()> {
    use crate::slack_support::{ALICE, CHANNEL, ENDED, SlackOptions, SlackWorld};
    let metrics_port = free_port()?;
    let text = script(20);
    let world = SlackWorld::start_with(
        ServerConfig::new()
            .scripted("s", &text, 40.0)
            .raw_toml(&format!(
                "[telemetry]\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n"
            )),
        SlackOptions {
            native_streaming: false,
            ..SlackOptions::default()
        },
    )
    .await?;
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");
    world.slack.fail_next(
        "chat.update",
        chorus_tests::fake_slack::Fault::RateLimited {
            retry_after_secs: 1,
        },
    );
    let root = world.mention(ALICE, "hello").await?;
    world.converged(CHANNEL, Some(&root), &text, ENDED).await?;
    let m = wait::until("the Slack reply to be counted as ended", WAIT, || async {
        let m = Metrics::scrape(&metrics_url, None).await?;
        Ok((m.sum("chorus_replies_ended_total", &[("surface", "slack")]) == 1.0).then_some(m))
    })
    .await?;
    let slack = [("surface", "slack")];
    ensure!(
        m.sum(
            "chorus_replies_started_total",
            &[("surface", "slack"), ("model", "s/demo")]
        ) == 1.0
            && m.sum(
                "chorus_replies_ended_total",
                &[("surface", "slack"), ("status", "complete")]
            ) == 1.0,
        "{}\n{}",
        m.describe("chorus_replies_started_total"),
        m.describe("chorus_replies_ended_total")
    );
    ensure!(
        m.sum(
            "chorus_surface_state",
            &[("surface", "slack"), ("state", "connected")]
        ) == 1.0
            && m.sum(
                "chorus_surface_state",
                &[("surface", "slack"), ("state", "down")]
            ) == 0.0,
        "{}",
        m.describe("chorus_surface_state")
    );
    ensure!(
        m.count("chorus_surface_rate_limit_wait_seconds", &slack) >= 1.0,
        "the 429 was waited out and counted: {}",
        m.describe("chorus_surface_rate_limit_wait_seconds")
    );
    ensure!(m.count("chorus_reply_first_token_seconds", &slack) == 1.0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn message_text_reaches_spans_only_when_the_operator_opts_in() -> Result<()> {
    let receiver = OtlpReceiver::start().await?;
    let reply = "one two three four";
    let server = TestServer::start(
        ServerConfig::new()
            .scripted("s", reply, 200.0)
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .raw_toml(&format!(
                "[telemetry]\notlp_endpoint = {:?}\ninclude_content = true\n",
                receiver.endpoint()
            )),
    )
    .await?;
    let user = logged_in_client(&server, &unique_name("content")).await?;
    let conversation = user.create_conversation(Some("s/demo")).await?;
    const QUESTION: &str = "opted-in question 4417";
    let sent = user.send_message(&conversation, QUESTION).await?;
    user.events_to_finished(&sent.run_id, Resume::Start).await?;
    let spans = trace_of(&receiver, &sent.run_id).await?;
    let run = one(&spans, "chorus.run")?;
    ensure!(
        run.attr("gen_ai.prompt") == Some(QUESTION) && run.attr("gen_ai.completion") == Some(reply),
        "{run:?}"
    );
    // Still never in a log line (text logs show span fields, but not these).
    ensure!(
        !server.log().contains("opted-in question 4417"),
        "{}",
        server.log()
    );
    Ok(())
}
