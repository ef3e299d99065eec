//! The queue dashboard at `/admin/queues`: access (Basic and staff login),
//! CSRF, the operator actions, escaping, and a real browser driving it.

use std::{collections::HashSet, time::Duration};

use async_trait::async_trait;
use dispatch::{
    db::Database,
    jobs::{
        self, Enqueued, Job, JobContext, JobError, JobOptions, NewJob, Queue, admin,
        model::job::{Entity as Jobs, JobState, Model as JobRow},
        registry::JobServices,
        worker::{WorkerPool, WorkerSettings},
    },
    users::role::Role,
};
use reqwest::{RequestBuilder, Response};
use sea_orm::EntityTrait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::helpers::{TestApp, eventually, spawn_app, spawn_app_with};

const WAIT: Duration = Duration::from_secs(60);

/// Fails for good until its switch is flipped, then succeeds: a job an
/// operator retries after fixing its cause.
#[derive(Debug, Serialize, Deserialize)]
struct BrokenUntilFixed {
    switch: Uuid,
}

static FIXED: std::sync::LazyLock<std::sync::RwLock<HashSet<Uuid>>> =
    std::sync::LazyLock::new(Default::default);

#[async_trait]
impl Job for BrokenUntilFixed {
    const KIND: &'static str = "test.dashboard_broken_until_fixed";
    const QUEUE: Queue = Queue::Orders;

    async fn run(&self, _ctx: &JobContext) -> Result<(), JobError> {
        if FIXED.read().unwrap().contains(&self.switch) {
            Ok(())
        } else {
            Err(JobError::permanent(
                "the downstream service is misconfigured",
            ))
        }
    }
}

fn fast_jobs() -> [(&'static str, &'static str); 2] {
    [("JOB_LEASE", "1s"), ("JOB_POLL_INTERVAL", "200ms")]
}

fn start_pool(app: &TestApp) -> WorkerPool {
    let mut settings = WorkerSettings::from_config(&app.state.config);
    for queue in Queue::ALL {
        settings.concurrency.insert(queue, 2);
    }
    WorkerPool::start(
        JobServices::from_state(&app.state),
        dispatch::startup::job_registry().with::<BrokenUntilFixed>(),
        settings,
    )
}

async fn enqueue_one(db: &Database, job: NewJob) -> Uuid {
    let txn = db.begin_write().await.unwrap();
    let Enqueued::Inserted(id) = jobs::enqueue(&txn, job).await.unwrap() else {
        panic!("expected a new job");
    };
    txn.commit().await.unwrap();
    id
}

async fn job(db: &Database, id: Uuid) -> JobRow {
    Jobs::find_by_id(id)
        .one(db.conn())
        .await
        .unwrap()
        .expect("job row")
}

async fn wait_for_state(db: &Database, id: Uuid, state: JobState) -> JobRow {
    eventually(&format!("job {id} to be {state:?}"), WAIT, || async {
        job(db, id).await.state == state
    })
    .await;
    job(db, id).await
}

/// A job no worker knows (no pool runs in most tests): it stays available.
fn inert_job(payload: serde_json::Value) -> NewJob {
    NewJob {
        kind: "test.dashboard_inert",
        queue: Queue::Notifications,
        payload,
        options: JobOptions::default(),
        unique_key: None,
        run_at: None,
    }
}

async fn paused(app: &TestApp, queue: Queue) -> bool {
    admin::queue_stats(app.state.db.conn())
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.queue == queue)
        .unwrap()
        .paused
}

impl TestApp {
    fn basic(&self, builder: RequestBuilder) -> RequestBuilder {
        builder.basic_auth(
            &self.state.config.admin_username,
            Some("dashboard-password"),
        )
    }
}

