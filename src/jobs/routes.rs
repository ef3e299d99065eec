//! `/api/v1/admin/jobs`: the queue dashboard's data and actions as JSON.
//! Admins only; every action is logged with the acting user.

use axum::{Json, extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use validator::Validate;

use super::{
    Queue,
    admin::{self, ActionError, JobFilter, JobView, QueueStats},
    model::job::JobState,
};
use crate::{
    auth::extract::AuthUser,
    http::{
        error::{ApiError, Problem},
        extract::{Path, ValidJson, ValidQuery},
        pagination::{Page, PageRequest},
    },
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_queues))
        .routes(routes!(pause_queue))
        .routes(routes!(resume_queue))
        .routes(routes!(list_jobs))
        .routes(routes!(get_job))
        .routes(routes!(retry_job))
        .routes(routes!(discard_job))
        .routes(routes!(retry_failed))
}

impl From<ActionError> for ApiError {
    fn from(err: ActionError) -> Self {
        match err {
            ActionError::NotFound => ApiError::not_found(),
            ActionError::WrongState(state) => {
                ApiError::new(StatusCode::CONFLICT, "job_state_conflict")
                    .with("state", state.as_str())
            }
            ActionError::Database(e) => ApiError::internal(&e),
        }
    }
}

/// The job as it stands now, or 404.
async fn job_view(state: &AppState, id: Uuid) -> Result<Json<JobView>, ApiError> {
    admin::find(state.db.conn(), id)
        .await?
        .map(Json)
        .ok_or_else(ApiError::not_found)
}

fn actor_name(actor: &AuthUser) -> String {
    format!("user:{}", actor.id)
}

/// Every queue with its counts by state, oldest waiting job and throughput.
#[utoipa::path(
    get, path = "/api/v1/admin/jobs/queues", tag = "admin jobs",
    security(("bearer" = [])),
    responses(
        (status = 200, body = Vec<QueueStats>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_queues(
    State(state): State<AppState>,
    actor: AuthUser,
) -> Result<Json<Vec<QueueStats>>, ApiError> {
    actor.require_admin()?;
    Ok(Json(admin::queue_stats(state.db.conn()).await?))
}

fn parse_queue(name: &str) -> Result<Queue, ApiError> {
    Queue::parse(name).ok_or_else(ApiError::not_found)
}

/// Stops workers from claiming this queue's jobs (running ones finish).
#[utoipa::path(
    post, path = "/api/v1/admin/jobs/queues/{queue}/pause", tag = "admin jobs",
    security(("bearer" = [])),
    params(("queue" = String, Path, description = "orders, payments, notifications or maintenance")),
    responses(
        (status = 204, description = "Paused"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such queue", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn pause_queue(
    State(state): State<AppState>,
    actor: AuthUser,
    Path(queue): Path<String>,
) -> Result<StatusCode, ApiError> {
    actor.require_admin()?;
    admin::set_paused(&state.db, parse_queue(&queue)?, true, &actor_name(&actor)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lets workers claim this queue's jobs again.
#[utoipa::path(
    post, path = "/api/v1/admin/jobs/queues/{queue}/resume", tag = "admin jobs",
    security(("bearer" = [])),
    params(("queue" = String, Path, description = "orders, payments, notifications or maintenance")),
    responses(
        (status = 204, description = "Resumed"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such queue", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn resume_queue(
    State(state): State<AppState>,
    actor: AuthUser,
    Path(queue): Path<String>,
) -> Result<StatusCode, ApiError> {
    actor.require_admin()?;
    admin::set_paused(&state.db, parse_queue(&queue)?, false, &actor_name(&actor)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct JobListQuery {
    pub queue: Option<Queue>,
    #[validate(length(min = 1, max = 64, code = "length"))]
    #[param(min_length = 1, max_length = 64)]
    pub kind: Option<String>,
    pub state: Option<JobState>,
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
    pub cursor: Option<String>,
}

/// Jobs, newest first, filtered by queue, kind and state.
#[utoipa::path(
    get, path = "/api/v1/admin/jobs", tag = "admin jobs",
    security(("bearer" = [])),
    params(JobListQuery),
    responses(
        (status = 200, body = Page<JobView>),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_jobs(
    State(state): State<AppState>,
    actor: AuthUser,
    ValidQuery(query): ValidQuery<JobListQuery>,
) -> Result<Json<Page<JobView>>, ApiError> {
    actor.require_admin()?;
    let page = PageRequest::parse(query.limit, query.cursor.as_deref())?;
    let filter = JobFilter {
        queue: query.queue,
        kind: query.kind,
        state: query.state,
    };
    Ok(Json(admin::list(state.db.conn(), &filter, &page).await?))
}

/// One job with its payload, attempts, error history and correlation id.
#[utoipa::path(
    get, path = "/api/v1/admin/jobs/{id}", tag = "admin jobs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = JobView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_job(
    State(state): State<AppState>,
    actor: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<JobView>, ApiError> {
    actor.require_admin()?;
    job_view(&state, id).await
}

/// Runs a failed or discarded job again, with fresh attempts.
#[utoipa::path(
    post, path = "/api/v1/admin/jobs/{id}/retry", tag = "admin jobs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = JobView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job is not failed or discarded", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn retry_job(
    State(state): State<AppState>,
    actor: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<JobView>, ApiError> {
    actor.require_admin()?;
    admin::retry(&state.db, id, &actor_name(&actor)).await?;
    job_view(&state, id).await
}

/// Gives up on a waiting or failed job.
#[utoipa::path(
    post, path = "/api/v1/admin/jobs/{id}/discard", tag = "admin jobs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = JobView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job is running or finished", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn discard_job(
    State(state): State<AppState>,
    actor: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<JobView>, ApiError> {
    actor.require_admin()?;
    admin::discard(&state.db, id, &actor_name(&actor)).await?;
    job_view(&state, id).await
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RetryFailedRequest {
    #[validate(length(min = 1, max = 64, code = "length"))]
    #[schema(min_length = 1, max_length = 64)]
    pub kind: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Retried {
    pub retried: u64,
}

/// Retries every failed job of one kind.
#[utoipa::path(
    post, path = "/api/v1/admin/jobs/retry-failed", tag = "admin jobs",
    security(("bearer" = [])),
    request_body = RetryFailedRequest,
    responses(
        (status = 200, body = Retried),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn retry_failed(
    State(state): State<AppState>,
    actor: AuthUser,
    ValidJson { value: body, .. }: ValidJson<RetryFailedRequest>,
) -> Result<Json<Retried>, ApiError> {
    actor.require_admin()?;
    let retried = admin::retry_failed_of_kind(&state.db, &body.kind, &actor_name(&actor)).await?;
    Ok(Json(Retried { retried }))
}
