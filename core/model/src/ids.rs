//! Typed identifiers, parsed once at the edge so a run id can never be passed where a
//! conversation id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A new, time-ordered (UUIDv7) identifier.
            pub fn generate() -> Self {
                Self(uuid::Uuid::now_v7().to_string())
            }

            /// Parses an identifier from outside (a URL path, a JSON body); `None` when it
            /// is not a UUID, so malformed ids are rejected before any lookup.
            pub fn parse(raw: &str) -> Option<Self> {
                uuid::Uuid::parse_str(raw).ok().map(|u| Self(u.to_string()))
            }

            /// Wraps a value read back from the store, which only ever holds valid ids.
            pub fn from_stored(raw: String) -> Self {
                Self(raw)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        /// Maps keyed by the id can be looked up with a borrowed `&str` (an id read
        /// off the wire), without making an id of it first. Sound because the derived
        /// `Hash`, `Eq` and `Ord` of a one-field struct are those of its `String`.
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// One person, whatever surfaces they use.
    AccountId
);
id_type!(
    /// A conversation: a tree of messages owned by one account.
    ConversationId
);
id_type!(
    /// One message in a conversation tree.
    MessageId
);
id_type!(
    /// One generation (or continuation) of an assistant message.
    RunId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_uuids_only() {
        let id = RunId::generate();
        assert_eq!(RunId::parse(id.as_str()), Some(id));
        assert_eq!(RunId::parse("not-a-run"), None);
        assert_eq!(RunId::parse("../../etc/passwd"), None);
    }

    #[test]
    fn a_map_of_ids_is_read_by_str() {
        let id = RunId::generate();
        let map = std::collections::HashMap::from([(id.clone(), 7)]);
        assert_eq!(map.get(id.as_str()), Some(&7));
        assert_eq!(map.get("another"), None);
    }
}
