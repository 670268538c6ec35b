//! Who may talk to the bot and invite it, and in which rooms it acts.

use crate::config::MatrixConfig;
use std::collections::HashSet;

/// The `[matrix]` allowlist, resolved once at start.
#[derive(Clone, Debug)]
pub struct Allowlist {
    users: HashSet<String>,
    servers: HashSet<String>,
    any_server: bool,
    rooms: HashSet<String>,
}

impl Allowlist {
    /// Users and servers as listed, plus the bot's own server with `allow_all` (the
    /// config requires one of them: nobody is allowed by default).
    pub fn from_config(config: &MatrixConfig) -> Self {
        let mut servers: HashSet<String> = config
            .allowed_servers
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect();
        if config.allow_all {
            servers.insert(config.own_server().to_ascii_lowercase());
        }
        Self {
            users: config.allowed_users.iter().cloned().collect(),
            any_server: servers.contains("*"),
            servers,
            rooms: config.allowed_rooms.iter().cloned().collect(),
        }
    }

    /// Whether `user_id` (`@local:server`) may talk to the bot or invite it. The server
    /// is the user id's own, never a room id's (room ids of room version 12 carry none).
    pub fn allows_user(&self, user_id: &str) -> bool {
        if self.users.contains(user_id) {
            return true;
        }
        let server = user_id
            .strip_prefix('@')
            .and_then(|r| r.split_once(':'))
            .map(|(_, s)| s.to_ascii_lowercase());
        server.is_some_and(|s| self.any_server || self.servers.contains(&s))
    }

    /// Whether the bot may join and answer in `room_id`.
    pub fn allows_room(&self, room_id: &str) -> bool {
        self.rooms.is_empty() || self.rooms.contains(room_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config with these lists; with both of users and servers empty, `allow_all`.
    fn config(users: &[&str], servers: &[&str], rooms: &[&str]) -> MatrixConfig {
        let list = |v: &[&str]| {
            v.iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let text = format!(
            "[matrix]\nhomeserver_url='http://h'\nuser_id='@bot:home.org'\npassword='p'\n\
             allowed_users=[{}]\nallowed_servers=[{}]\nallowed_rooms=[{}]\nallow_all={}\n",
            list(users),
            list(servers),
            list(rooms),
            users.is_empty() && servers.is_empty()
        );
        let config = chorus_core::config::Config::from_toml_with_surfaces(
            &text,
            &Default::default(),
            &[crate::config::SECTION],
        )
        .unwrap();
        MatrixConfig::from_config(&config).unwrap().unwrap()
    }

    #[test]
    fn allow_all_allows_only_the_bots_own_server() {
        let a = Allowlist::from_config(&config(&[], &[], &[]));
        assert!(a.allows_user("@alice:home.org"));
        assert!(a.allows_user("@alice:HOME.org"));
        assert!(!a.allows_user("@mallory:elsewhere.net"));
        assert!(!a.allows_user("@alice:home.org.evil"));
        assert!(!a.allows_user("garbage"));
        assert!(a.allows_room("!any:where"));
    }

    #[test]
    fn listed_users_and_servers_are_allowed_and_nobody_else() {
        let a = Allowlist::from_config(&config(&["@carol:far.net"], &["friends.org"], &[]));
        assert!(a.allows_user("@carol:far.net"));
        assert!(a.allows_user("@dave:friends.org"));
        assert!(!a.allows_user("@erin:far.net"));
        // Without allow_all, the bot's own server is not allowed as such.
        assert!(!a.allows_user("@alice:home.org"));
        let ported = Allowlist::from_config(&config(&[], &["h.org:8448"], &[]));
        assert!(ported.allows_user("@x:h.org:8448"));
        assert!(!ported.allows_user("@x:h.org"));
    }

    #[test]
    fn star_allows_every_server_and_rooms_restrict_where() {
        let a = Allowlist::from_config(&config(&[], &["*"], &["!ok:home.org"]));
        assert!(a.allows_user("@anyone:anywhere.io"));
        assert!(a.allows_room("!ok:home.org"));
        assert!(!a.allows_room("!other:home.org"));
    }
}
