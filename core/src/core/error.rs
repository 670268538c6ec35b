//! [`CoreError`]: every way a facade call fails, typed, so a surface maps each case to
//! its own words (an HTTP status and code, a chat reply) by variant, never by message
//! text. The messages are the ones clients see.

use crate::auth::AuthError;
use crate::journal::JournalError;
use crate::quota::Refusal;
use crate::sandbox::WorkspaceError;
use crate::sso::SsoError;
use chorus_providers::ResolveError;
use chorus_store::{StoreConflict, StoreError};

/// Errors a surface turns into its own words (HTTP status, chat reply).
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("invalid credentials")]
    Unauthorized,
    /// The caller may not do this, whatever the input.
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    /// Input that breaks a rule; the case says which.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// The request is valid but the state of things does not allow it now.
    #[error(transparent)]
    Conflict(#[from] Conflict),
    /// The database failed; surfaces answer with an internal error.
    #[error(transparent)]
    Store(StoreError),
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The run may not start: balance or concurrency.
    #[error(transparent)]
    Refused(Refusal),
    /// Too many requests of one kind in the current window; try again later.
    #[error("{0}")]
    RateLimited(String),
    /// A link code that is wrong, used or expired (or not a code at all).
    #[error("{0}")]
    InvalidLinkCode(String),
    #[error(transparent)]
    Limiter(#[from] crate::quota::LimiterError),
    #[error(transparent)]
    Sso(#[from] SsoError),
    /// A service Chorus depends on (an MCP server) did not answer.
    #[error("{0}")]
    Unavailable(String),
}

/// Input a facade call refuses, one case per rule.
#[derive(Debug, thiserror::Error)]
pub enum InvalidInput {
    #[error(
        "account name {name:?} must be 1-64 characters of letters, digits, `_`, `-`, `.` or `@`"
    )]
    AccountName { name: String },
    /// A login name longer than any account name can be (refused before it is
    /// looked up, counted or stored).
    #[error("account names are at most {max} characters")]
    LoginNameTooLong { max: usize },
    #[error("unknown model {0:?}: expected PROVIDER/MODEL as listed by GET /api/models")]
    UnknownModel(String),
    /// A new conversation's title.
    #[error("title is longer than {max} characters")]
    TitleTooLong { max: usize },
    /// A conversation's new title.
    #[error("title must be 1 to {max} characters")]
    TitleLength { max: usize },
    #[error("content must not be empty")]
    EmptyMessage,
    #[error("content is longer than {max} characters")]
    MessageTooLong { max: usize },
    /// Text with a NUL character (U+0000), which PostgreSQL cannot store: refused on
    /// every backend alike, so a deployment behaves the same on either.
    #[error("content must not contain a NUL character (U+0000)")]
    NulCharacter,
    #[error("key name must be 1 to 64 characters, without control characters")]
    KeyName,
    #[error("scopes must list `read` and/or `chat`")]
    KeyScopes,
    /// An API key scope that is not one (its first 40 characters).
    #[error("unknown scope {0:?}: expected `read` or `chat`")]
    UnknownScope(String),
    #[error("days must be 1 to 366, not {0}")]
    UsageDays(u32),
    #[error("amount must be a non-zero number of credits up to {max} either way, not {amount}")]
    GrantAmount { amount: f64, max: f64 },
    #[error("note is longer than {max} characters")]
    NoteTooLong { max: usize },
    /// An account deletion confirmed with something other than its name.
    #[error("type the account's name ({name:?}) to confirm its deletion")]
    DeleteConfirmation { name: String },
    /// A name on an access list that is no model, alias or tool server.
    #[error("{resource}: {name:?} names no {what} (expected one of: {known})")]
    AccessName {
        resource: &'static str,
        what: &'static str,
        name: String,
        known: String,
    },
    /// An access list with too many or too long names.
    #[error("{resource}: at most {max} names of at most {max_len} characters each")]
    AccessList {
        resource: &'static str,
        max: usize,
        max_len: usize,
    },
    /// A role other than `user` or `admin`.
    #[error("role must be `user` or `admin`, not {0:?}")]
    Role(String),
    /// An unknown filter or sort value in an admin list.
    #[error("{field} must be one of {expected}, not {value:?}")]
    ListOption {
        field: &'static str,
        expected: &'static str,
        value: String,
    },
    #[error("tools: at most {max} entries")]
    TooManyTools { max: usize },
    /// A tool selection naming neither a tool server nor a tool the account may use.
    #[error(
        "tools: {0:?} is neither a tool server nor a tool you may use (GET /api/tools lists them)"
    )]
    UnknownTool(String),
    /// A sandbox file path or workspace that cannot be used.
    #[error(transparent)]
    Workspace(WorkspaceError),
    /// A request parameter a model of the chain cannot honour (the gateway's
    /// `seed`, `response_format`): refused rather than silently dropped.
    #[error(
        "`{param}` is not supported by `{model}` (a {kind} provider); only OpenAI Chat Completions providers take it"
    )]
    UnsupportedParameter {
        param: &'static str,
        model: String,
        kind: String,
    },
    /// `resume N` past the end of the list; `list` names the command that lists
    /// them, in the surface's form.
    #[error("there is no conversation number {number}; {list} lists them")]
    ResumeNumber { number: String, list: String },
    /// An access group's name that is empty, too long or holds control characters.
    #[error("a group name must be 1 to {max} characters, without control characters")]
    GroupName { max: usize },
    /// An account's own refill out of range.
    #[error("refill amount must be 0 to {max} credits and its interval 60 seconds to 366 days")]
    Refill { max: f64 },
}

