//! [`Synapse`]: a real Matrix homeserver (`matrix-synapse` from PyPI, installed by
//! `scripts/provision/60-synapse.sh`) run as a throwaway child process on a free
//! loopback port, with its own temp dir, generated `homeserver.yaml` and SQLite
//! database, no federation listener and no open registration.
//!
//! Users are registered with the shared secret (`/_synapse/admin/v1/register`, the
//! HMAC-SHA1 Synapse documents). The message rate limit is kept low on purpose
//! ([`MESSAGE_PER_SECOND`], [`MESSAGE_BURST`]) so a bot editing its reply about once
//! a second really meets 429 `M_LIMIT_EXCEEDED`; [`Synapse::register_human`] lifts it
//! for the human test users only, through the admin API.
//!
//! One instance per test process ([`Synapse::shared`]) keeps the suite fast: Synapse
//! takes seconds to start. Tests never share users, so they do not see each other. A
//! missing Synapse fails the test with a message naming it, never skips it.

use crate::litellm::test_python;
use crate::server::free_port;
use anyhow::{Context, Result, bail, ensure};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::sync::OnceCell;

/// The version `scripts/provision/60-synapse.sh` installs.
pub const SYNAPSE_VERSION: &str = "1.163.2";

/// The homeserver's name: user ids are `@name:localhost`.
pub const SERVER_NAME: &str = "localhost";

/// Synapse's `rc_message` for every user without an override (the bot): low enough
/// that a bot editing once a second is refused now and then.
pub const MESSAGE_PER_SECOND: f64 = 0.5;
/// The burst `rc_message` allows before refusing.
pub const MESSAGE_BURST: u32 = 8;

/// How long Synapse may take to start (it creates its SQLite schema first).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A user registered on the test homeserver.
#[derive(Clone, Debug)]
pub struct MatrixAccount {
    /// `@localpart:localhost`.
    pub user_id: String,
    pub password: String,
    /// The token of the registration's own device (for raw API calls).
    pub access_token: String,
}

impl MatrixAccount {
    /// The localpart of the user id (`bot` of `@bot:localhost`).
    pub fn localpart(&self) -> &str {
        self.user_id
            .trim_start_matches('@')
            .split(':')
            .next()
            .unwrap_or_default()
    }
}

/// One running Synapse. Dropping it kills the process; the shared instance is also
/// killed when the test process exits (see [`LAUNCHER`]).
pub struct Synapse {
    child: Mutex<Child>,
    port: u16,
    dir: TempDir,
    shared_secret: String,
    admin: MatrixAccount,
}

static SHARED: OnceCell<Synapse> = OnceCell::const_new();

/// Runs Synapse in-process with a watchdog thread: when the test process that
/// started it goes away (its parent pid changes), Synapse's temp dir is removed and
/// the process exits. A static shared instance is never dropped, so this is what
/// keeps a finished test run from leaving Synapse behind.
const LAUNCHER: &str = r#"
import os, runpy, shutil, sys, threading, time
parent, data_dir, config = os.getppid(), sys.argv[1], sys.argv[2]
def watch():
    while os.getppid() == parent:
        time.sleep(0.5)
    shutil.rmtree(data_dir, ignore_errors=True)
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
sys.argv = ["synapse.app.homeserver", "--config-path", config]
runpy.run_module("synapse.app.homeserver", run_name="__main__", alter_sys=True)
"#;

