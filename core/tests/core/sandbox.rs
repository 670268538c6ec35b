//! The code sandbox against a real Docker engine (scripts/provision/50-docker.sh starts
//! one and builds the image; `CHORUS_TEST_DOCKER_HOST` names it). Each test labels its
//! containers with its own instance id and checks that none is left afterwards.

use bollard::Docker;
use bollard::query_parameters::{ListContainersOptionsBuilder, ListVolumesOptionsBuilder};
use chorus_core::sandbox::{
    DockerSandbox, Execution, ExecutionRequest, LABEL_INSTANCE, Sandbox, SandboxConfig,
    SandboxError, WorkspaceError,
};
use chorus_model::ids::{AccountId, ConversationId};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn docker_host() -> String {
    std::env::var("CHORUS_TEST_DOCKER_HOST")
        .or_else(|_| std::env::var("DOCKER_HOST"))
        .unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

/// Small limits so the bombs go off fast.
fn small_config() -> SandboxConfig {
    SandboxConfig {
        enabled: true,
        docker_host: Some(docker_host()),
        memory_mb: 128,
        cpus: 1.0,
        pids_limit: 48,
        timeout_secs: 20,
        max_output_bytes: 16 * 1024,
        workspace_quota_mb: 4,
        ..SandboxConfig::default()
    }
}

struct Harness {
    sandbox: Arc<DockerSandbox>,
    instance: String,
    _data: tempfile::TempDir,
}

async fn harness(config: SandboxConfig) -> Harness {
    let data = tempfile::tempdir().unwrap();
    let instance = format!("test-{}", uuid::Uuid::new_v4().simple());
    let sandbox = Arc::new(DockerSandbox::new(config, data.path(), &instance));
    assert!(
        sandbox.available().await,
        "Docker is required for the sandbox tests and does not answer at {} \
         (scripts/test starts one; set CHORUS_TEST_DOCKER_HOST)",
        docker_host()
    );
    Harness {
        sandbox,
        instance,
        _data: data,
    }
}

fn request(
    account: &AccountId,
    conversation: &ConversationId,
    language: &str,
    code: &str,
) -> ExecutionRequest {
    ExecutionRequest {
        account: account.clone(),
        conversation: conversation.clone(),
        run: None,
        language: language.into(),
        code: code.into(),
    }
}

impl Harness {
    async fn run(&self, language: &str, code: &str) -> Execution {
        let req = request(
            &AccountId::generate(),
            &ConversationId::generate(),
            language,
            code,
        );
        self.sandbox
            .execute(req, CancellationToken::new())
            .await
            .expect("execution")
    }

    async fn engine(&self) -> Docker {
        Docker::connect_with_unix(&docker_host(), 30, bollard::API_DEFAULT_VERSION)
            .unwrap()
            .negotiate_version()
            .await
            .unwrap()
    }

    fn labelled(&self) -> HashMap<String, Vec<String>> {
        [(
            "label".to_string(),
            vec![format!("{LABEL_INSTANCE}={}", self.instance)],
        )]
        .into()
    }

    /// Containers carrying this test's instance label, running or not.
    async fn containers(&self) -> usize {
        let filters = self.labelled();
        self.engine()
            .await
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .unwrap()
            .len()
    }

    /// Workspace volumes carrying this test's instance label.
    async fn volumes(&self) -> usize {
        let filters = self.labelled();
        self.engine()
            .await
            .list_volumes(Some(
                ListVolumesOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            ))
            .await
            .unwrap()
            .volumes
            .unwrap_or_default()
            .len()
    }

    async fn assert_no_containers(&self) {
        assert_eq!(
            self.containers().await,
            0,
            "a sandbox container was left behind"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn python_computes_and_files_persist_per_conversation_only() {
    let h = harness(small_config()).await;
    let (alice, bob) = (AccountId::generate(), AccountId::generate());
    let conv = ConversationId::generate();
    let first = h
        .sandbox
        .execute(
            request(&alice, &conv, "python", "print(sum(range(10)) * 2)\nopen('result.txt', 'w').write('hello from run 1')\nimport os; print(os.getuid())"),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(first.exit_code, Some(0), "{first:?}");
    assert_eq!(first.stdout, "90\n1000\n", "{first:?}");
    assert_eq!(first.files.len(), 1, "{first:?}");
    assert_eq!(first.files[0].path, "result.txt");
    assert_eq!(first.files[0].size, 16);
    h.assert_no_containers().await;

    // The next execution in the same conversation reads it (and changes nothing).
    let second = h
        .sandbox
        .execute(
            request(&alice, &conv, "python3", "print(open('result.txt').read())"),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(second.stdout, "hello from run 1\n", "{second:?}");
    assert!(second.files.is_empty(), "{second:?}");

    // Another account (same conversation id) and another conversation see nothing.
    let list = "import os; print(sorted(os.listdir('.')))";
    for (account, conversation) in [(&bob, &conv), (&alice, &ConversationId::generate())] {
        let other = h
            .sandbox
            .execute(
                request(account, conversation, "python", list),
                CancellationToken::new(),
            )
            .await
            .unwrap();
        assert_eq!(other.stdout, "[]\n", "{other:?}");
    }

    // The download API reads it; paths leaving the workspace are refused.
    let ws = h.sandbox.workspaces();
    let (file, size) = ws.open(&alice, &conv, "result.txt").await.unwrap();
    assert_eq!(size, 16);
    drop(file);
    for bad in ["../result.txt", "/etc/passwd", "a/../../x", "..", ""] {
        let err = ws.open(&alice, &conv, bad).await.unwrap_err();
        assert!(
            matches!(err, WorkspaceError::InvalidPath(_)),
            "{bad:?}: {err}"
        );
    }
    let err = ws.open(&bob, &conv, "result.txt").await.unwrap_err();
    assert!(matches!(err, WorkspaceError::NotFound), "{err}");

    // The shell sees the same workspace, and the root filesystem is read-only.
    let shell = h
        .sandbox
        .execute(
            request(
                &alice,
                &conv,
                "shell",
                "cat result.txt; echo; touch /usr/x 2>&1; echo rc=$?; id -u",
            ),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(shell.stdout.starts_with("hello from run 1\n"), "{shell:?}");
    assert!(shell.stdout.contains("Read-only file system"), "{shell:?}");
    assert!(shell.stdout.ends_with("rc=1\n1000\n"), "{shell:?}");
    h.assert_no_containers().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn network_access_fails() {
    let h = harness(small_config()).await;
    // 192.0.2.1 is TEST-NET-1 (never routed); with network mode `none` no packet
    // leaves the container at all: only the loopback interface exists.
    let code = r#"
import os, socket
print(sorted(os.listdir('/sys/class/net')))
try:
    socket.create_connection(("192.0.2.1", 80), timeout=3)
    print("connected")
except OSError as e:
    print("refused:", e.errno)
try:
    socket.getaddrinfo("deb.debian.org", 80)
    print("resolved")
except OSError as e:
    print("no dns")
"#;
    let out = h.run("python", code).await;
    assert_eq!(out.stdout, "['lo']\nrefused: 101\nno dns\n", "{out:?}");
    h.assert_no_containers().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_bomb_is_killed_with_a_clear_message() {
    let h = harness(SandboxConfig {
        memory_mb: 64,
        ..small_config()
    })
    .await;
    let out = h
        .run(
            "python",
            "hog = []\nwhile True:\n    hog.append(' ' * 10_000_000)\n",
        )
        .await;
    assert!(out.oom_killed, "{out:?}");
    assert_eq!(out.exit_code, Some(137), "{out:?}");
    assert!(
        out.notes
            .iter()
            .any(|n| n.contains("memory limit of 64 MiB")),
        "{out:?}"
    );
    assert!(out.to_tool_output().contains("memory limit"), "{out:?}");
    h.assert_no_containers().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fork_bomb_hits_the_pids_limit() {
    let h = harness(SandboxConfig {
        pids_limit: 32,
        timeout_secs: 8,
        ..small_config()
    })
    .await;
    // Counts the children it could make before fork failed.
    let code = r#"
import os, time, errno
n = 0
try:
    while n < 1000:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        n += 1
except OSError as e:
    print("fork failed after", n, errno.errorcode[e.errno])
"#;
    let out = h.run("python", code).await;
    let words: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(
        words.get(..3),
        Some(&["fork", "failed", "after"][..]),
        "{out:?}"
    );
    let made: i64 = words[3].parse().unwrap();
    assert!(made < 32, "{made} children with a limit of 32: {out:?}");
    assert_eq!(words[4], "EAGAIN", "{out:?}");
    assert_eq!(out.exit_code, Some(0), "{out:?}");

    // The classic shell bomb ends too (at the time limit at worst).
    let started = Instant::now();
    let out = h.run("shell", ":(){ :|:& };:\nwait").await;
    assert!(started.elapsed() < Duration::from_secs(30), "{out:?}");
    h.assert_no_containers().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn infinite_loop_times_out() {
    let h = harness(SandboxConfig {
        timeout_secs: 2,
        ..small_config()
    })
    .await;
    let started = Instant::now();
    let out = h
        .run(
            "python",
            "import sys\nprint('spinning', flush=True)\nwhile True: pass\n",
        )
        .await;
    let took = started.elapsed();
    assert!(out.timed_out, "{out:?}");
    assert_eq!(out.exit_code, None, "{out:?}");
    assert_eq!(out.stdout, "spinning\n", "{out:?}");
    assert!(
        out.notes.iter().any(|n| n.contains("2-second limit")),
        "{out:?}"
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(15),
        "{took:?}"
    );
    h.assert_no_containers().await;
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn hundred_megabytes_of_output_are_truncated_in_bounded_memory() {
    let h = harness(SandboxConfig {
        timeout_secs: 60,
        ..small_config()
    })
    .await;
    let before = peak_rss_kib();
    let code = "import sys\nline = 'x' * 1023 + '\\n'\nblock = line * 1024\nfor _ in range(100):\n    sys.stdout.write(block)\nsys.stderr.write('done\\n')\n";
    let out = h.run("python", code).await;
    let grown_mib = (peak_rss_kib().saturating_sub(before)) / 1024;
    assert!(
        out.stdout_truncated && !out.stderr_truncated,
        "{:?}",
        out.notes
    );
    assert!(!out.timed_out, "{:?}", out.notes);
    assert_eq!(out.exit_code, Some(0));
    assert_eq!(out.stderr, "done\n");
    assert!(
        out.stdout.len() < 16 * 1024 + 200,
        "{} bytes kept",
        out.stdout.len()
    );
    assert!(
        out.stdout
            .contains("104857600 bytes in total, the first 16384 shown"),
        "{}",
        &out.stdout[out.stdout.len() - 200..]
    );
    assert!(grown_mib < 40, "peak RSS grew by {grown_mib} MiB");
    h.assert_no_containers().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_executions_stay_within_the_maximum_and_queue() {
    let h = harness(SandboxConfig {
        max_concurrent: 2,
        ..small_config()
    })
    .await;
    let code = "import time\nstart = time.time()\ntime.sleep(1.5)\nprint(start, time.time())\n";
    let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let watcher = {
        let (sandbox, peak) = (h.sandbox.clone(), peak.clone());
        tokio::spawn(async move {
            loop {
                peak.fetch_max(sandbox.running(), std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let sandbox = h.sandbox.clone();
        let req = request(
            &AccountId::generate(),
            &ConversationId::generate(),
            "python",
            code,
        );
        tasks.push(tokio::spawn(async move {
            sandbox.execute(req, CancellationToken::new()).await
        }));
    }
    let mut intervals = Vec::new();
    for t in tasks {
        let out = t.await.unwrap().unwrap();
        let times: Vec<f64> = out
            .stdout
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        intervals.push((times[0], times[1]));
    }
    watcher.abort();
    // At no instant did more than two programs run, and two did run together.
    let most_at_once = intervals
        .iter()
        .map(|&(s, _)| {
            intervals
                .iter()
                .filter(|&&(s2, e2)| s2 <= s && s < e2)
                .count()
        })
        .max()
        .unwrap();
    assert_eq!(most_at_once, 2, "{intervals:?}");
    assert!(peak.load(std::sync::atomic::Ordering::SeqCst) <= 2);
    // Five 1.5 s programs, two at a time: at least three rounds.
    assert!(
        started.elapsed() >= Duration::from_millis(4500),
        "{:?}",
        started.elapsed()
    );
    h.assert_no_containers().await;
}

/// The containers of an execution whose program's container exists (the holder and
/// the program's). They are made one after the other, so a test must not wait to see
/// a count between: it may pass faster than the test looks.
const RUNNING: usize = 2;

#[tokio::test(flavor = "multi_thread")]
async fn cancellation_and_dropping_kill_the_container() {
    let h = harness(SandboxConfig {
        timeout_secs: 120,
        ..small_config()
    })
    .await;
    let code = "import time\nprint('started', flush=True)\ntime.sleep(100)\n";
    let start = |cancel: CancellationToken| {
        let sandbox = h.sandbox.clone();
        let req = request(
            &AccountId::generate(),
            &ConversationId::generate(),
            "python",
            code,
        );
        tokio::spawn(async move { sandbox.execute(req, cancel).await })
    };

    // Cancel through the token.
    let cancel = CancellationToken::new();
    let task = start(cancel.clone());
    wait_for(|| async { h.containers().await == RUNNING }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let at = Instant::now();
    cancel.cancel();
    let result = task.await.unwrap();
    assert!(matches!(result, Err(SandboxError::Cancelled)), "{result:?}");
    assert!(at.elapsed() < Duration::from_secs(10));
    h.assert_no_containers().await;

    // Drop the execution's future while its program runs (an aborted run task): the
    // guard removes both containers and the volume.
    let task = start(CancellationToken::new());
    wait_for(|| async { h.containers().await == RUNNING }).await;
    task.abort();
    wait_for(|| async { h.containers().await == 0 && h.volumes().await == 0 }).await;

    // Drop it while the containers are being made (the holder's start, the upload,
    // the program's create request): whatever Docker makes after is removed too.
    for _ in 0..3 {
        let task = start(CancellationToken::new());
        poll_until(Duration::from_millis(5), || async {
            h.containers().await >= 1
        })
        .await;
        task.abort();
        wait_for(|| async { h.containers().await == 0 && h.volumes().await == 0 }).await;
    }
}

/// The admin console's kill: the execution is listed by its labels (run, account,
/// instance), killed from the listing, and its tool call returns "stopped by an
/// administrator" with the workspace as it was; nothing is left on the engine.
#[tokio::test(flavor = "multi_thread")]
async fn an_execution_listed_by_label_is_killed_by_an_administrator() {
    let h = harness(SandboxConfig {
        timeout_secs: 120,
        ..small_config()
    })
    .await;
    let (account, conversation) = (AccountId::generate(), ConversationId::generate());
    let run = chorus_model::ids::RunId::generate();
    let code = "open('partial.txt', 'w').write('x')\nimport time\nprint('started', flush=True)\ntime.sleep(100)\n";
    let task = {
        let sandbox = h.sandbox.clone();
        let mut req = request(&account, &conversation, "python", code);
        req.run = Some(run.clone());
        tokio::spawn(async move { sandbox.execute(req, CancellationToken::new()).await })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed =
        loop {
            let found =
                h.sandbox.executions().await.unwrap().into_iter().find(|e| {
                    e.instance.as_deref() == Some(h.instance.as_str()) && e.program_running
                });
            if let Some(found) = found {
                break found;
            }
            assert!(Instant::now() < deadline, "the execution was never listed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
    assert_eq!(listed.run_id.as_deref(), Some(run.as_str()));
    assert_eq!(listed.account_id.as_deref(), Some(account.as_str()));
    assert_eq!(listed.containers, 2, "{listed:?}");
    assert!(listed.id.starts_with("chorus-sbx-"), "{listed:?}");

    assert!(h.sandbox.kill_execution(&listed.id).await.unwrap());
    let out = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the killed execution ends")
        .unwrap()
        .expect("a killed execution is a result, not an error");
    assert!(out.stopped_by_admin, "{out:?}");
    assert_eq!(out.exit_code, None);
    assert!(
        out.to_tool_output().contains("stopped by an administrator"),
        "{}",
        out.to_tool_output()
    );
    assert!(out.files.is_empty(), "{out:?}");
    let files = h
        .sandbox
        .workspaces()
        .list(&account, &conversation)
        .await
        .unwrap_or_default();
    assert!(files.is_empty(), "the workspace changed: {files:?}");
    h.assert_no_containers().await;
    assert!(!h.sandbox.kill_execution(&listed.id).await.unwrap());
    assert!(!h.sandbox.kill_execution("not-an-execution").await.unwrap());
}

async fn wait_for<F, Fut>(check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    poll_until(Duration::from_millis(100), check).await
}

/// Checks every `every` until `check` holds; fails after 20 s.
async fn poll_until<F, Fut>(every: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "condition not reached within 20 s"
        );
        tokio::time::sleep(every).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn quota_overflow_keeps_the_previous_workspace() {
    let h = harness(SandboxConfig {
        workspace_quota_mb: 1,
        ..small_config()
    })
    .await;
    let (account, conv) = (AccountId::generate(), ConversationId::generate());
    let run = |code: &'static str| {
        let sandbox = h.sandbox.clone();
        let req = request(&account, &conv, "python", code);
        async move {
            sandbox
                .execute(req, CancellationToken::new())
                .await
                .unwrap()
        }
    };
    let out = run("open('keep.txt', 'w').write('kept')").await;
    assert_eq!(out.files.len(), 1, "{out:?}");
    let out = run("open('a.bin', 'wb').write(b'0' * 700_000)\nopen('b.bin', 'wb').write(b'0' * 700_000)\nprint('wrote')").await;
    // The workspace volume is capped at the quota: the second write fails inside the
    // program, which is told why, and nothing it wrote is kept.
    assert_eq!(out.stdout, "", "{out:?}");
    assert!(out.stderr.contains("No space left on device"), "{out:?}");
    assert!(out.files.is_empty(), "{out:?}");
    assert!(
        out.notes
            .iter()
            .any(|n| n.contains("the workspace is full") && n.contains("workspace_quota_mb")),
        "{out:?}"
    );
    assert!(
        out.notes
            .iter()
            .any(|n| n.contains("workspace quota exceeded")),
        "{out:?}"
    );
    let out = run("import os; print(sorted(os.listdir('.')))").await;
    assert_eq!(out.stdout, "['keep.txt']\n", "{out:?}");
    h.assert_no_containers().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_and_unreachable_docker_give_clear_errors() {
    let h = harness(small_config()).await;
    let (account, conv) = (AccountId::generate(), ConversationId::generate());
    let err = h
        .sandbox
        .execute(
            request(&account, &conv, "cobol", "DISPLAY 'HI'."),
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("unknown language `cobol`")
            && err.to_string().contains("python, shell"),
        "{err}"
    );

    let mut config = small_config();
    config.languages.get_mut("python").unwrap().image = "chorus-sandbox-missing:0".into();
    let missing = harness(config).await;
    let err = missing
        .sandbox
        .execute(
            request(&account, &conv, "python", "print(1)"),
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, SandboxError::ImageMissing { .. }), "{err}");
    assert!(err.to_string().contains("scripts/sandbox-image"), "{err}");

    let data = tempfile::tempdir().unwrap();
    let nowhere = DockerSandbox::new(
        SandboxConfig {
            docker_host: Some("unix:///nonexistent/docker.sock".into()),
            ..small_config()
        },
        data.path(),
        "test-nowhere",
    );
    assert!(!nowhere.available().await);
    let err = nowhere
        .execute(
            request(&account, &conv, "python", "print(1)"),
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("Docker is not reachable at unix:///nonexistent/docker.sock"),
        "{msg}"
    );
    h.assert_no_containers().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn orphans_of_this_instance_are_reaped() {
    let h = harness(small_config()).await;
    let docker = Docker::connect_with_unix(&docker_host(), 30, bollard::API_DEFAULT_VERSION)
        .unwrap()
        .negotiate_version()
        .await
        .unwrap();
    // What a crash leaves: a labelled container, still running.
    let labels: HashMap<String, String> = [
        ("chorus.sandbox".to_string(), "1".to_string()),
        (LABEL_INSTANCE.to_string(), h.instance.clone()),
    ]
    .into();
    let created = docker
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            bollard::models::ContainerCreateBody {
                image: Some(chorus_core::sandbox::DEFAULT_IMAGE.into()),
                cmd: Some(vec!["sleep".into(), "300".into()]),
                labels: Some(labels),
                host_config: Some(bollard::models::HostConfig {
                    network_mode: Some("none".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    docker
        .start_container(
            &created.id,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .unwrap();
    assert_eq!(h.containers().await, 1);
    let reaped = h.sandbox.reap_orphans().await.unwrap();
    assert!(reaped >= 1);
    h.assert_no_containers().await;
}
