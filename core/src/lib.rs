//! Chorus core: the domain, the store, model providers, the run journal and the
//! engine that executes runs. Surfaces (web, chat platforms) call into this crate and
//! never touch SQL, Redis or a provider directly.

pub mod auth;
pub mod chat;
pub mod config;
pub mod core;
pub mod engine;
pub mod ids;
pub mod journal;
pub mod mcp;
pub mod provider;
pub mod quota;
pub mod sandbox;
pub mod secret;
pub mod sso;
pub mod store;
pub mod time;
pub mod tools;

pub use crate::core::{Core, CoreError, IdentityView, SsoCallback, SsoLogin, SsoStart};
