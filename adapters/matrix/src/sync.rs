//! The sync loop: long-polls the homeserver until cancelled, with backoff on errors.

use chorus_core::chat::{SurfaceHandle, SurfaceState};
use matrix_sdk::Client;
use matrix_sdk::config::SyncSettings;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Long-poll timeout of one sync.
const POLL: Duration = Duration::from_secs(30);
/// Longest wait between two failed syncs.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// One sync that returns at once (no long poll), from the saved token if any; gives
/// the token the loop goes on from.
pub async fn first_sync(client: &Client) -> Result<String, String> {
    let response = client
        .sync_once(SyncSettings::default().timeout(Duration::ZERO))
        .await
        .map_err(|e| e.to_string())?;
    Ok(response.next_batch)
}

/// Syncs until the surface stops; handlers run inside each sync. A failed sync
/// (homeserver down, network) is retried with exponential backoff and reported as the
/// surface being down until a sync succeeds again; an abandoned long poll is harmless.
pub async fn sync_forever(client: Client, mut token: String, surface: SurfaceHandle) {
    let cancel: CancellationToken = surface.stopping();
    let mut backoff = Duration::from_secs(1);
    loop {
        let settings = SyncSettings::default().token(token.clone()).timeout(POLL);
        let result = tokio::select! {
            _ = cancel.cancelled() => break,
            r = client.sync_once(settings) => r,
        };
        match result {
            Ok(response) => {
                token = response.next_batch;
                backoff = Duration::from_secs(1);
                surface.report(SurfaceState::Connected);
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "matrix: sync failed");
                surface.report(SurfaceState::Down {
                    error: format!("sync failed: {e}"),
                });
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    tracing::info!("matrix: sync stopped");
}
