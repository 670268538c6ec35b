//! The JSON API under `/api/admin`: everything the pages do, for scripts (an admin's
//! API key, or the session with the web API's Origin check). Documented in the web
//! surface's `openapi.json` (a test below keeps them in step).

use crate::ConfigDump;
use crate::access::ApiAdmin;
use crate::query::{
    AccountsQuery, AuditQuery, RunsQuery, access_setting, account_id, parse_resource, parse_role,
    split_names,
};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use axum::{Extension, Json, Router};
use chorus_model::ids::RunId;
use chorus_web::{ApiError, AppState};
use serde::Deserialize;
use serde_json::{Value, json};

type Answer = Result<Json<Value>, ApiError>;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/admin/overview", get(overview))
        .route("/api/admin/accounts", get(accounts))
        .route("/api/admin/accounts/{id}", get(account))
        .route("/api/admin/accounts/{id}/suspend", post(suspend))
        .route("/api/admin/accounts/{id}/reactivate", post(reactivate))
        .route("/api/admin/accounts/{id}/role", put(set_role))
        .route("/api/admin/accounts/{id}/refill", put(set_refill))
        .route("/api/admin/accounts/{id}/credits", post(credits))
        .route(
            "/api/admin/accounts/{id}/revoke-access",
            post(revoke_access),
        )
        .route(
            "/api/admin/accounts/{id}/identities/{identity}",
            delete(unlink),
        )
        .route("/api/admin/accounts/{id}/delete", post(delete_account))
        .route("/api/admin/access", get(access))
        .route("/api/admin/access/{role}/{resource}", put(set_access))
        .route(
            "/api/admin/access/groups",
            get(access_groups).post(create_group),
        )
        .route(
            "/api/admin/access/groups/{group}",
            get(access_group).delete(delete_group),
        )
        .route(
            "/api/admin/access/groups/{group}/{resource}",
            put(set_group_access),
        )
        .route(
            "/api/admin/access/groups/{group}/members/{account}",
            put(add_member).delete(remove_member),
        )
        .route("/api/admin/runs", get(runs))
        .route("/api/admin/runs/{id}", get(run))
        .route("/api/admin/runs/{id}/stop", post(stop_run))
        .route("/api/admin/providers", get(providers))
        .route("/api/admin/tools", get(tools))
        .route(
            "/api/admin/tools/mcp/{server}/restart",
            post(restart_mcp_server),
        )
        .route(
            "/api/admin/tools/sandbox/{execution}/kill",
            post(kill_execution),
        )
        .route("/api/admin/audit", get(audit))
        .route("/api/admin/audit.csv", get(audit_csv))
        .route("/api/admin/config", get(config))
}

async fn access(State(state): State<AppState>, ApiAdmin(admin): ApiAdmin) -> Answer {
    Ok(Json(json!(state.core.access_view(&admin).await?)))
}

#[derive(Deserialize)]
struct AccessBody {
    /// `config`, `all` or `only`.
    mode: String,
    #[serde(default)]
    names: Vec<String>,
}

async fn set_access(
    State(state): State<AppState>,
    ApiAdmin(admin): ApiAdmin,
    Path((role, resource)): Path<(String, String)>,
    chorus_web::ApiJson(body): chorus_web::ApiJson<AccessBody>,
) -> Answer {
    let role = parse_role(&role)?;
    let resource = parse_resource(&resource)?;
    let setting = access_setting(&body.mode, body.names)?;
    let changed = state
        .core
        .set_access(&admin, role, resource, setting)
        .await?;
    let view = state.core.access_view(&admin).await?;
    Ok(Json(json!({ "changed": changed, "access": view })))
}

async fn access_groups(State(state): State<AppState>, ApiAdmin(admin): ApiAdmin) -> Answer {
    let view = state.core.access_view(&admin).await?;
    Ok(Json(json!({ "groups": view.groups })))
}

#[derive(Deserialize)]
struct GroupBody {
    name: String,
}

async fn create_group(
    State(state): State<AppState>,
    ApiAdmin(admin): ApiAdmin,
    chorus_web::ApiJson(body): chorus_web::ApiJson<GroupBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let group = state.core.create_access_group(&admin, &body.name).await?;
    Ok((StatusCode::CREATED, Json(json!(group))))
}

#[derive(Deserialize)]
struct MembersPage {
    page: Option<u32>,
}

async fn access_group(
    State(state): State<AppState>,
    ApiAdmin(admin): ApiAdmin,
    Path(group): Path<String>,
    Query(page): Query<MembersPage>,
) -> Answer {
    let detail = state
        .core
        .access_group(&admin, &group, page.page.unwrap_or(0))
        .await?;
    Ok(Json(json!(detail)))
}