impl Synapse {
    /// The Synapse shared by every test of this process, started on first use.
    pub async fn shared() -> Result<&'static Synapse> {
        SHARED.get_or_try_init(Self::start).await
    }

    /// Starts a Synapse of its own (killed on drop) and registers its admin user.
    pub async fn start() -> Result<Self> {
        let python = test_python();
        let installed = Command::new(&python)
            .args(["-c", "import synapse.app.homeserver"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            bail!(
                "Synapse (matrix-synapse {SYNAPSE_VERSION}) is not installed for {}: \
                 `import synapse.app.homeserver` fails. Run scripts/test, whose \
                 scripts/provision/60-synapse.sh installs it, or `{} -m pip install \
                 'matrix-synapse=={SYNAPSE_VERSION}'`; set CHORUS_TEST_PYTHON to use \
                 another interpreter",
                python.display(),
                python.display()
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("chorus-synapse-")
            .tempdir()?;
        let port = free_port()?;
        let shared_secret = uuid::Uuid::new_v4().simple().to_string();
        let config = dir.path().join("homeserver.yaml");
        std::fs::write(&config, homeserver_yaml(dir.path(), port, &shared_secret))?;
        std::fs::write(dir.path().join("log.yaml"), log_yaml(dir.path()))?;
        let stdio = std::fs::File::create(dir.path().join("stdio.log"))?;
        let child = Command::new(&python)
            .arg("-c")
            .arg(LAUNCHER)
            .arg(dir.path())
            .arg(&config)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdio.try_clone()?))
            .stderr(Stdio::from(stdio))
            .spawn()
            .with_context(|| format!("cannot run Synapse with {}", python.display()))?;
        let mut synapse = Self {
            child: Mutex::new(child),
            port,
            dir,
            shared_secret,
            admin: MatrixAccount {
                user_id: String::new(),
                password: String::new(),
                access_token: String::new(),
            },
        };
        synapse.wait_ready().await?;
        synapse.admin = synapse
            .register(&format!("admin-{}", short_id()), true)
            .await
            .context("Synapse: registering the admin user")?;
        Ok(synapse)
    }

    async fn wait_ready(&self) -> Result<()> {
        let http = http_client()?;
        let url = format!("{}/_matrix/client/versions", self.url());
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.lock().expect("child lock").try_wait()? {
                bail!(
                    "Synapse exited at start ({status}); the end of its log:\n{}",
                    self.log_tail(60)
                );
            }
            if let Ok(r) = http.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "Synapse did not answer {url} within {START_TIMEOUT:?}; the end of its log:\n{}",
                    self.log_tail(60)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `http://127.0.0.1:PORT`, the client-server API base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The admin user (used for the admin API only).
    pub fn admin(&self) -> &MatrixAccount {
        &self.admin
    }

    /// Where Synapse writes its log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("homeserver.log")
    }

    /// The last `lines` lines of Synapse's log and of its stdout/stderr.
    pub fn log_tail(&self, lines: usize) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!(
            "--- homeserver.log ---\n{}\n--- stdout/stderr ---\n{}",
            tail(&read("homeserver.log"), lines),
            tail(&read("stdio.log"), lines)
        )
    }

    /// Registers `@{localpart}:localhost` with the shared secret, with a random
    /// password. Synapse's rate limits apply to it as configured (the bot's case).
    pub async fn register(&self, localpart: &str, admin: bool) -> Result<MatrixAccount> {
        let http = http_client()?;
        let url = format!("{}/_synapse/admin/v1/register", self.url());
        let nonce: Value = http
            .get(&url)
            .send()
            .await?
            .error_for_status()
            .context("Synapse: GET /_synapse/admin/v1/register (the nonce)")?
            .json()
            .await?;
        let nonce = nonce["nonce"]
            .as_str()
            .context("Synapse's register nonce response has no `nonce`")?;
        let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
        let mac = registration_mac(&self.shared_secret, nonce, localpart, &password, admin)?;
        let response = http
            .post(&url)
            .json(&json!({
                "nonce": nonce,
                "username": localpart,
                "password": password,
                "admin": admin,
                "mac": mac,
            }))
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        ensure!(
            status.is_success(),
            "Synapse refused to register {localpart}: {status} {body}"
        );
        Ok(MatrixAccount {
            user_id: body["user_id"]
                .as_str()
                .context("registration response has no user_id")?
                .to_string(),
            password,
            access_token: body["access_token"]
                .as_str()
                .context("registration response has no access_token")?
                .to_string(),
        })
    }

    /// Registers a human test user: like [`Synapse::register`], then lifts its
    /// message rate limit (`override_ratelimit` with 0/0), so only the bot meets 429s.
    pub async fn register_human(&self, localpart: &str) -> Result<MatrixAccount> {
        let account = self.register(localpart, false).await?;
        self.lift_rate_limit(&account.user_id).await?;
        Ok(account)
    }

    /// `POST /_synapse/admin/v1/users/{user_id}/override_ratelimit` with
    /// `messages_per_second: 0, burst_count: 0` (no limit) as the admin.
    pub async fn lift_rate_limit(&self, user_id: &str) -> Result<()> {
        let url = format!(
            "{}/_synapse/admin/v1/users/{}/override_ratelimit",
            self.url(),
            encode(user_id)
        );
        let response = http_client()?
            .post(&url)
            .bearer_auth(&self.admin.access_token)
            .json(&json!({ "messages_per_second": 0, "burst_count": 0 }))
            .send()
            .await?;
        let status = response.status();
        ensure!(
            status.is_success(),
            "Synapse refused to lift the rate limit of {user_id}: {status} {}",
            response.text().await.unwrap_or_default()
        );
        Ok(())
    }

    /// The device ids of `user_id`, from the admin API (`GET /_synapse/admin/v2/users/{user_id}/devices`).
    pub async fn devices(&self, user_id: &str) -> Result<Vec<String>> {
        let url = format!(
            "{}/_synapse/admin/v2/users/{}/devices",
            self.url(),
            encode(user_id)
        );
        let response = http_client()?
            .get(&url)
            .bearer_auth(&self.admin.access_token)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        ensure!(status.is_success(), "GET {url}: {status} {body}");
        Ok(body["devices"]
            .as_array()
            .map(|devices| {
                devices
                    .iter()
                    .filter_map(|d| d["device_id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Sends an `m.room.message` text as `access_token` with a raw client-server
    /// request (no client library, no retry): the status and JSON body Synapse
    /// answered, e.g. 429 with `M_LIMIT_EXCEEDED`.
    pub async fn send_text_raw(
        &self,
        access_token: &str,
        room_id: &str,
        body: &str,
    ) -> Result<(u16, Value)> {
        let url = format!(
            "{}/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
            self.url(),
            encode(room_id),
            uuid::Uuid::new_v4().simple()
        );
        let response = http_client()?
            .put(&url)
            .bearer_auth(access_token)
            .json(&json!({ "msgtype": "m.text", "body": body }))
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// Sets the display name of `account` (the bot answers to its display name).
    pub async fn set_display_name(&self, account: &MatrixAccount, name: &str) -> Result<()> {
        let url = format!(
            "{}/_matrix/client/v3/profile/{}/displayname",
            self.url(),
            encode(&account.user_id)
        );
        let response = http_client()?
            .put(&url)
            .bearer_auth(&account.access_token)
            .json(&json!({ "displayname": name }))
            .send()
            .await?;
        let status = response.status();
        ensure!(
            status.is_success(),
            "setting the display name of {}: {status} {}",
            account.user_id,
            response.text().await.unwrap_or_default()
        );
        Ok(())
    }

    /// Joins `room_id` as `access_token` with a raw client-server request.
    pub async fn join_raw(&self, access_token: &str, room_id: &str) -> Result<()> {
        let url = format!("{}/_matrix/client/v3/join/{}", self.url(), encode(room_id));
        let response = http_client()?
            .post(&url)
            .bearer_auth(access_token)
            .json(&json!({}))
            .send()
            .await?;
        let status = response.status();
        ensure!(
            status.is_success(),
            "joining {room_id}: {status} {}",
            response.text().await.unwrap_or_default()
        );
        Ok(())
    }

    /// The event `event_id` exactly as the server stores it (for an encrypted room:
    /// `m.room.encrypted` with ciphertext), read with `access_token`.
    pub async fn raw_event(
        &self,
        access_token: &str,
        room_id: &str,
        event_id: &str,
    ) -> Result<Value> {
        let url = format!(
            "{}/_matrix/client/v3/rooms/{}/event/{}",
            self.url(),
            encode(room_id),
            encode(event_id)
        );
        let response = http_client()?
            .get(&url)
            .bearer_auth(access_token)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        ensure!(status.is_success(), "GET {url}: {status} {body}");
        Ok(body)
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        if let Ok(child) = self.child.get_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A fresh short id for user localparts.
pub fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..10].to_string()
}

/// `hex(HMAC-SHA1(secret, nonce \0 user \0 password \0 "admin"|"notadmin"))`, as
/// Synapse's shared-secret registration documents it.
fn registration_mac(
    secret: &str,
    nonce: &str,
    user: &str,
    password: &str,
    admin: bool,
) -> Result<String> {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes())
        .map_err(|e| anyhow::anyhow!("HMAC key: {e}"))?;
    mac.update(nonce.as_bytes());
    mac.update(b"\x00");
    mac.update(user.as_bytes());
    mac.update(b"\x00");
    mac.update(password.as_bytes());
    mac.update(b"\x00");
    mac.update(if admin {
        b"admin" as &[u8]
    } else {
        b"notadmin"
    });
    Ok(hex::encode(mac.finalize().into_bytes()))
}

/// Percent-encodes a path segment (user, room and event ids carry `!`, `@`, `:`, `$`).
fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

/// A client for one call: reqwest clients must not outlive the runtime of the test
/// that made them, and the shared Synapse outlives every test.
fn http_client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// The homeserver config: loopback client listener only, SQLite, shared-secret
/// registration, no stats, no presence, no key servers, room version 12, a low
/// message rate limit and generous limits on everything the tests do in bulk.
fn homeserver_yaml(dir: &Path, port: u16, shared_secret: &str) -> String {
    let dir = dir.display();
    let generous = "{per_second: 1000, burst_count: 1000}";
    format!(
        r#"server_name: "{SERVER_NAME}"
public_baseurl: "http://127.0.0.1:{port}/"
pid_file: "{dir}/homeserver.pid"
listeners:
  - port: {port}
    bind_addresses: ["127.0.0.1"]
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
database:
  name: sqlite3
  args:
    database: "{dir}/homeserver.db"
log_config: "{dir}/log.yaml"
media_store_path: "{dir}/media_store"
signing_key_path: "{dir}/signing.key"
macaroon_secret_key: "{shared_secret}-macaroon"
form_secret: "{shared_secret}-form"
registration_shared_secret: "{shared_secret}"
enable_registration: false
report_stats: false
trusted_key_servers: []
suppress_key_server_warning: true
federation_domain_whitelist: []
presence:
  enabled: false
default_room_version: "12"
rc_message: {{per_second: {MESSAGE_PER_SECOND}, burst_count: {MESSAGE_BURST}}}
rc_registration: {generous}
rc_login:
  address: {generous}
  account: {generous}
  failed_attempts: {generous}
rc_joins:
  local: {generous}
  remote: {generous}
rc_joins_per_room: {generous}
rc_invites:
  per_room: {generous}
  per_user: {generous}
  per_issuer: {generous}
rc_room_creation: {generous}
rc_key_requests: {generous}
rc_admin_redaction: {generous}
rc_presence:
  per_user: {generous}
rc_user_directory: {generous}
rc_profile: {generous}
rc_delayed_event_mgmt: {generous}
"#
    )
}

/// Synapse's logging: INFO to `homeserver.log` in the temp dir.
fn log_yaml(dir: &Path) -> String {
    format!(
        r#"version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(message)s'
handlers:
  file:
    class: logging.FileHandler
    formatter: precise
    filename: "{}/homeserver.log"
    encoding: utf8
loggers:
  synapse.storage.SQL:
    level: WARNING
root:
  level: INFO
  handlers: [file]
disable_existing_loggers: false
"#,
        dir.display()
    )
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
