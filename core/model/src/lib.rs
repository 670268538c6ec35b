//! Chorus's shared vocabulary, used by every other crate: typed ids, time, secrets,
//! the domain types that cross crate boundaries (accounts, run status, chat messages,
//! tool calls and the tool rounds of a message), money as micro-credits, and the one
//! configuration error. Pure data and rules: no I/O, no async, no database.

pub mod account;
pub mod chat;
pub mod config;
pub mod history;
pub mod ids;
pub mod money;
pub mod run;
pub mod secret;
pub mod time;

pub use account::{Account, Role};
pub use run::RunStatus;