async fn delete_group(
    State(state): State<AppState>,
    ApiAdmin(admin): ApiAdmin,
    Path(group): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.core.delete_access_group(&admin, &group).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct GroupListBody {
    #[serde(default)]
    names: Vec<String>,
}

async fn set_group_access(
    State(state): State<AppState>,
    ApiAdmin(admin): ApiAdmin,
    Path((group, resource)): Path<(String, String)>,
    chorus_web::ApiJson(body): chorus_web::ApiJson<GroupListBody>,
) -> Answer {
    let resource = parse_resource(&resource)?;
    let changed = state
        .core
        .set_group_access(&admin, &group, resource, split_names(body.names))
        .await?;
    let detail = state.core.access_group(&admin, &group, 0).await?;
    Ok(Json(json!({ "changed": changed, "group": detail })))
}

async fn set_member(
    state: &AppState,
    admin: &chorus_core::Admin,
    group: &str,
    account: &str,
    member: bool,
) -> Answer {
    let account = account_id(account)?;
    let changed = state
        .core
        .set_group_member(admin, group, &account, member)
        .await?;
    Ok(Json(json!({ "changed": changed, "member": member })))
}

async fn add_member(
    State(state): State<AppState>,
    ApiAdmin(admin): ApiAdmin,
    Path((group, account)): Path<(String, String)>,
) -> Answer {
    set_member(&state, &admin, &group, &account, true).await
}

async fn remove_member(
    State(state): State<AppState>,
    ApiAdmin(admin): ApiAdmin,
    Path((group, account)): Path<(String, String)>,
) -> Answer {
    set_member(&state, &admin, &group, &account, false).await
}

async fn overview(State(state): State<AppState>, ApiAdmin(admin): ApiAdmin) -> Answer {
    Ok(Json(json!(state.core.overview(&admin).await?)))
}

async fn accounts(
    State(state): State<AppState>,
    ApiAdmin(admin): ApiAdmin,
    Query(q): Query<AccountsQuery>,
) -> Answer {
    let list = state
        .core
        .admin_accounts(&admin, q.q.as_deref(), q.sort()?, q.page.unwrap_or(0))
        .await?;
    Ok(Json(json!({ "accounts": list })))
}

#[derive(Deserialize)]
struct LedgerPage {
    ledger_page: Option<u32>,
}

async fn account(
    State(state): State<AppState>,
    ApiAdmin(admin): ApiAdmin,
    Path(id): Path<String>,
    Query(page): Query<LedgerPage>,
) -> Answer {
    let detail = state
        .core
        .admin_account(&admin, &account_id(&id)?, page.ledger_page.unwrap_or(0))
        .await?;
    Ok(Json(json!(detail)))
}

async fn suspend(
    State(state): State<AppState>,
    ApiAdmin(admin): ApiAdmin,
    Path(id): Path<String>,
) -> Answer {
    state
        .core
        .suspend_account(&admin, &account_id(&id)?)
        .await?;
    Ok(Json(json!({ "status": "suspended" })))
}

async fn reactivate(
    State(state): State<AppState>,
    ApiAdmin(admin): ApiAdmin,
    Path(id): Path<String>,
) -> Answer {
    state
        .core
        .reactivate_account(&admin, &account_id(&id)?)
        .await?;
    Ok(Json(json!({ "status": "active" })))
}

#[derive(Deserialize)]
struct RoleBody {
    role: String,
}

async fn set_role(
    State(state): State<AppState>,
    ApiAdmin(admin): ApiAdmin,
    Path(id): Path<String>,
    chorus_web::ApiJson(body): chorus_web::ApiJson<RoleBody>,
) -> Answer {
    let role = parse_role(&body.role)?;
    state.core.set_role(&admin, &account_id(&id)?, role).await?;
    Ok(Json(json!({ "role": role })))
}

#[derive(Deserialize)]
struct RefillBody {
    /// Credits per refill (0: never); null or absent: the `[quota]` default.
    amount: Option<f64>,
    /// Smallest interval between two refills; null or absent: the default.
    interval_secs: Option<i64>,
}

async fn set_refill(
    State(state): State<AppState>,
    ApiAdmin(admin): ApiAdmin,
    Path(id): Path<String>,
    chorus_web::ApiJson(body): chorus_web::ApiJson<RefillBody>,
) -> Answer {
    state
        .core
        .set_refill(&admin, &account_id(&id)?, body.amount, body.interval_secs)
        .await?;
    Ok(Json(json!({
        "refill_amount": body.amount,
        "refill_interval_secs": body.interval_secs,
    })))
}

async fn providers(State(state): State<AppState>, ApiAdmin(admin): ApiAdmin) -> Answer {
    Ok(Json(json!(state.core.providers_page(&admin).await?)))
}

async fn tools(State(state): State<AppState>, ApiAdmin(admin): ApiAdmin) -> Answer {
    Ok(Json(json!(state.core.tools_page(&admin).await?)))
}

async fn restart_mcp_server(
    State(state): State<AppState>,
    ApiAdmin(admin): ApiAdmin,
    Path(server): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.core.admin_restart_mcp_server(&admin, &server).await?;
    Ok(StatusCode::ACCEPTED)
}

async fn kill_execution(
    State(state): State<AppState>,
    ApiAdmin(admin): ApiAdmin,
    Path(execution): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.core.admin_kill_execution(&admin, &execution).await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize)]
