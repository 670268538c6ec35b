//! An account: one person, whatever surfaces they use, with a role and a status.

use crate::ids::AccountId;
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    /// Reads a stored role; anything but `admin` is a user.
    pub fn parse(s: &str) -> Self {
        if s == "admin" {
            Role::Admin
        } else {
            Role::User
        }
    }
}

/// One person.
#[derive(Clone, Debug, Serialize)]
pub struct Account {
    pub id: AccountId,
    pub name: String,
    pub role: Role,
    pub status: String,
    #[serde(skip)]
    pub password_hash: Option<String>,
    pub created_at: i64,
}

impl Account {
    /// The status of an account that may use Chorus.
    pub const ACTIVE: &'static str = "active";
    /// The status an admin sets to refuse an account on every surface (reactivating
    /// sets it back to [`Account::ACTIVE`]).
    pub const SUSPENDED: &'static str = "suspended";

    pub fn is_active(&self) -> bool {
        self.status == Self::ACTIVE
    }

    pub fn is_suspended(&self) -> bool {
        self.status == Self::SUSPENDED
    }
}
