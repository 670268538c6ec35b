//! Who may talk to the app, and where: workspaces, channels and users from `[slack]`.

use crate::config::SlackConfig;
use std::collections::HashSet;

/// The `[slack]` allowlists; an empty list allows everyone of its kind.
#[derive(Clone, Debug, Default)]
pub struct Allowlist {
    teams: HashSet<String>,
    channels: HashSet<String>,
    users: HashSet<String>,
}

impl Allowlist {
    pub fn from_config(config: &SlackConfig) -> Self {
        Self {
            teams: config.allowed_workspaces.iter().cloned().collect(),
            channels: config.allowed_channels.iter().cloned().collect(),
            users: config.allowed_users.iter().cloned().collect(),
        }
    }

    pub fn allows_team(&self, team: &str) -> bool {
        self.teams.is_empty() || self.teams.contains(team)
    }

    /// Channels (not DMs, which are always allowed for allowed users).
    pub fn allows_channel(&self, channel: &str) -> bool {
        self.channels.is_empty() || self.channels.contains(channel)
    }

    pub fn allows_user(&self, user: &str) -> bool {
        self.users.is_empty() || self.users.contains(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_lists_allow_all_and_listed_ones_restrict() {
        let open = Allowlist::default();
        assert!(open.allows_team("T1") && open.allows_channel("C1") && open.allows_user("U1"));
        let closed = Allowlist {
            teams: ["T1".to_string()].into(),
            channels: ["C1".to_string()].into(),
            users: ["U1".to_string()].into(),
        };
        assert!(closed.allows_team("T1") && !closed.allows_team("T2"));
        assert!(closed.allows_channel("C1") && !closed.allows_channel("C2"));
        assert!(closed.allows_user("U1") && !closed.allows_user("U2"));
    }
}
