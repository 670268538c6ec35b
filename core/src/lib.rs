//! Chorus core: the domain, the store, model providers, the run journal and the
//! engine that executes runs. Surfaces (web, chat platforms) call into this crate and
//! never touch SQL, Redis or a provider directly.

pub mod auth;
pub mod chat;
pub mod config;
pub mod core;
pub mod engine;
pub mod journal;
pub mod mcp;
pub mod quota;
pub mod sandbox;
pub mod sso;
pub mod tools;

// Transitional re-exports for the surfaces while the facade narrows: the shared
// vocabulary lives in chorus-model, and surfaces will stop reaching into the store and
// the providers through these.
pub use chorus_model::{ids, secret, time};
pub use chorus_providers as provider;
pub use chorus_store as store;

pub use crate::core::{Admin, Core, CoreError, IdentityView, SsoCallback, SsoLogin, SsoStart};
pub use chorus_store::Identity;
