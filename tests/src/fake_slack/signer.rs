//! Slack's side of the Events API: requests signed as Slack signs them
//! (`x-slack-signature: v0=` HMAC-SHA256 of `v0:{timestamp}:{body}` with the signing
//! secret, `x-slack-request-timestamp`), or forged, or too old.

use super::SIGNING_SECRET;
use anyhow::Result;
use hmac::{Hmac, KeyInit, Mac};
use sha2_011::Sha256;
use std::time::{SystemTime, UNIX_EPOCH};

/// How a request is signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signing {
    /// With the app's signing secret, now.
    Valid,
    /// With another secret.
    Forged,
    /// With the right secret, ten minutes ago (Slack's window is five).
    Stale,
    /// No signature headers at all.
    Unsigned,
}

/// `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}` under `secret`.
pub fn signature(secret: &str, timestamp: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// A signed Events API request.
pub struct Delivery {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: String,
    /// `x-slack-retry-num`, for a redelivery.
    pub retry: Option<u32>,
}

impl Delivery {
    /// An event callback (JSON) to `/slack/events`.
    pub fn event(payload: &serde_json::Value) -> Self {
        Self {
            path: "/slack/events",
            content_type: "application/json",
            body: payload.to_string(),
            retry: None,
        }
    }

    /// An interaction to `/slack/interactions` (a form with the JSON `payload`).
    pub fn interaction(payload: &serde_json::Value) -> Self {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &payload.to_string())
            .finish();
        Self {
            path: "/slack/interactions",
            content_type: "application/x-www-form-urlencoded",
            body,
            retry: None,
        }
    }

    /// A slash command to `/slack/commands` (its fields as a form).
    pub fn command(fields: &serde_json::Value) -> Self {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in fields.as_object().into_iter().flatten() {
            form.append_pair(k, v.as_str().unwrap_or_default());
        }
        Self {
            path: "/slack/commands",
            content_type: "application/x-www-form-urlencoded",
            body: form.finish(),
            retry: None,
        }
    }

    pub fn retried(mut self, num: u32) -> Self {
        self.retry = Some(num);
        self
    }

    /// Posts it to the server at `base_url`; returns the status and body.
    pub async fn send(&self, base_url: &str, signing: Signing) -> Result<(u16, String)> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let timestamp = match signing {
            Signing::Stale => now - 600,
            _ => now,
        }
        .to_string();
        let secret = match signing {
            Signing::Forged => "not-the-signing-secret",
            _ => SIGNING_SECRET,
        };
        let mut request = reqwest::Client::new()
            .post(format!("{base_url}{}", self.path))
            .header("content-type", self.content_type)
            .body(self.body.clone());
        if signing != Signing::Unsigned {
            request = request
                .header("x-slack-request-timestamp", &timestamp)
                .header(
                    "x-slack-signature",
                    signature(secret, &timestamp, &self.body),
                );
        }
        if let Some(n) = self.retry {
            request = request
                .header("x-slack-retry-num", n.to_string())
                .header("x-slack-retry-reason", "http_timeout");
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok((status, response.text().await?))
    }
}

#[cfg(test)]
mod tests {
    /// Slack's documented example (docs.slack.dev, "Verifying requests from Slack").
    #[test]
    fn signature_matches_slacks_documented_example() {
        let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        assert_eq!(
            super::signature("8f742231b10e8888abcd99yyyzzz85a5", "1531420618", body),
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
        );
    }
}
