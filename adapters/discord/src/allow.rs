//! Who may use the bot, and where: the `[discord]` allowlists resolved once at start.
//! Every list left empty allows everything of its kind, so the default is every guild
//! the bot has been added to, every channel in them, everyone there and in DMs.

use crate::config::DiscordConfig;
use std::collections::HashSet;

/// Where a message or an interaction came from, and who sent it.
#[derive(Clone, Debug, Default)]
pub struct Origin<'a> {
    /// `None` in a DM.
    pub guild: Option<u64>,
    /// The channel, or for a thread its parent channel.
    pub channel: Option<u64>,
    pub user: u64,
    /// The sender's roles in the guild (none in a DM).
    pub roles: &'a [u64],
}

/// The `[discord]` allowlist.
#[derive(Clone, Debug, Default)]
pub struct Allowlist {
    guilds: HashSet<u64>,
    channels: HashSet<u64>,
    roles: HashSet<u64>,
    users: HashSet<u64>,
}

fn ids(list: &[String]) -> HashSet<u64> {
    // Validated as snowflakes by the config.
    list.iter().filter_map(|s| s.parse().ok()).collect()
}

impl Allowlist {
    pub fn from_config(config: &DiscordConfig) -> Self {
        Self {
            guilds: ids(&config.allowed_guilds),
            channels: ids(&config.allowed_channels),
            roles: ids(&config.allowed_roles),
            users: ids(&config.allowed_users),
        }
    }

    /// Whether the bot answers this sender here. In a guild: the guild and channel
    /// must be allowed, and the user listed or holding an allowed role (when either
    /// list is set). In a DM only the user lists apply: a user with only an allowed
    /// role is not recognised there (a DM carries no roles).
    pub fn admits(&self, origin: &Origin<'_>) -> bool {
        if let Some(guild) = origin.guild {
            if !self.guilds.is_empty() && !self.guilds.contains(&guild) {
                return false;
            }
            if !self.channels.is_empty()
                && !origin.channel.is_some_and(|c| self.channels.contains(&c))
            {
                return false;
            }
        } else if !self.guilds.is_empty() || !self.channels.is_empty() {
            // Restricted to some guilds or channels: DMs are outside them, unless the
            // user is listed by name.
            return self.users.contains(&origin.user);
        }
        if self.users.is_empty() && self.roles.is_empty() {
            return true;
        }
        self.users.contains(&origin.user) || origin.roles.iter().any(|r| self.roles.contains(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(guilds: &[u64], channels: &[u64], roles: &[u64], users: &[u64]) -> Allowlist {
        let set = |v: &[u64]| v.iter().copied().collect();
        Allowlist {
            guilds: set(guilds),
            channels: set(channels),
            roles: set(roles),
            users: set(users),
        }
    }

    fn guild(guild: u64, channel: u64, user: u64, roles: &[u64]) -> Origin<'_> {
        Origin {
            guild: Some(guild),
            channel: Some(channel),
            user,
            roles,
        }
    }

    fn dm(user: u64) -> Origin<'static> {
        Origin {
            user,
            ..Origin::default()
        }
    }

    #[test]
    fn empty_lists_admit_everyone_everywhere() {
        let a = Allowlist::default();
        assert!(a.admits(&guild(1, 2, 3, &[])));
        assert!(a.admits(&dm(3)));
    }

    #[test]
    fn guilds_and_channels_restrict_where() {
        let a = list(&[1], &[], &[], &[]);
        assert!(a.admits(&guild(1, 2, 3, &[])));
        assert!(!a.admits(&guild(9, 2, 3, &[])));
        assert!(
            !a.admits(&dm(3)),
            "guild-restricted bots ignore unlisted DMs"
        );
        let a = list(&[], &[2], &[], &[3]);
        assert!(a.admits(&guild(1, 2, 3, &[])));
        assert!(!a.admits(&guild(1, 5, 3, &[])));
        assert!(a.admits(&dm(3)), "a listed user may DM");
    }

    #[test]
    fn users_or_roles_restrict_who() {
        let a = list(&[], &[], &[7], &[3]);
        assert!(a.admits(&guild(1, 2, 3, &[])));
        assert!(a.admits(&guild(1, 2, 4, &[6, 7])));
        assert!(!a.admits(&guild(1, 2, 4, &[6])));
        assert!(a.admits(&dm(3)));
        assert!(!a.admits(&dm(4)), "roles are not known in a DM");
    }
}
