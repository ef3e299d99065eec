//! `/admin/queues`: the server-rendered queue dashboard (docs/spec.md §5.5).
//!
//! The same views and actions as `/api/v1/admin/jobs` ([`super::routes`]),
//! through [`super::admin`], as HTML pages with plain forms. Access and CSRF
//! are in [`access`]; the pages in [`pages`] and their markup in
//! `templates/dashboard/`.
//!
//! The router carries its own timeout, body limit and panic guard because
//! `startup::router` merges it outside the problem+json layer: its errors
//! are pages for people, not problems for API clients.

pub mod access;
pub mod pages;

use axum::{
    Form, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    middleware,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use secrecy::SecretString;
use serde::Deserialize;
use tower_http::{catch_panic::CatchPanicLayer, timeout::TimeoutLayer};
use uuid::Uuid;

use self::{
    access::{BASE, Operator},
    pages::{STATES, Viewer},
};
use super::{
    Queue,
    admin::{self, ActionError, JobFilter},
};
use crate::{
    auth::{
        self, Attempt, Audience, SignInError, SignInServices, password::PasswordError, sessions,
    },
    http::{extract::ClientIp, pagination::PageRequest},
    state::AppState,
};

pub fn router(state: &AppState) -> Router<AppState> {
    let config = &state.config;
    Router::new()
        .route(BASE, get(overview))
        .route(&format!("{BASE}/login"), get(login_page).post(login))
        .route(&format!("{BASE}/logout"), post(logout))
        .route(&format!("{BASE}/jobs"), get(job_list))
        .route(&format!("{BASE}/jobs/{{id}}"), get(job_page))
        .route(&format!("{BASE}/jobs/{{id}}/retry"), post(retry))
        .route(&format!("{BASE}/jobs/{{id}}/discard"), post(discard))
        .route(&format!("{BASE}/retry-failed"), post(retry_failed))
        .route(&format!("{BASE}/queues/{{queue}}/pause"), post(pause))
        .route(&format!("{BASE}/queues/{{queue}}/resume"), post(resume))
        .layer(middleware::from_fn(access::same_origin_posts))
        .layer(DefaultBodyLimit::max(config.body_limit_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            config.request_timeout,
        ))
        .layer(CatchPanicLayer::new())
}

fn viewer<'a>(state: &AppState, operator: &'a Operator) -> Viewer<'a> {
    let csrf = operator.csrf_token(state);
    Viewer { operator, csrf }
}

fn internal(err: &dyn std::error::Error) -> Response {
    tracing::error!(error = %err, "dashboard request failed");
    pages::message(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The request failed; the cause is in the service log.",
    )
}

fn not_found() -> Response {
    pages::message(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such job or queue.",
    )
}

async fn overview(State(state): State<AppState>, operator: Operator) -> Response {
    match admin::queue_stats(state.db.conn()).await {
        Ok(stats) => pages::overview(&viewer(&state, &operator), &stats),
        Err(e) => internal(&e),
    }
}

/// The list's GET parameters; empty strings (an "any" choice) mean no filter.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    queue: Option<String>,
    kind: Option<String>,
    state: Option<String>,
    limit: Option<u64>,
    cursor: Option<String>,
}

fn parse_filter(query: &ListQuery) -> Result<JobFilter, String> {
    fn present(v: &Option<String>) -> Option<&str> {
        v.as_deref().map(str::trim).filter(|v| !v.is_empty())
    }
    let queue = match present(&query.queue) {
        Some(name) => {
            Some(Queue::parse(name).ok_or_else(|| format!("No queue is called {name:?}."))?)
        }
        None => None,
    };
    let state = match present(&query.state) {
        Some(name) => Some(
            STATES
                .into_iter()
                .find(|s| s.as_str() == name)
                .ok_or_else(|| format!("No job state is called {name:?}."))?,
        ),
        None => None,
    };
    let kind = present(&query.kind).map(str::to_owned);
    if kind.as_ref().is_some_and(|k| k.chars().count() > 64) {
        return Err("A kind has at most 64 characters.".to_owned());
    }
    Ok(JobFilter { queue, kind, state })
}

