//! Logging in and staying the same device: the session (user, device, access token)
//! is saved next to the SQLite state and crypto stores, and restored on the next start
//! so encrypted rooms keep working. A different device (new password login, another
//! token) gets a fresh crypto store; the old one is kept aside, never deleted.

use crate::config::MatrixConfig;
use crate::error::MatrixError;
use matrix_sdk::authentication::SessionTokens;
use matrix_sdk::authentication::matrix::MatrixSession;
use matrix_sdk::ruma::api::error::ErrorKind;
use matrix_sdk::ruma::{OwnedDeviceId, OwnedUserId};
use matrix_sdk::{Client, SessionMeta};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What is saved in `STORE_DIR/session.json` (mode 0600).
#[derive(Clone, Deserialize, Serialize)]
struct SavedSession {
    homeserver_url: String,
    user_id: String,
    device_id: String,
    access_token: String,
}

/// The files of one bot account.
struct StorePaths {
    dir: PathBuf,
    session: PathBuf,
    sqlite: PathBuf,
}

impl StorePaths {
    fn new(dir: PathBuf) -> Self {
        Self {
            session: dir.join("session.json"),
            sqlite: dir.join("sqlite"),
            dir,
        }
    }
}

/// A logged-in client whose stores and device survive restarts.
pub async fn connect(config: &MatrixConfig, data_dir: &Path) -> Result<Client, MatrixError> {
    let paths = StorePaths::new(config.store_dir(data_dir));
    create_private_dir(&paths.dir)?;
    let saved = load_session(&paths.session)?
        .filter(|s| s.homeserver_url == config.homeserver_url && s.user_id == config.user_id);
    let login_error = |message: String| MatrixError::Login {
        homeserver: config.homeserver_url.clone(),
        user: config.user_id.clone(),
        message,
    };

    if let Some(token) = config.access_token.as_ref().filter(|t| !t.is_empty()) {
        let (user_id, device_id) = whoami(config, token.expose()).await.map_err(login_error)?;
        if user_id.as_str() != config.user_id {
            return Err(login_error(format!(
                "the access token belongs to {user_id}, not to matrix.user_id"
            )));
        }
        if saved
            .as_ref()
            .is_none_or(|s| s.device_id != device_id.as_str())
        {
            set_aside_stores(&paths)?;
        }
        let session = SavedSession {
            homeserver_url: config.homeserver_url.clone(),
            user_id: user_id.to_string(),
            device_id: device_id.to_string(),
            access_token: token.expose().to_string(),
        };
        let client = build_client(config, &paths).await?;
        restore(&client, &session).await.map_err(login_error)?;
        save_session(&paths.session, &session)?;
        tracing::info!(user = %user_id, device = %device_id, "matrix: logged in with the access token");
        return Ok(client);
    }

    let password = config.password.as_ref().ok_or_else(|| {
        login_error("neither matrix.password nor matrix.access_token is set".into())
    })?;
    if let Some(session) = saved {
        let client = build_client(config, &paths).await?;
        restore(&client, &session).await.map_err(login_error)?;
        match client.whoami().await {
            Ok(_) => {
                tracing::info!(user = %session.user_id, device = %session.device_id, "matrix: restored the saved session");
                return Ok(client);
            }
            Err(e) if matches!(e.client_api_error_kind(), Some(ErrorKind::UnknownToken(_))) => {
                tracing::warn!(
                    device = %session.device_id,
                    "matrix: the saved session was logged out; logging in again as a new device"
                );
            }
            Err(e) => return Err(login_error(format!("checking the saved session: {e}"))),
        }
    }
    // A new device: its crypto store starts empty.
    set_aside_stores(&paths)?;
    let client = build_client(config, &paths).await?;
    client
        .matrix_auth()
        .login_username(&config.user_id, password.expose())
        .initial_device_display_name(&config.device_name)
        .send()
        .await
        .map_err(|e| login_error(e.to_string()))?;
    let session = client
        .matrix_auth()
        .session()
        .ok_or_else(|| login_error("the homeserver returned no session".into()))?;
    let saved = SavedSession {
        homeserver_url: config.homeserver_url.clone(),
        user_id: session.meta.user_id.to_string(),
        device_id: session.meta.device_id.to_string(),
        access_token: session.tokens.access_token.clone(),
    };
    save_session(&paths.session, &saved)?;
    tracing::info!(user = %saved.user_id, device = %saved.device_id, "matrix: logged in with the password as a new device");
    Ok(client)
}

async fn build_client(config: &MatrixConfig, paths: &StorePaths) -> Result<Client, MatrixError> {
    Client::builder()
        .homeserver_url(&config.homeserver_url)
        .sqlite_store(
            &paths.sqlite,
            config.store_passphrase.as_ref().map(|p| p.expose()),
        )
        .build()
        .await
        .map_err(|e| MatrixError::Client {
            homeserver: config.homeserver_url.clone(),
            message: e.to_string(),
        })
}

