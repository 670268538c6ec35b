//! Chorus core: the domain, the store, model providers, the run journal and the
//! engine that executes runs. Surfaces (web, chat platforms) call into this crate and
//! never touch SQL, Redis or a provider directly.

pub mod access;
pub mod auth;
pub mod chat;
pub mod config;
pub mod core;
pub mod engine;
pub mod journal;
pub mod mcp;
pub mod quota;
pub mod redis_conn;
pub mod sandbox;
pub mod sso;
pub mod telemetry;
pub mod tools;

pub use crate::core::{
    Admin, Conflict, Core, CoreError, Forbidden, GatewayKeep, GatewayRequest, GatewayRun,
    GatewayRunOptions, IdentityView, InvalidInput, SsoCallback, SsoLogin, SsoStart, SurfaceState,
    SurfaceStatus,
};
// The one provider type a gateway request names: which tool the model must call.
pub use chorus_providers::ToolChoice;
// The store's types a surface names when it calls `Core`: who is talking (an
// `Identity`) and what an API key may do. Everything else a surface names is core's
// own or chorus-model's.
pub use chorus_store::{ApiKeyScope, Identity};
// What the admin console lists and filters by.
pub use crate::core::{
    ADMIN_PAGE, AccessSetting, AccessView, AccountDetail, Activity, GROUP_MEMBERS_PAGE,
    GroupDetail, GroupView, McpServerView, ModelPrice, Overview, ProviderSummary, ProvidersPage,
    RoleAccessView, SandboxExecutionView, SandboxView, ToolsPage, UsageReport,
};
pub use chorus_store::{
    AccessGroup, AccessResource, AccountListing, AccountSort, AuditFilter, AuditKind, AuditRecord,
    GroupMember, LedgerEntry, ProviderStat, RunFilter, RunListing, RunStatBucket, utc_date,
};
