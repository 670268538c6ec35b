//! The binding key of a Matrix conversation: one thread of one room.

use matrix_sdk::ruma::{EventId, OwnedEventId, OwnedRoomId, RoomId};

/// `"{room_id}|{thread_root_event_id}"`. Event ids never contain `|` (sigil + base64,
/// or `$x:server` in old rooms), so the last `|` splits the key even if an old-style
/// room id had one.
pub fn channel_key(room: &RoomId, root: &EventId) -> String {
    format!("{room}|{root}")
}

/// The room and thread root of a key made by [`channel_key`]; `None` for anything else.
pub fn parse_channel_key(key: &str) -> Option<(OwnedRoomId, OwnedEventId)> {
    let (room, root) = key.rsplit_once('|')?;
    Some((RoomId::parse(room).ok()?, EventId::parse(root).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_for_old_and_new_room_ids() {
        for (room, root) in [
            ("!abc:example.org", "$ev1:example.org"),
            ("!odd|room:example.org", "$ev2"),
            (
                "!31hneApxJ_1o-63DmFrpeqnkFfWppnzWso1JvH3ogLM",
                "$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg",
            ),
        ] {
            let key = channel_key(
                &RoomId::parse(room).unwrap(),
                &EventId::parse(root).unwrap(),
            );
            assert_eq!(key, format!("{room}|{root}"));
            let (r, e) = parse_channel_key(&key).unwrap();
            assert_eq!((r.as_str(), e.as_str()), (room, root));
        }
    }

    #[test]
    fn other_keys_are_refused() {
        for key in [
            "",
            "!abc:example.org",
            "!abc:example.org|",
            "|$ev",
            "conv-123",
            "#alias:x|$ev",
            "!abc:example.org|not-an-event",
        ] {
            assert_eq!(parse_channel_key(key), None, "{key}");
        }
    }
}
