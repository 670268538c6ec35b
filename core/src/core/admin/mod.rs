//! The admin capability: the one place where an account's role is checked for admin
//! operations, which take an [`Admin`] instead of an account. The operations
//! themselves live beside it, one module per area of the console.

mod accounts;
mod audit;
mod runs;
mod security;
mod stats;
mod tools;

pub use accounts::{AccountDetail, PAGE as ADMIN_PAGE};
pub use audit::Overview;
pub(crate) use security::AttemptCoalescer;
pub(super) use stats::publish_forever;
pub use stats::{Activity, ModelPrice, ProviderSummary, ProvidersPage};
pub use tools::{McpServerView, SandboxExecutionView, SandboxView, ToolsPage};

use super::{Core, CoreError, Forbidden};
use chorus_model::{Account, Role};
use chorus_store::Actor;

/// Proof that the caller may perform admin operations: an admin account (checked by
/// [`Core::admin`]), or the operator running one-shot CLI commands (given by
/// [`Core::start_for_admin`]).
#[derive(Clone, Debug)]
pub struct Admin(Option<Account>);

impl Admin {
    /// The operator of the CLI: whoever may read the config and reach the database.
    pub(super) fn operator() -> Self {
        Self(None)
    }

    /// The admin account, when an account (not the CLI operator) acts.
    pub fn account(&self) -> Option<&Account> {
        self.0.as_ref()
    }

    /// Who the audit log names for this admin's changes.
    pub(crate) fn actor(&self) -> Actor {
        match &self.0 {
            Some(a) => Actor {
                id: Some(a.id.clone()),
                name: a.name.clone(),
            },
            None => Actor {
                id: None,
                name: "operator".into(),
            },
        }
    }
}

impl Core {
    /// The admin capability of `account`, or `Forbidden` when it is not an admin.
    pub fn admin(&self, account: &Account) -> Result<Admin, CoreError> {
        if account.role == Role::Admin {
            Ok(Admin(Some(account.clone())))
        } else {
            Err(Forbidden::NotAdmin.into())
        }
    }
}
