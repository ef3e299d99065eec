//! The dashboard's HTML, rendered by askama from the templates in
//! `templates/dashboard/` (checked when the crate compiles). askama escapes
//! every value it prints (with [`HtmlEntities`]); nothing here or in the
//! templates marks a value safe. Plain forms and links only: the CSP allows
//! no inline script, and the pages need none.
//!
//! The functions here turn rows into the few strings a page shows (times,
//! ages, links); the markup is all in the templates.

use std::fmt;

use askama::Template;
use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use chrono::{DateTime, Utc};

use super::access::{BASE, Operator};
use crate::{
    http::pagination::Page,
    jobs::{
        Queue,
        admin::{JobFilter, JobView, QueueStats},
        model::job::JobState,
    },
};

pub const STATES: [JobState; 6] = [
    JobState::Scheduled,
    JobState::Available,
    JobState::Running,
    JobState::Succeeded,
    JobState::Failed,
    JobState::Discarded,
];

/// The escaper askama uses for `.html` templates (`askama.toml`).
///
/// askama's own writes numeric references (`&#60;`); this one writes the
/// named ones (`&lt;`, `&quot;`) the pages have always used, for the same
/// five characters (`& < > " '`), so text and quoted attribute values are
/// both safe. The escaping itself is `html-escape`'s.
#[derive(Debug, Clone, Copy, Default)]
pub struct HtmlEntities;

impl askama::filters::Escaper for HtmlEntities {
    fn write_escaped_str<W: fmt::Write>(&self, mut dest: W, text: &str) -> fmt::Result {
        dest.write_str(&html_escape::encode_quoted_attribute(text))
    }
}

/// The operator's part of every page: who is signed in, and their CSRF token.
pub struct Viewer<'a> {
    pub operator: &'a Operator,
    pub csrf: String,
}

/// A rendered page with `Cache-Control: no-store` (pages show live state
/// and carry a CSRF token).
fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(document) => {
            let mut response = (status, Html(document)).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        // Only a failing `Display` of a value could get here.
        Err(e) => {
            tracing::error!(error = %e, "dashboard: rendering a page failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// `303 See Other`: after a form, the browser GETs `location`.
pub fn redirect(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

#[derive(Template)]
#[template(path = "dashboard/message.html")]
struct MessagePage<'a> {
    title: &'a str,
    text: &'a str,
}

/// A short page explaining an error or an outcome.
pub fn message(status: StatusCode, title: &str, text: &str) -> Response {
    render(status, &MessagePage { title, text })
}

#[derive(Template)]
#[template(path = "dashboard/login.html")]
struct LoginPage<'a> {
    title: &'a str,
    error: Option<&'a str>,
    email: &'a str,
}

pub fn login_form(status: StatusCode, error: Option<&str>, email: &str) -> Response {
    let title = "Sign in";
    render(
        status,
        &LoginPage {
            title,
            error,
            email,
        },
    )
}

fn when(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(
        || "—".to_owned(),
        |t| t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string(),
    )
}

fn age(seconds: Option<f64>) -> String {
    match seconds {
        None => "—".to_owned(),
        Some(s) if s < 120.0 => format!("{s:.1} s"),
        Some(s) if s < 7200.0 => format!("{:.1} min", s / 60.0),
        Some(s) => format!("{:.1} h", s / 3600.0),
    }
}

/// The job list, filtered; query values are form-urlencoded here and the
/// whole link is escaped by the template like any other value.
fn list_link(queue: Option<Queue>, kind: Option<&str>, state: Option<JobState>) -> String {
    let mut params = Vec::new();
    if let Some(q) = queue {
        params.push(format!("queue={}", q.as_str()));
    }
    if let Some(k) = kind {
        params.push(format!("kind={}", query_value(k)));
    }
    if let Some(s) = state {
        params.push(format!("state={}", s.as_str()));
    }
    if params.is_empty() {
        format!("{BASE}/jobs")
    } else {
        format!("{BASE}/jobs?{}", params.join("&"))
    }
}

/// A query-string component (`application/x-www-form-urlencoded`).
fn query_value(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// One row of the overview.
struct QueueRow {
    name: &'static str,
    link: String,
    /// Per state in [`STATES`]: the filtered list and the count.
    counts: Vec<(String, u64)>,
    succeeded_last_minute: u64,
    oldest_waiting: String,
    paused: bool,
}

impl QueueRow {
    /// Where the row's pause or resume button posts.
    fn action(&self, verb: &str) -> String {
        format!("{BASE}/queues/{}/{verb}", self.name)
    }
}

#[derive(Template)]
#[template(path = "dashboard/overview.html")]
struct OverviewPage<'a> {
    title: &'a str,
    viewer: &'a Viewer<'a>,
    states: [JobState; 6],
    queues: Vec<QueueRow>,
}

pub fn overview(viewer: &Viewer<'_>, stats: &[QueueStats]) -> Response {
    let queues = stats
        .iter()
        .map(|queue| QueueRow {
            name: queue.queue.as_str(),
            link: list_link(Some(queue.queue), None, None),
            counts: STATES
                .into_iter()
                .map(|state| {
                    let count = queue.counts.get(state.as_str()).copied().unwrap_or(0);
                    (list_link(Some(queue.queue), None, Some(state)), count)
                })
                .collect(),
            succeeded_last_minute: queue.succeeded_last_minute,
            oldest_waiting: age(queue.oldest_waiting_seconds),
            paused: queue.paused,
        })
        .collect();
    let page = OverviewPage {
        title: "Queues",
        viewer,
        states: STATES,
        queues,
    };
    render(StatusCode::OK, &page)
}

/// One row of the job list.
struct JobRow<'a> {
    id: String,
    queue: &'a str,
    kind: &'a str,
    state: &'static str,
    attempt: i32,
    max_attempts: i32,
    created: String,
    /// The last error's first 120 characters.
    error: String,
}

#[derive(Template)]
#[template(path = "dashboard/jobs.html")]
struct JobListPage<'a> {
    title: &'a str,
    viewer: &'a Viewer<'a>,
    queue_options: Vec<(&'static str, bool)>,
    state_options: Vec<(&'static str, bool)>,
    kind: &'a str,
    retry_kinds: Vec<&'a str>,
    rows: Vec<JobRow<'a>>,
    next: Option<String>,
}

pub fn job_list(viewer: &Viewer<'_>, filter: &JobFilter, page: &Page<JobView>) -> Response {
    // "Retry all failed of this kind": for the filtered kind, or each kind
    // with a failed job on this page.
    let mut retry_kinds: Vec<&str> = filter.kind.as_deref().into_iter().collect();
    for job in &page.items {
        if job.state == JobState::Failed && !retry_kinds.contains(&job.kind.as_str()) {
            retry_kinds.push(&job.kind);
        }
    }
    let rows = page
        .items
        .iter()
        .map(|job| JobRow {
            id: job.id.to_string(),
            queue: &job.queue,
            kind: &job.kind,
            state: job.state.as_str(),
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            created: when(Some(job.created_at)),
            error: job
                .last_error
                .as_deref()
                .unwrap_or_default()
                .chars()
                .take(120)
                .collect(),
        })
        .collect();
    let next = page.next_cursor.as_ref().map(|cursor| {
        let base = list_link(filter.queue, filter.kind.as_deref(), filter.state);
        let separator = if base.contains('?') { '&' } else { '?' };
        format!("{base}{separator}cursor={}", query_value(cursor))
    });
    let list = JobListPage {
        title: "Jobs",
        viewer,
        queue_options: Queue::ALL
            .into_iter()
            .map(|q| (q.as_str(), filter.queue == Some(q)))
            .collect(),
        state_options: STATES
            .into_iter()
            .map(|s| (s.as_str(), filter.state == Some(s)))
            .collect(),
        kind: filter.kind.as_deref().unwrap_or_default(),
        retry_kinds,
        rows,
        next,
    };
    render(StatusCode::OK, &list)
}

/// One entry of a job's error history, each field as shown.
struct ErrorRow {
    attempt: String,
    at: String,
    error: String,
}

impl ErrorRow {
    fn of(entry: &serde_json::Value) -> Self {
        let text = |key: &str| match &entry[key] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => "—".to_owned(),
            other => other.to_string(),
        };
        Self {
            attempt: text("attempt"),
            at: text("at"),
            error: text("error"),
        }
    }
}

#[derive(Template)]
#[template(path = "dashboard/job.html")]
struct JobPage<'a> {
    title: String,
    viewer: &'a Viewer<'a>,
    job: &'a JobView,
    payload: String,
    created: String,
    run_at: String,
    started: String,
    finished: String,
    lease: String,
    can_retry: bool,
    can_discard: bool,
    errors: Vec<ErrorRow>,
    kind_link: String,
}