async fn job_list(
    State(state): State<AppState>,
    operator: Operator,
    Query(query): Query<ListQuery>,
) -> Response {
    let filter = match parse_filter(&query) {
        Ok(filter) => filter,
        Err(text) => return pages::message(StatusCode::BAD_REQUEST, "Bad filter", &text),
    };
    let Ok(page) = PageRequest::parse(query.limit, query.cursor.as_deref()) else {
        return pages::message(
            StatusCode::BAD_REQUEST,
            "Bad page",
            "The page cursor or size is not valid; start from the first page.",
        );
    };
    match admin::list(state.db.conn(), &filter, &page).await {
        Ok(jobs) => pages::job_list(&viewer(&state, &operator), &filter, &jobs),
        Err(e) => internal(&e),
    }
}

async fn job_page(
    State(state): State<AppState>,
    operator: Operator,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return not_found();
    };
    match admin::find(state.db.conn(), id).await {
        Ok(Some(job)) => pages::job_page(&viewer(&state, &operator), &job),
        Ok(None) => not_found(),
        Err(e) => internal(&e),
    }
}

/// The body of every action form. Read leniently (any content type, any
/// missing field): whatever arrives, the CSRF check decides, so a bare POST
/// gets the same 403 as a forged one.
#[derive(Debug, Default, Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    kind: String,
}

impl ActionForm {
    fn read(body: &Bytes) -> Self {
        serde_urlencoded::from_bytes(body).unwrap_or_default()
    }
}

/// The 403 page, unless the form carries this operator's CSRF token.
fn csrf_refusal(state: &AppState, operator: &Operator, form: &ActionForm) -> Option<Response> {
    if operator.csrf_matches(state, &form.csrf) {
        return None;
    }
    tracing::warn!(actor = %operator.actor(), "dashboard: action without a valid CSRF token refused");
    Some(pages::message(
        StatusCode::FORBIDDEN,
        "Forbidden",
        "This form has expired or did not come from the dashboard. Reload the page and try again.",
    ))
}

fn action_outcome(result: Result<(), ActionError>, back: &str) -> Response {
    match result {
        Ok(()) => pages::redirect(back),
        Err(ActionError::NotFound) => not_found(),
        Err(ActionError::WrongState(job_state)) => pages::message(
            StatusCode::CONFLICT,
            "Not possible now",
            &format!(
                "The job is {}; this action does not apply.",
                job_state.as_str()
            ),
        ),
        Err(ActionError::Database(e)) => internal(&e),
    }
}

async fn retry(
    State(state): State<AppState>,
    operator: Operator,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let form = ActionForm::read(&body);
    if let Some(page) = csrf_refusal(&state, &operator, &form) {
        return page;
    }
    let Ok(id) = Uuid::parse_str(&id) else {
        return not_found();
    };
    let result = admin::retry(&state.db, id, &operator.actor()).await;
    action_outcome(result, &format!("{BASE}/jobs/{id}"))
}

async fn discard(
    State(state): State<AppState>,
    operator: Operator,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let form = ActionForm::read(&body);
    if let Some(page) = csrf_refusal(&state, &operator, &form) {
        return page;
    }
    let Ok(id) = Uuid::parse_str(&id) else {
        return not_found();
    };
    let result = admin::discard(&state.db, id, &operator.actor()).await;
    action_outcome(result, &format!("{BASE}/jobs/{id}"))
}

async fn retry_failed(State(state): State<AppState>, operator: Operator, body: Bytes) -> Response {
    let form = ActionForm::read(&body);
    if let Some(page) = csrf_refusal(&state, &operator, &form) {
        return page;
    }
    let kind = form.kind.trim();
    if kind.is_empty() || kind.chars().count() > 64 {
        return pages::message(StatusCode::BAD_REQUEST, "Bad request", "Name one job kind.");
    }
    match admin::retry_failed_of_kind(&state.db, kind, &operator.actor()).await {
        Ok(_) => pages::redirect(&format!(
            "{BASE}/jobs?kind={}",
            form_urlencoded::byte_serialize(kind.as_bytes()).collect::<String>()
        )),
        Err(e) => internal(&e),
    }
}

