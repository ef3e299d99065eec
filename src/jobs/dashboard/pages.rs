//! The dashboard's HTML. Plain forms and links only: the CSP allows no
//! inline script, and the pages need none. Every value from the database or
//! the request goes through [`escape_html`]; the page shell and its styles
//! live in `templates/dashboard/`.

use std::fmt::Write as _;

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

const LAYOUT: &str = include_str!("../../../templates/dashboard/layout.html");
const STYLE: &str = include_str!("../../../templates/dashboard/dashboard.css");

pub const STATES: [JobState; 6] = [
    JobState::Scheduled,
    JobState::Available,
    JobState::Running,
    JobState::Succeeded,
    JobState::Failed,
    JobState::Discarded,
];

/// Text made safe for HTML content and quoted attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A query-string component (`application/x-www-form-urlencoded`).
fn query_value(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The operator's part of every page: who is signed in, and their CSRF token.
pub struct Viewer<'a> {
    pub operator: &'a Operator,
    pub csrf: String,
}

impl Viewer<'_> {
    /// A one-button POST form carrying the CSRF token.
    fn button(&self, action: &str, label: &str, extra: &[(&str, &str)], class: &str) -> String {
        let mut fields = String::new();
        for (name, value) in extra {
            let _ = write!(
                fields,
                r#"<input type="hidden" name="{}" value="{}">"#,
                escape_html(name),
                escape_html(value)
            );
        }
        format!(
            r#"<form class="inline" method="post" action="{action}"><input type="hidden" name="csrf" value="{csrf}">{fields}<button type="submit" class="{class}">{label}</button></form>"#,
            action = escape_html(action),
            csrf = escape_html(&self.csrf),
            label = escape_html(label),
            class = escape_html(class),
        )
    }

    fn nav(&self) -> String {
        let mut nav = format!(
            r#"<a href="{BASE}">Overview</a><a href="{BASE}/jobs">Jobs</a><a href="{BASE}/jobs?state=failed">Failed</a><span class="who">{}</span>"#,
            escape_html(&self.operator.actor())
        );
        if self.operator.is_staff() {
            nav.push_str(&self.button(&format!("{BASE}/logout"), "Sign out", &[], ""));
        }
        nav
    }
}

/// The whole document: the layout with `title`, navigation and `body` (HTML).
pub fn document(title: &str, nav: &str, body: &str) -> String {
    let title = escape_html(title);
    // Split first, so nothing substituted is ever scanned for placeholders.
    let (head, tail) = LAYOUT.split_once("{{body}}").unwrap_or((LAYOUT, ""));
    let mut out = String::with_capacity(LAYOUT.len() + STYLE.len() + body.len());
    for (i, part) in head.split("{{").enumerate() {
        if i == 0 {
            out.push_str(part);
            continue;
        }
        let (name, rest) = part.split_once("}}").unwrap_or(("", part));
        match name {
            "title" => out.push_str(&title),
            "style" => out.push_str(STYLE),
            "nav" => out.push_str(nav),
            _ => {}
        }
        out.push_str(rest);
    }
    out.push_str(body);
    out.push_str(tail);
    out
}