async fn restore(client: &Client, saved: &SavedSession) -> Result<(), String> {
    let user_id = OwnedUserId::try_from(saved.user_id.as_str()).map_err(|e| e.to_string())?;
    let session = MatrixSession {
        meta: SessionMeta {
            user_id,
            device_id: OwnedDeviceId::from(saved.device_id.as_str()),
        },
        tokens: SessionTokens {
            access_token: saved.access_token.clone(),
            refresh_token: None,
        },
    };
    client
        .restore_session(session)
        .await
        .map_err(|e| format!("restoring the session: {e}"))
}

/// The user and device an access token belongs to (`GET /account/whoami`), asked
/// before the client exists because the device decides which crypto store to open.
async fn whoami(
    config: &MatrixConfig,
    token: &str,
) -> Result<(OwnedUserId, OwnedDeviceId), String> {
    #[derive(Deserialize)]
    struct WhoAmI {
        user_id: String,
        device_id: Option<String>,
    }
    let url = format!(
        "{}/_matrix/client/v3/account/whoami",
        config.homeserver_url.trim_end_matches('/')
    );
    let response = reqwest::Client::new()
        .get(&url)
        .bearer_auth(token)
        .timeout(std::time::Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| format!("cannot reach the homeserver: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(format!(
            "the homeserver refused the access token ({status}): {body}"
        ));
    }
    let who: WhoAmI = response
        .json()
        .await
        .map_err(|e| format!("unexpected whoami answer: {e}"))?;
    let user = OwnedUserId::try_from(who.user_id.as_str()).map_err(|e| e.to_string())?;
    let device = who
        .device_id
        .ok_or("the access token has no device (an appservice token?); use a device's token")?;
    Ok((user, OwnedDeviceId::from(device.as_str())))
}

fn load_session(path: &Path) -> Result<Option<SavedSession>, MatrixError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| MatrixError::Session {
                path: path.to_path_buf(),
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(MatrixError::Store {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn save_session(path: &Path, session: &SavedSession) -> Result<(), MatrixError> {
    use std::io::Write;
    let store_err = |source| MatrixError::Store {
        path: path.to_path_buf(),
        source,
    };
    let json = serde_json::to_vec_pretty(session).expect("a session serializes");
    let tmp = path.with_extension("json.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(store_err)?;
    file.write_all(&json).map_err(store_err)?;
    file.sync_all().map_err(store_err)?;
    std::fs::rename(&tmp, path).map_err(store_err)
}

/// Moves the stores of a previous device aside (`sqlite.replaced-UNIXTIME`): a crypto
/// store holds one device's keys and cannot serve another.
fn set_aside_stores(paths: &StorePaths) -> Result<(), MatrixError> {
    if !paths.sqlite.exists() {
        return Ok(());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let aside = paths.dir.join(format!("sqlite.replaced-{now}"));
    std::fs::rename(&paths.sqlite, &aside).map_err(|source| MatrixError::Store {
        path: paths.sqlite.clone(),
        source,
    })?;
    tracing::warn!(kept = %aside.display(), "matrix: new device; the previous device's stores were moved aside");
    Ok(())
}

fn create_private_dir(dir: &Path) -> Result<(), MatrixError> {
    let err = |source| MatrixError::Store {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_file_is_private_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let paths = StorePaths::new(dir.path().join("matrix"));
        create_private_dir(&paths.dir).unwrap();
        assert_eq!(
            load_session(&paths.session).unwrap().map(|s| s.device_id),
            None
        );
        let s = SavedSession {
            homeserver_url: "http://127.0.0.1:8008".into(),
            user_id: "@bot:localhost".into(),
            device_id: "DEV1".into(),
            access_token: "syt_secret".into(),
        };
        save_session(&paths.session, &s).unwrap();
        let back = load_session(&paths.session).unwrap().unwrap();
        assert_eq!(
            (back.device_id.as_str(), back.access_token.as_str()),
            ("DEV1", "syt_secret")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&paths.session)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            let mode = std::fs::metadata(&paths.dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        std::fs::write(&paths.session, b"{broken").unwrap();
        let err = load_session(&paths.session).err().unwrap().to_string();
        assert!(err.contains("session.json"), "{err}");
    }

    #[test]
    fn old_stores_are_moved_aside_not_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let paths = StorePaths::new(dir.path().to_path_buf());
        set_aside_stores(&paths).unwrap();
        std::fs::create_dir_all(&paths.sqlite).unwrap();
        std::fs::write(paths.sqlite.join("matrix-sdk-crypto.sqlite3"), b"keys").unwrap();
        set_aside_stores(&paths).unwrap();
        assert!(!paths.sqlite.exists());
        let kept: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("sqlite.replaced-"))
            .collect();
        assert_eq!(kept.len(), 1, "{kept:?}");
    }
}