async fn set_paused(
    state: &AppState,
    operator: &Operator,
    queue: &str,
    form: &ActionForm,
    paused: bool,
) -> Response {
    if let Some(page) = csrf_refusal(state, operator, form) {
        return page;
    }
    let Some(queue) = Queue::parse(queue) else {
        return not_found();
    };
    match admin::set_paused(&state.db, queue, paused, &operator.actor()).await {
        Ok(()) => pages::redirect(BASE),
        Err(e) => internal(&e),
    }
}

async fn pause(
    State(state): State<AppState>,
    operator: Operator,
    Path(queue): Path<String>,
    body: Bytes,
) -> Response {
    set_paused(&state, &operator, &queue, &ActionForm::read(&body), true).await
}

async fn resume(
    State(state): State<AppState>,
    operator: Operator,
    Path(queue): Path<String>,
    body: Bytes,
) -> Response {
    set_paused(&state, &operator, &queue, &ActionForm::read(&body), false).await
}

async fn login_page() -> Response {
    pages::login_form(StatusCode::OK, None, "")
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

/// Signs an admin in through [`auth::sign_in`], the path behind
/// `POST /api/v1/auth/login` (same throttle, same indistinguishable
/// failure), and keeps the session's access token in the dashboard cookie.
async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let refused = |status, text| pages::login_form(status, Some(text), &form.email);
    if form.email.len() > 254 || form.password.is_empty() || form.password.len() > 128 {
        return refused(StatusCode::UNAUTHORIZED, "Wrong email or password.");
    }
    let attempt = Attempt {
        email: &form.email,
        password: SecretString::from(form.password.clone()),
        ip,
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
    };
    let signed_in =
        match auth::sign_in(SignInServices::from(&*state), attempt, Audience::Dashboard).await {
            Ok(signed_in) => signed_in,
            Err(SignInError::RateLimited(_)) => {
                return refused(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many attempts; wait a minute and try again.",
                );
            }
            Err(SignInError::Password(PasswordError::Busy { .. })) => {
                return refused(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The service is busy checking passwords; try again in a few seconds.",
                );
            }
            Err(SignInError::InvalidCredentials) => {
                return refused(StatusCode::UNAUTHORIZED, "Wrong email or password.");
            }
            Err(SignInError::NotAllowed(user_id)) => {
                tracing::warn!(user.id = %user_id, "dashboard: sign-in by a non-admin refused");
                return refused(
                    StatusCode::FORBIDDEN,
                    "This account may not use the queue dashboard.",
                );
            }
            Err(e) => return internal(&e),
        };
    tracing::info!(user.id = %signed_in.user_id, session.id = %signed_in.session_id, "signed in to the queue dashboard");
    let cookie = access::session_cookie(
        &signed_in.access_token,
        state.tokens.access_ttl.as_secs(),
        state.config.is_production(),
    );
    let mut response = pages::redirect(BASE);
    if let Ok(value) = cookie.parse() {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// Ends the staff session (revoked like `POST /api/v1/auth/logout`) and
/// clears the cookie.
async fn logout(State(state): State<AppState>, operator: Operator, body: Bytes) -> Response {
    let form = ActionForm::read(&body);
    if let Some(page) = csrf_refusal(&state, &operator, &form) {
        return page;
    }
    if let Operator::Staff {
        user_id,
        session_id,
    } = operator
    {
        let revoked = async {
            let txn = state.db.begin_write().await?;
            sessions::revoke(&*txn, session_id).await?;
            txn.commit().await
        };
        if let Err(e) = revoked.await {
            return internal(&e);
        }
        state.sessions.invalidate_user(user_id).await;
        tracing::info!(user.id = %user_id, session.id = %session_id, "signed out of the queue dashboard");
    }
    let mut response = pages::redirect(&format!("{BASE}/login"));
    let cleared = access::session_cookie("", 0, state.config.is_production());
    if let Ok(value) = cleared.parse() {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response.into_response()
}
