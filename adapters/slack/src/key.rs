//! Binding keys and message ids on Slack. A thread is one conversation:
//! `TEAM:CHANNEL:THREAD_TS`; the top level of a DM with the app is one more
//! (`TEAM:CHANNEL`). A posted message is `CHANNEL:TS` (a ts is unique per channel).

/// Where a binding posts: a workspace, a channel, and the thread (if any).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    pub team: String,
    pub channel: String,
    pub thread_ts: Option<String>,
}

impl Place {
    /// The binding key of this place.
    pub fn key(&self) -> String {
        match &self.thread_ts {
            Some(ts) => format!("{}:{}:{ts}", self.team, self.channel),
            None => format!("{}:{}", self.team, self.channel),
        }
    }

    /// The place a binding key names; `None` for a key of another surface.
    pub fn parse(key: &str) -> Option<Place> {
        let mut parts = key.split(':');
        let team = parts.next().filter(|s| !s.is_empty())?;
        let channel = parts.next().filter(|s| !s.is_empty())?;
        let thread_ts = parts.next().map(str::to_string);
        if parts.next().is_some() || thread_ts.as_deref() == Some("") {
            return None;
        }
        Some(Place {
            team: team.into(),
            channel: channel.into(),
            thread_ts,
        })
    }

    /// Whether this is a direct message channel with the app (Slack's DM ids start
    /// with `D`): only its one person reads it.
    pub fn is_direct(&self) -> bool {
        self.channel.starts_with('D')
    }
}

/// The id of a posted message.
pub fn message_id(channel: &str, ts: &str) -> String {
    format!("{channel}:{ts}")
}

/// The channel and ts of a message id.
pub fn parse_message_id(id: &str) -> Option<(&str, &str)> {
    id.split_once(':')
        .filter(|(c, t)| !c.is_empty() && !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let thread = Place {
            team: "T1".into(),
            channel: "C1".into(),
            thread_ts: Some("1700000000.000100".into()),
        };
        assert_eq!(thread.key(), "T1:C1:1700000000.000100");
        assert_eq!(Place::parse(&thread.key()), Some(thread));
        let dm = Place {
            team: "T1".into(),
            channel: "D9".into(),
            thread_ts: None,
        };
        assert_eq!(Place::parse("T1:D9"), Some(dm.clone()));
        assert!(dm.is_direct());
        for bad in ["", "T1", ":C1", "T1:C1:", "a:b:c:d"] {
            assert_eq!(Place::parse(bad), None, "{bad:?}");
        }
        assert_eq!(
            parse_message_id(&message_id("C1", "1.2")),
            Some(("C1", "1.2"))
        );
        assert_eq!(parse_message_id("nope"), None);
    }
}