impl JobPage<'_> {
    /// Where the job's retry or discard button posts.
    fn action(&self, verb: &str) -> String {
        format!("{BASE}/jobs/{}/{verb}", self.job.id)
    }
}

pub fn job_page(viewer: &Viewer<'_>, job: &JobView) -> Response {
    let errors = job.errors.as_array().map(Vec::as_slice).unwrap_or_default();
    let page = JobPage {
        title: format!("Job {}", job.kind),
        viewer,
        job,
        payload: serde_json::to_string_pretty(&job.payload).unwrap_or_default(),
        created: when(Some(job.created_at)),
        run_at: when(Some(job.run_at)),
        started: when(job.started_at),
        finished: when(job.finished_at),
        lease: job.lease_owner.map_or_else(
            || "—".to_owned(),
            |owner| format!("{owner} until {}", when(job.lease_expires_at)),
        ),
        can_retry: matches!(job.state, JobState::Failed | JobState::Discarded),
        can_discard: matches!(
            job.state,
            JobState::Scheduled | JobState::Available | JobState::Failed
        ),
        errors: errors.iter().map(ErrorRow::of).collect(),
        kind_link: list_link(None, Some(&job.kind), None),
    };
    render(StatusCode::OK, &page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_quotes_in_values_are_escaped() {
        let page = MessagePage {
            title: "<T>",
            text: r#"<script>alert("x" & 'y')</script>"#,
        }
        .render()
        .unwrap();
        assert!(page.contains("<title>&lt;T&gt; · Dispatch queues</title>"));
        assert!(page.contains("<h1>&lt;T&gt;</h1>"));
        assert!(page.contains(
            "<p>&lt;script&gt;alert(&quot;x&quot; &amp; &#x27;y&#x27;)&lt;/script&gt;</p>"
        ));
        assert!(!page.contains("<script"));
    }

    #[test]
    fn the_layout_carries_the_styles_and_no_script() {
        let page = MessagePage {
            title: "{{ title }}",
            text: "{% body %}",
        }
        .render()
        .unwrap();
        assert!(page.contains("<style>") && page.contains(".state-failed"));
        assert!(
            page.contains("<h1>{{ title }}</h1>"),
            "values are not templates"
        );
        assert!(page.contains("<p>{% body %}</p>"));
        assert!(!page.contains("<script"));
    }
}