/// What a caller is not allowed, one case per rule.
#[derive(Debug, thiserror::Error)]
pub enum Forbidden {
    /// An admin-only command from an account that is not an admin.
    #[error("only admins may do this")]
    NotAdmin,
    /// A login to a disabled account.
    #[error("this account is disabled")]
    AccountDisabled,
    /// Any request of an account an admin suspended, on every surface.
    #[error("this account is suspended by an administrator; contact them to restore it")]
    AccountSuspended,
    /// An admin suspending, demoting or deleting their own account (which would lock
    /// them out of the console mid-action).
    #[error("an admin cannot suspend, demote or delete their own account; ask another admin")]
    OwnAccount,
    /// A chat command in a thread bound to another person's conversation.
    #[error(
        "this thread is another person's conversation; start your own by writing to me outside it"
    )]
    OthersConversation,
    /// A model (or alias) the access policy does not give the account's role.
    #[error(
        "the model `{model}` is not available to your account (role `{role}`); pick one of the models listed for you, or ask an admin"
    )]
    ModelNotAllowed { model: String, role: &'static str },
}

/// A valid request the current state refuses.
#[derive(Debug, thiserror::Error)]
pub enum Conflict {
    #[error("the run is still going; stop it first")]
    RunActive,
    #[error(
        "the reply is complete; only a stopped, interrupted, failed or cut-off reply can be continued"
    )]
    RunComplete,
    /// A chat command that needs the binding's reply to have ended; `stop` names
    /// the way to stop it, in the surface's form.
    #[error("a reply is still being written here; wait for it, or stop it with {stop}")]
    ReplyInProgress { stop: String },
    /// Every name tried for a new single sign-on account was taken.
    #[error("cannot find a free account name like {base:?}")]
    NoFreeAccountName { base: String },
    /// A new account's name belongs to another account.
    #[error("an account named {name:?} already exists")]
    AccountNameTaken { name: String },
    /// An identity of `platform` that already belongs to an account.
    #[error("the {platform} identity is already linked to an account")]
    IdentityLinked { platform: String },
    /// A conversation deleted while one of its replies is going.
    #[error("a reply in this conversation is still going; stop it first")]
    ConversationReplyActive,
    /// A message continued while another run on it is going (a race the run check
    /// before it missed).
    #[error("a run on this message is still going")]
    MessageRunActive,
    /// A link code asked for while the account holds the most unused ones it may.
    #[error(
        "you already have {active} unused link codes; use one or wait until they expire (10 minutes)"
    )]
    TooManyLinkCodes { active: i64 },
    /// A link code redeemed from an identity of the account that issued it.
    #[error(
        "this code was issued by your own account; redeem it from the identity you want to link"
    )]
    OwnLinkCode,
    /// A link code redeemed from an identity whose account is no longer active.
    #[error("the account of this identity is not active and cannot be merged")]
    IdentityAccountInactive,
    /// An admin unlinking an account's last identity.
    #[error("this is the account's last identity; delete the account instead")]
    LastIdentity,
    /// An account deleted while one of its runs is going.
    #[error("a reply of this account is still going; stop it (or suspend the account) first")]
    AccountRunActive,
    /// A new access group's name belongs to another group.
    #[error("an access group named {name:?} already exists")]
    AccessGroupNameTaken { name: String },
}

impl From<StoreConflict> for Conflict {
    fn from(c: StoreConflict) -> Self {
        match c {
            StoreConflict::AccountNameTaken { name } => Conflict::AccountNameTaken { name },
            StoreConflict::IdentityLinked { platform } => Conflict::IdentityLinked { platform },
            StoreConflict::ConversationReplyActive => Conflict::ConversationReplyActive,
            StoreConflict::MessageRunActive => Conflict::MessageRunActive,
            StoreConflict::TooManyLinkCodes { active } => Conflict::TooManyLinkCodes { active },
            StoreConflict::OwnLinkCode => Conflict::OwnLinkCode,
            StoreConflict::IdentityAccountInactive => Conflict::IdentityAccountInactive,
            StoreConflict::LastIdentity => Conflict::LastIdentity,
            StoreConflict::AccountRunActive => Conflict::AccountRunActive,
            StoreConflict::AccessGroupNameTaken { name } => Conflict::AccessGroupNameTaken { name },
        }
    }
}

/// The one place store errors become core errors.
impl From<StoreError> for CoreError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => CoreError::NotFound(what),
            StoreError::Conflict(conflict) => CoreError::Conflict(conflict.into()),
            StoreError::Refused(refusal) => CoreError::Refused(refusal),
            other => CoreError::Store(other),
        }
    }
}

impl From<ResolveError> for CoreError {
    fn from(e: ResolveError) -> Self {
        match e {
            ResolveError::UnknownModel(model) => InvalidInput::UnknownModel(model).into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every store conflict reaches a surface with the store's words.
    #[test]
    fn store_conflicts_keep_their_message() {
        let cases = [
            StoreConflict::AccountNameTaken {
                name: "alice".into(),
            },
            StoreConflict::IdentityLinked {
                platform: "discord".into(),
            },
            StoreConflict::ConversationReplyActive,
            StoreConflict::MessageRunActive,
            StoreConflict::TooManyLinkCodes { active: 3 },
            StoreConflict::OwnLinkCode,
            StoreConflict::IdentityAccountInactive,
            StoreConflict::LastIdentity,
            StoreConflict::AccountRunActive,
            StoreConflict::AccessGroupNameTaken {
                name: "staff".into(),
            },
        ];
        for case in cases {
            let message = case.to_string();
            let core = CoreError::from(StoreError::Conflict(case));
            assert!(matches!(core, CoreError::Conflict(_)), "{core:?}");
            assert_eq!(core.to_string(), message);
        }
    }
}