pub fn html(status: StatusCode, document: String) -> Response {
    let mut response = (status, Html(document)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `303 See Other`: after a form, the browser GETs `location`.
pub fn redirect(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// A short page explaining an error or an outcome.
pub fn message(status: StatusCode, title: &str, text: &str) -> Response {
    let body = format!(
        r#"<p>{}</p><p><a href="{BASE}">Back to the queues</a></p>"#,
        escape_html(text)
    );
    html(status, document(title, "", &body))
}

fn when(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(
        || "—".to_owned(),
        |t| escape_html(&t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string()),
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

fn state_badge(state: JobState) -> String {
    format!(
        r#"<span class="state state-{0}">{0}</span>"#,
        state.as_str()
    )
}

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

pub fn overview(viewer: &Viewer<'_>, stats: &[QueueStats]) -> Response {
    let mut body = String::from(r#"<table id="queues"><thead><tr><th>Queue</th>"#);
    for state in STATES {
        let _ = write!(body, r#"<th class="num">{}</th>"#, state.as_str());
    }
    body.push_str(r#"<th class="num">succeeded / last min</th><th class="num">oldest waiting</th><th>Status</th><th></th></tr></thead><tbody>"#);
    for queue in stats {
        let name = queue.queue.as_str();
        let _ = write!(
            body,
            r#"<tr data-queue="{name}"><td><a href="{}">{name}</a></td>"#,
            list_link(Some(queue.queue), None, None)
        );
        for state in STATES {
            let count = queue.counts.get(state.as_str()).copied().unwrap_or(0);
            let _ = write!(
                body,
                r#"<td class="num"><a href="{}">{count}</a></td>"#,
                list_link(Some(queue.queue), None, Some(state))
            );
        }
        let (status, action, label) = if queue.paused {
            (r#"<span class="paused">paused</span>"#, "resume", "Resume")
        } else {
            ("running", "pause", "Pause")
        };
        let _ = write!(
            body,
            r#"<td class="num">{}</td><td class="num">{}</td><td>{status}</td><td>{}</td></tr>"#,
            queue.succeeded_last_minute,
            age(queue.oldest_waiting_seconds),
            viewer.button(&format!("{BASE}/queues/{name}/{action}"), label, &[], "")
        );
    }
    body.push_str("</tbody></table>");
    html(StatusCode::OK, document("Queues", &viewer.nav(), &body))
}

pub fn job_list(viewer: &Viewer<'_>, filter: &JobFilter, page: &Page<JobView>) -> Response {
    let mut body =
        String::from(r#"<form class="filters" method="get" action="/admin/queues/jobs">"#);
    body.push_str(r#"<label>Queue<select name="queue"><option value="">any</option>"#);
    for queue in Queue::ALL {
        let selected = if filter.queue == Some(queue) {
            " selected"
        } else {
            ""
        };
        let _ = write!(body, r#"<option{selected}>{}</option>"#, queue.as_str());
    }
    body.push_str(
        r#"</select></label><label>State<select name="state"><option value="">any</option>"#,
    );
    for state in STATES {
        let selected = if filter.state == Some(state) {
            " selected"
        } else {
            ""
        };
        let _ = write!(body, r#"<option{selected}>{}</option>"#, state.as_str());
    }
    let _ = write!(
        body,
        r#"</select></label><label>Kind<input name="kind" value="{}" maxlength="64"></label><button type="submit">Filter</button></form>"#,
        escape_html(filter.kind.as_deref().unwrap_or_default())
    );

    // "Retry all failed of this kind": for the filtered kind, or each kind
    // with a failed job on this page.
    let mut kinds: Vec<&str> = filter.kind.as_deref().into_iter().collect();
    for job in &page.items {
        if job.state == JobState::Failed && !kinds.contains(&job.kind.as_str()) {
            kinds.push(&job.kind);
        }
    }
    if !kinds.is_empty() {
        body.push_str(r#"<div class="actions">"#);
        for kind in kinds {
            body.push_str(&viewer.button(
                &format!("{BASE}/retry-failed"),
                &format!("Retry all failed {kind}"),
                &[("kind", kind)],
                "",
            ));
        }
        body.push_str("</div>");
    }

    if page.items.is_empty() {
        body.push_str(r#"<p class="muted">No jobs match.</p>"#);
    } else {
        body.push_str(r#"<table id="jobs"><thead><tr><th>Job</th><th>Queue</th><th>Kind</th><th>State</th><th class="num">Attempt</th><th>Created</th><th>Last error</th></tr></thead><tbody>"#);
        for job in &page.items {
            let error: String = job
                .last_error
                .as_deref()
                .unwrap_or_default()
                .chars()
                .take(120)
                .collect();
            let _ = write!(
                body,
                r#"<tr data-job="{id}"><td><a href="{BASE}/jobs/{id}">{id}</a></td><td>{queue}</td><td>{kind}</td><td>{state}</td><td class="num">{attempt}/{max}</td><td>{created}</td><td>{error}</td></tr>"#,
                id = job.id,
                queue = escape_html(&job.queue),
                kind = escape_html(&job.kind),
                state = state_badge(job.state),
                attempt = job.attempt,
                max = job.max_attempts,
                created = when(Some(job.created_at)),
                error = escape_html(&error),
            );
        }
        body.push_str("</tbody></table>");
    }
    if let Some(cursor) = &page.next_cursor {
        let base = list_link(filter.queue, filter.kind.as_deref(), filter.state);
        let separator = if base.contains('?') { '&' } else { '?' };
        let _ = write!(
            body,
            r#"<p><a rel="next" href="{}">Older jobs →</a></p>"#,
            escape_html(&format!("{base}{separator}cursor={}", query_value(cursor)))
        );
    }
    html(StatusCode::OK, document("Jobs", &viewer.nav(), &body))
}

pub fn job_page(viewer: &Viewer<'_>, job: &JobView) -> Response {
    let payload = serde_json::to_string_pretty(&job.payload).unwrap_or_default();
    let optional = |v: Option<&str>| v.map_or_else(|| "—".to_owned(), escape_html);
    let mut body = format!(
        r#"<dl>
<dt>State</dt><dd id="job-state" class="state state-{state}">{state}</dd>
<dt>Id</dt><dd id="job-id">{id}</dd>
<dt>Queue</dt><dd>{queue}</dd>
<dt>Kind</dt><dd>{kind}</dd>
<dt>Attempt</dt><dd>{attempt} of {max}</dd>
<dt>Priority</dt><dd>{priority}</dd>
<dt>Correlation id</dt><dd>{correlation}</dd>
<dt>Unique key</dt><dd>{unique}</dd>
<dt>Created</dt><dd>{created}</dd>
<dt>Runs at</dt><dd>{run_at}</dd>
<dt>Started</dt><dd>{started}</dd>
<dt>Finished</dt><dd>{finished}</dd>
<dt>Lease</dt><dd>{lease}</dd>
</dl>"#,
        state = job.state.as_str(),
        id = job.id,
        queue = escape_html(&job.queue),
        kind = escape_html(&job.kind),
        attempt = job.attempt,
        max = job.max_attempts,
        priority = job.priority,
        correlation = optional(job.correlation_id.as_deref()),
        unique = optional(job.unique_key.as_deref()),
        created = when(Some(job.created_at)),
        run_at = when(Some(job.run_at)),
        started = when(job.started_at),
        finished = when(job.finished_at),
        lease = job.lease_owner.map_or_else(
            || "—".to_owned(),
            |owner| format!("{owner} until {}", when(job.lease_expires_at))
        ),
    );

    let id = job.id.to_string();
    let mut actions = String::new();
    if matches!(job.state, JobState::Failed | JobState::Discarded) {
        actions.push_str(&viewer.button(&format!("{BASE}/jobs/{id}/retry"), "Retry", &[], ""));
    }
    if matches!(
        job.state,
        JobState::Scheduled | JobState::Available | JobState::Failed
    ) {
        actions.push_str(&viewer.button(
            &format!("{BASE}/jobs/{id}/discard"),
            "Discard",
            &[],
            "danger",
        ));
    }
    if !actions.is_empty() {
        let _ = write!(body, r#"<div class="actions">{actions}</div>"#);
    }

    let _ = write!(
        body,
        r#"<h2>Payload</h2><pre id="payload">{}</pre>"#,
        escape_html(&payload)
    );
    body.push_str("<h2>Error history</h2>");
    let errors = job.errors.as_array().map(Vec::as_slice).unwrap_or_default();
    if errors.is_empty() {
        body.push_str(r#"<p class="muted">No errors.</p>"#);
    } else {
        body.push_str(r#"<table id="errors"><thead><tr><th class="num">Attempt</th><th>At</th><th>Error</th></tr></thead><tbody>"#);
        for entry in errors {
            let text = |key: &str| match &entry[key] {
                serde_json::Value::String(s) => escape_html(s),
                serde_json::Value::Null => "—".to_owned(),
                other => escape_html(&other.to_string()),
            };
            let _ = write!(
                body,
                "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
                text("attempt"),
                text("at"),
                text("error")
            );
        }
        body.push_str("</tbody></table>");
    }
    let _ = write!(
        body,
        r#"<p><a href="{}">All {} jobs</a></p>"#,
        escape_html(&list_link(None, Some(&job.kind), None)),
        escape_html(&job.kind)
    );
    html(
        StatusCode::OK,
        document(&format!("Job {}", job.kind), &viewer.nav(), &body),
    )
}

pub fn login_form(status: StatusCode, error: Option<&str>, email: &str) -> Response {
    let error = error.map_or_else(String::new, |e| {
        format!(r#"<p class="error" role="alert">{}</p>"#, escape_html(e))
    });
    let body = format!(
        r#"{error}<form class="login" method="post" action="{BASE}/login">
<label>Email<input type="email" name="email" value="{email}" autocomplete="username" required></label>
<label>Password<input type="password" name="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button>
</form>
<p class="muted">Admins sign in with their account; operators may also use the dashboard's HTTP Basic credentials.</p>"#,
        email = escape_html(email)
    );
    html(status, document("Sign in", "", &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_quotes_are_escaped() {
        assert_eq!(
            escape_html(r#"<script>alert("x" & 'y')</script>"#),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
    }

    #[test]
    fn the_layout_places_title_nav_and_body_without_rescanning_them() {
        let page = document("<T>", "<nav-html>", "{{title}} body");
        assert!(page.contains("<title>&lt;T&gt; · Dispatch queues</title>"));
        assert!(page.contains("<nav><nav-html></nav>"));
        assert!(
            page.contains("{{title}} body"),
            "the body is not a template"
        );
        assert!(!page.contains("{{style}}"));
    }
}