struct CreditsBody {
    /// Credits; negative deducts.
    amount: f64,
    note: Option<String>,
}

async fn credits(
    State(state): State<AppState>,
    ApiAdmin(admin): ApiAdmin,
    Path(id): Path<String>,
    chorus_web::ApiJson(body): chorus_web::ApiJson<CreditsBody>,
) -> Answer {
    let balance = state
        .core
        .grant_credits(&admin, &account_id(&id)?, body.amount, body.note.as_deref())
        .await?;
    Ok(Json(json!({
        "balance": chorus_model::money::micros_to_credits(balance),
        "balance_micros": balance,
    })))
}

async fn revoke_access(
    State(state): State<AppState>,
    ApiAdmin(admin): ApiAdmin,
    Path(id): Path<String>,
) -> Answer {
    let (sessions, keys) = state.core.revoke_access(&admin, &account_id(&id)?).await?;
    Ok(Json(
        json!({ "sessions_ended": sessions, "keys_revoked": keys }),
    ))
}

async fn unlink(
    State(state): State<AppState>,
    ApiAdmin(admin): ApiAdmin,
    Path((id, identity)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state
        .core
        .admin_unlink_identity(&admin, &account_id(&id)?, &identity)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct DeleteBody {
    /// The account's name, typed to confirm.
    confirm: String,
}

async fn delete_account(
    State(state): State<AppState>,
    ApiAdmin(admin): ApiAdmin,
    Path(id): Path<String>,
    chorus_web::ApiJson(body): chorus_web::ApiJson<DeleteBody>,
) -> Result<StatusCode, ApiError> {
    state
        .core
        .delete_account(&admin, &account_id(&id)?, &body.confirm)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn runs(
    State(state): State<AppState>,
    ApiAdmin(admin): ApiAdmin,
    Query(q): Query<RunsQuery>,
) -> Answer {
    let runs = match q.filter(&state.core).await? {
        Some(filter) => state.core.admin_runs(&admin, &filter).await?,
        None => Vec::new(),
    };
    Ok(Json(json!({ "runs": runs })))
}

fn run_id(raw: &str) -> Result<RunId, ApiError> {
    RunId::parse(raw).ok_or_else(|| ApiError::not_found("run"))
}

async fn run(
    State(state): State<AppState>,
    ApiAdmin(admin): ApiAdmin,
    Path(id): Path<String>,
) -> Answer {
    Ok(Json(json!(
        state.core.admin_run(&admin, &run_id(&id)?).await?
    )))
}

async fn stop_run(
    State(state): State<AppState>,
    ApiAdmin(admin): ApiAdmin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.core.admin_stop_run(&admin, &run_id(&id)?).await?;
    Ok(StatusCode::ACCEPTED)
}

async fn audit(
    State(state): State<AppState>,
    ApiAdmin(admin): ApiAdmin,
    Query(q): Query<AuditQuery>,
) -> Answer {
    let entries = state.core.audit_log(&admin, &q.filter()?).await?;
    Ok(Json(json!({ "entries": entries })))
}

async fn audit_csv(
    State(state): State<AppState>,
    ApiAdmin(admin): ApiAdmin,
    Query(q): Query<AuditQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let csv = state.core.audit_csv(&admin, &q.filter()?).await?;
    Ok(crate::headers::csv(csv))
}

async fn config(ApiAdmin(_): ApiAdmin, Extension(dump): Extension<ConfigDump>) -> Answer {
    Ok(Json(json!({ "toml": dump.0.as_ref() })))
}

#[cfg(test)]
mod tests {
    /// Every route here is documented in the web surface's openapi.json.
    #[test]
    fn openapi_documents_every_admin_route() {
        let spec: serde_json::Value =
            serde_json::from_str(include_str!("../../web/openapi.json")).unwrap();
        let paths = spec["paths"].as_object().unwrap();
        let source = include_str!("api.rs");
        let routes_fn = source.split("#[cfg(test)]").next().unwrap();
        let routed: Vec<&str> = routes_fn
            .split(".route(")
            .skip(1)
            .filter_map(|rest| rest.split('"').nth(1))
            .collect();
        assert!(routed.len() > 10);
        for route in routed {
            assert!(paths.contains_key(route), "{route} is not in openapi.json");
        }
    }
}