/// The CSRF token of the forms on a page.
fn csrf_of(html: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = html.find(marker).expect("a form with a CSRF token") + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

async fn page(response: Response) -> String {
    assert_eq!(response.status(), 200, "expected a page");
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    response.text().await.unwrap()
}

/// Signs an admin in through the login form; returns the `Cookie` header value.
async fn sign_in(app: &TestApp, email: &str, password: &str) -> String {
    let response = app
        .post("/admin/queues/login")
        .form(&[("email", email), ("password", password)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303, "sign-in should redirect");
    assert_eq!(response.headers()["location"], "/admin/queues");
    let set_cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/admin/queues"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    set_cookie.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn an_anonymous_browser_is_sent_to_the_login_page_and_bad_credentials_are_refused() {
    let app = spawn_app().await;
    let response = app.get("/admin/queues").send().await.unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/admin/queues/login");
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Basic "), "{challenge}");

    let login = app.get("/admin/queues/login").send().await.unwrap();
    let csp = login.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'") && csp.contains("form-action 'self'"));
    assert!(
        page(login)
            .await
            .contains(r#"action="/admin/queues/login""#)
    );

    let wrong = app
        .get("/admin/queues/jobs")
        .basic_auth(&app.state.config.admin_username, Some("not-the-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().contains_key("www-authenticate"));

    let forged = app
        .get("/admin/queues")
        .header("cookie", "dispatch_dashboard=not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    let post = app
        .post("/admin/queues/queues/orders/pause")
        .form(&[("csrf", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 401);
    assert!(!paused(&app, Queue::Orders).await);
}

#[tokio::test]
async fn the_dashboard_credentials_open_every_page_over_basic() {
    let app = spawn_app().await;
    let id = enqueue_one(&app.state.db, inert_job(serde_json::json!({"n": 1}))).await;

    let overview = page(app.basic(app.get("/admin/queues")).send().await.unwrap()).await;
    for queue in Queue::ALL {
        assert!(overview.contains(&format!(r#"data-queue="{}""#, queue.as_str())));
    }
    assert!(
        overview.contains("dashboard:basic:"),
        "the operator is named"
    );
    assert!(!overview.contains("<script"), "no scripts at all");

    let list = page(
        app.basic(app.get("/admin/queues/jobs?queue=notifications&state=available&kind="))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(list.contains(&format!(r#"data-job="{id}""#)));
    let other = page(
        app.basic(app.get("/admin/queues/jobs?queue=orders"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        !other.contains(&format!(r#"data-job="{id}""#)),
        "filtered by queue"
    );

    let detail = page(
        app.basic(app.get(&format!("/admin/queues/jobs/{id}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(detail.contains(r#"<dd id="job-state" class="state state-available">available</dd>"#));
    assert!(detail.contains("Discard") && !detail.contains(">Retry<"));

    let missing = app
        .basic(app.get(&format!("/admin/queues/jobs/{}", Uuid::new_v4())))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let bad_filter = app
        .basic(app.get("/admin/queues/jobs?state=exploded"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_filter.status(), 400);
    app.allow_leftover_jobs();
}

#[tokio::test]
async fn the_job_list_pages_with_a_cursor() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(enqueue_one(&app.state.db, inert_job(serde_json::json!({ "n": n }))).await);
    }
    let first = page(
        app.basic(app.get("/admin/queues/jobs?limit=2"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let next = first
        .split(r#"<a rel="next" href=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a next-page link")
        .replace("&amp;", "&");
    let second = page(app.basic(app.get(&next)).send().await.unwrap()).await;
    let shown = |html: &str, id: &Uuid| html.contains(&format!(r#"data-job="{id}""#));
    for id in &ids {
        assert!(
            shown(&first, id) ^ shown(&second, id),
            "job {id} is on exactly one page"
        );
    }
    assert!(!second.contains(r#"rel="next""#));
    app.allow_leftover_jobs();
}

#[tokio::test]
async fn an_admin_signs_in_with_the_form_and_out_again_and_a_shopper_is_refused() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let cookie = sign_in(&app, &admin.email, &admin.password).await;
    let overview = page(
        app.get("/admin/queues")
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(overview.contains(&format!("user:{}", admin.id)));
    assert!(overview.contains("Sign out"));

    let wrong = app
        .post("/admin/queues/login")
        .form(&[
            ("email", admin.email.as_str()),
            ("password", "wrong password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(!wrong.headers().contains_key("set-cookie"));

    let shopper = app.register_user().await;
    let refused = app
        .post("/admin/queues/login")
        .form(&[
            ("email", shopper.email.as_str()),
            ("password", shopper.password.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert!(!refused.headers().contains_key("set-cookie"));

    // Signing out revokes the session: the same cookie no longer works.
    let csrf = csrf_of(&overview);
    let out = app
        .post("/admin/queues/logout")
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    assert!(
        out.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let after = app
        .get("/admin/queues")
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401, "a revoked session is refused");
    app.drain_jobs().await;
}

#[tokio::test]
async fn a_post_without_a_valid_csrf_token_or_from_another_site_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let id = enqueue_one(&app.state.db, inert_job(serde_json::json!({}))).await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let cookie = sign_in(&app, &admin.email, &admin.password).await;
    let overview = page(
        app.get("/admin/queues")
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let token = csrf_of(&overview);
    let basic_token =
        csrf_of(&page(app.basic(app.get("/admin/queues")).send().await.unwrap()).await);
    assert_ne!(token, basic_token, "tokens are bound to the identity");

    let discard = format!("/admin/queues/jobs/{id}/discard");
    let attempts: Vec<(&str, RequestBuilder)> = vec![
        (
            "no token",
            app.post(&discard)
                .header("cookie", &cookie)
                .form(&[("kind", "")]),
        ),
        (
            "a forged token",
            app.post(&discard)
                .header("cookie", &cookie)
                .form(&[("csrf", "00".repeat(32))]),
        ),
        (
            "another identity's token",
            app.post(&discard)
                .header("cookie", &cookie)
                .form(&[("csrf", basic_token.as_str())]),
        ),
        (
            "a cross-site origin",
            app.post(&discard)
                .header("cookie", &cookie)
                .header("origin", "https://evil.example")
                .form(&[("csrf", token.as_str())]),
        ),
        (
            "a cross-site fetch",
            app.basic(app.post("/admin/queues/queues/orders/pause"))
                .header("sec-fetch-site", "cross-site")
                .form(&[("csrf", basic_token.as_str())]),
        ),
        (
            "Basic without a token",
            app.basic(app.post("/admin/queues/queues/orders/pause")),
        ),
    ];
    for (what, request) in attempts {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 403, "{what}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{what}: a page, not a problem"
        );
    }
    assert_eq!(job(&app.state.db, id).await.state, JobState::Available);
    assert!(!paused(&app, Queue::Orders).await);

    // The same request from our own page goes through.
    let ok = app
        .post(&discard)
        .header("cookie", &cookie)
        .header("origin", app.address.as_str())
        .header("sec-fetch-site", "same-origin")
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 303);
    assert_eq!(job(&app.state.db, id).await.state, JobState::Discarded);
    app.drain_jobs().await;
}

#[tokio::test]
async fn retry_retry_all_of_a_kind_discard_pause_and_resume_work_from_the_dashboard() {
    let app = spawn_app_with(&fast_jobs()).await;
    let pool = start_pool(&app);
    let switch = Uuid::new_v4();
    let first = enqueue_one(&app.state.db, NewJob::of(&BrokenUntilFixed { switch })).await;
    let second = enqueue_one(&app.state.db, NewJob::of(&BrokenUntilFixed { switch })).await;
    let third = enqueue_one(&app.state.db, NewJob::of(&BrokenUntilFixed { switch })).await;
    for id in [first, second, third] {
        wait_for_state(&app.state.db, id, JobState::Failed).await;
    }
    let token = csrf_of(&page(app.basic(app.get("/admin/queues")).send().await.unwrap()).await);
    let post = |path: String, fields: Vec<(&'static str, String)>| {
        let mut fields = fields;
        fields.push(("csrf", token.clone()));
        app.basic(app.post(&path)).form(&fields).send()
    };

    // Discard one failed job; it is never run again.
    let response = post(format!("/admin/queues/jobs/{third}/discard"), vec![])
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()["location"],
        format!("/admin/queues/jobs/{third}").as_str()
    );
    assert_eq!(job(&app.state.db, third).await.state, JobState::Discarded);

    // The list offers "retry all failed of this kind".
    let list = page(
        app.basic(app.get("/admin/queues/jobs?state=failed"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(list.contains(&format!("Retry all failed {}", BrokenUntilFixed::KIND)));

    FIXED.write().unwrap().insert(switch);
    let response = post(format!("/admin/queues/jobs/{first}/retry"), vec![])
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let done = wait_for_state(&app.state.db, first, JobState::Succeeded).await;
    assert_eq!(done.attempt, 1, "attempts start afresh");
    let again = post(format!("/admin/queues/jobs/{first}/retry"), vec![])
        .await
        .unwrap();
    assert_eq!(again.status(), 409, "a succeeded job cannot be retried");

    let response = post(
        "/admin/queues/retry-failed".into(),
        vec![("kind", BrokenUntilFixed::KIND.to_owned())],
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 303);
    wait_for_state(&app.state.db, second, JobState::Succeeded).await;
    assert_eq!(
        job(&app.state.db, third).await.state,
        JobState::Discarded,
        "discarded jobs are not failed ones"
    );

    // Pause: a new job waits; resume: it runs.
    let response = post("/admin/queues/queues/orders/pause".into(), vec![])
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/admin/queues");
    assert!(paused(&app, Queue::Orders).await);
    let overview = page(app.basic(app.get("/admin/queues")).send().await.unwrap()).await;
    assert!(overview.contains("/admin/queues/queues/orders/resume"));
    let response = post("/admin/queues/queues/orders/resume".into(), vec![])
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert!(!paused(&app, Queue::Orders).await);
    let fourth = enqueue_one(&app.state.db, NewJob::of(&BrokenUntilFixed { switch })).await;
    wait_for_state(&app.state.db, fourth, JobState::Succeeded).await;
    pool.shutdown().await;
}

#[tokio::test]
async fn every_rendered_value_is_html_escaped() {
    let app = spawn_app().await;
    let evil = r#"</pre><script>alert("owned")</script>"#;
    let mut job = inert_job(serde_json::json!({ "note": evil }));
    job.unique_key = Some(format!("key-{evil}"));
    let id = enqueue_one(&app.state.db, job).await;

    let detail = page(
        app.basic(app.get(&format!("/admin/queues/jobs/{id}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(!detail.contains("<script"), "{detail}");
    assert!(detail.contains("&lt;/pre&gt;&lt;script&gt;alert("));
    assert!(detail.contains("key-&lt;/pre&gt;"));

    let list = page(
        app.basic(app.get("/admin/queues/jobs?kind=%22%3E%3Cscript%3Ex%3C%2Fscript%3E"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(!list.contains("<script"), "{list}");
    assert!(list.contains(r#"value="&quot;&gt;&lt;script&gt;x&lt;/script&gt;""#));
    app.allow_leftover_jobs();
}

/// Needs Debian's chromium and `npm ci --prefix tests/browser`, which a bare
/// Rust toolchain does not have, so it is built only with the
/// `browser-tests` feature; `.ci/run` installs both and runs it on every
/// backend.
#[cfg(feature = "browser-tests")]
#[tokio::test]
async fn a_browser_logs_in_finds_a_failed_job_retries_it_and_sees_it_succeed() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("tests/browser/queues.mjs");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "the browser test needs Debian's chromium at {chromium}: `apt-get install -y chromium` \
         (.ci/run installs it)"
    );
    assert!(
        root.join("tests/browser/node_modules/playwright-core")
            .is_dir(),
        "the browser test needs playwright-core: `npm ci --prefix tests/browser` (.ci/run runs it)"
    );

    let app = spawn_app_with(&fast_jobs()).await;
    let pool = start_pool(&app);
    let switch = Uuid::new_v4();
    let id = enqueue_one(&app.state.db, NewJob::of(&BrokenUntilFixed { switch })).await;
    wait_for_state(&app.state.db, id, JobState::Failed).await;
    FIXED.write().unwrap().insert(switch);
    let admin = app.create_user_with_role(Role::Admin).await;

    let run = tokio::process::Command::new("node")
        .arg(&script)
        .arg(&app.address)
        .arg(&admin.email)
        .arg(&admin.password)
        .arg(id.to_string())
        .env("CHROMIUM", &chromium)
        .current_dir(root)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the browser script finished within 3 minutes")
        .expect("`node` runs (is Node.js installed?)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser script failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    println!("browser script output:\n{stdout}");
    assert!(stdout.contains("job page shows succeeded"), "{stdout}");

    let done = job(&app.state.db, id).await;
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(done.attempt, 1, "the retry started afresh and ran once");
    assert_eq!(
        done.errors.as_array().unwrap().len(),
        1,
        "the history is kept"
    );
    pool.shutdown().await;
}
