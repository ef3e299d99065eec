//! Who may call what: every route of the API against every kind of caller.
//!
//! The table must list every operation of the OpenAPI document (a new route
//! without a row fails the test), and no answer may be a 500.

use std::collections::{BTreeSet, HashMap};

use crate::helpers::{PASSWORD, TestApp, TestUser, problem, spawn_app_with};
use dispatch::{orders::status::OrderStatus, users::role::Role};
use reqwest::Response;
use serde_json::{Value, json};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Caller {
    Anonymous,
    User,
    AnotherUser,
    Financial,
    Shipper,
    Delivery,
    Admin,
    Superadmin,
}

const CALLERS: [Caller; 8] = [
    Caller::Anonymous,
    Caller::User,
    Caller::AnotherUser,
    Caller::Financial,
    Caller::Shipper,
    Caller::Delivery,
    Caller::Admin,
    Caller::Superadmin,
];

impl Caller {
    fn role(self) -> Option<Role> {
        match self {
            Caller::Anonymous => None,
            Caller::User | Caller::AnotherUser => Some(Role::User),
            Caller::Financial => Some(Role::Financial),
            Caller::Shipper => Some(Role::Shipper),
            Caller::Delivery => Some(Role::Delivery),
            Caller::Admin => Some(Role::Admin),
            Caller::Superadmin => Some(Role::Superadmin),
        }
    }
}

/// Who a route lets in.
#[derive(Debug, Clone, Copy)]
enum Access {
    /// Anyone, signed in or not.
    Public,
    /// A valid refresh token (no access token needed).
    RefreshToken,
    /// Any signed-in account.
    SignedIn,
    /// Admins and superadmins.
    Admin,
    /// The signed-in owner of the resource; anyone else signed in gets 404.
    Owner,
    /// Any staff role.
    Staff,
    /// Staff whose role may move an order to this status.
    StaffFor(OrderStatus),
    /// The bearer of `METRICS_TOKEN` only: no account's access token will do
    /// (`operations::` tests the token itself).
    MetricsToken,
}

impl Access {
    /// The status `caller` gets from a route that answers `success` when allowed.
    fn expected(self, caller: Caller, success: u16) -> u16 {
        let role = caller.role();
        match self {
            Access::Public => success,
            Access::MetricsToken => 401,
            Access::RefreshToken | Access::SignedIn if role.is_none() => 401,
            Access::RefreshToken | Access::SignedIn => success,
            Access::Admin => match role {
                None => 401,
                Some(role) if role.is_admin() => success,
                Some(_) => 403,
            },
            Access::Owner => match caller {
                Caller::Anonymous => 401,
                Caller::User => success,
                _ => 404,
            },
            Access::Staff => match role {
                None => 401,
                Some(role) if role.is_staff() => success,
                Some(_) => 403,
            },
            Access::StaffFor(status) => match role {
                None => 401,
                Some(role) if status.staff_may_set(role) => success,
                Some(_) => 403,
            },
        }
    }
}

/// Every operation: method, path as the OpenAPI document spells it, access
/// rule and status on success.
const ROUTES: &[(&str, &str, Access, u16)] = &[
    ("GET", "/health", Access::Public, 200),
    ("GET", "/health/live", Access::Public, 200),
    ("GET", "/health/ready", Access::Public, 200),
    ("GET", "/metrics", Access::MetricsToken, 200),
    ("POST", "/api/v1/auth/login", Access::Public, 200),
    ("POST", "/api/v1/auth/refresh", Access::RefreshToken, 200),
    ("POST", "/api/v1/auth/logout", Access::SignedIn, 204),
    ("POST", "/api/v1/auth/logout-all", Access::SignedIn, 204),
    ("POST", "/api/v1/users", Access::Public, 201),
    ("GET", "/api/v1/users/me", Access::SignedIn, 200),
    ("PATCH", "/api/v1/users/me", Access::SignedIn, 200),
    ("DELETE", "/api/v1/users/me", Access::SignedIn, 204),
    ("GET", "/api/v1/users/{id}", Access::SignedIn, 200),
    ("GET", "/api/v1/admin/users", Access::Admin, 200),
    ("POST", "/api/v1/admin/users", Access::Admin, 201),
    ("GET", "/api/v1/admin/users/{id}", Access::Admin, 200),
    ("PATCH", "/api/v1/admin/users/{id}", Access::Admin, 200),
    ("DELETE", "/api/v1/admin/users/{id}", Access::Admin, 204),
    ("GET", "/api/v1/items", Access::Public, 200),
    ("GET", "/api/v1/items/{id}", Access::Public, 200),
    ("GET", "/api/v1/admin/items", Access::Admin, 200),
    ("POST", "/api/v1/admin/items", Access::Admin, 201),
    ("GET", "/api/v1/admin/items/{id}", Access::Admin, 200),
    ("PATCH", "/api/v1/admin/items/{id}", Access::Admin, 200),
    ("DELETE", "/api/v1/admin/items/{id}", Access::Admin, 204),
    ("POST", "/api/v1/orders", Access::SignedIn, 201),
    ("GET", "/api/v1/orders/me", Access::SignedIn, 200),
    ("GET", "/api/v1/orders/{id}", Access::Owner, 200),
    ("GET", "/api/v1/admin/orders", Access::Staff, 200),
    ("GET", "/api/v1/admin/orders/{id}", Access::Staff, 200),
    (
        "PATCH",
        "/api/v1/admin/orders/{id}",
        Access::StaffFor(OrderStatus::Canceled),
        202,
    ),
    ("DELETE", "/api/v1/admin/orders/{id}", Access::Admin, 204),
    (
        "PATCH",
        "/api/v1/admin/orders/{id}/ship",
        Access::StaffFor(OrderStatus::Shipped),
        200,
    ),
    (
        "PATCH",
        "/api/v1/admin/orders/{id}/deliver",
        Access::StaffFor(OrderStatus::Delivered),
        200,
    ),
    (
        "PATCH",
        "/api/v1/admin/orders/{id}/cancel",
        Access::StaffFor(OrderStatus::Canceled),
        202,
    ),
    (
        "PATCH",
        "/api/v1/admin/orders/{id}/refund",
        Access::StaffFor(OrderStatus::Refunded),
        202,
    ),
    ("POST", "/api/v1/payments/webhook", Access::Public, 200),
    ("GET", "/api/v1/notifications", Access::SignedIn, 200),
    (
        "GET",
        "/api/v1/notifications/unread/count",
        Access::SignedIn,
        200,
    ),
    (
        "GET",
        "/api/v1/notifications/has-new",
        Access::SignedIn,
        200,
    ),
    (
        "PATCH",
        "/api/v1/notifications/{id}/read",
        Access::Owner,
        200,
    ),
    (
        "PATCH",
        "/api/v1/notifications/read-all",
        Access::SignedIn,
        200,
    ),
    ("GET", "/api/v1/notifications/stream", Access::SignedIn, 200),
    ("GET", "/api/v1/admin/jobs/queues", Access::Admin, 200),
    (
        "POST",
        "/api/v1/admin/jobs/queues/{queue}/pause",
        Access::Admin,
        204,
    ),
    (
        "POST",
        "/api/v1/admin/jobs/queues/{queue}/resume",
        Access::Admin,
        204,
    ),
    ("GET", "/api/v1/admin/jobs", Access::Admin, 200),
    ("GET", "/api/v1/admin/jobs/{id}", Access::Admin, 200),
    ("POST", "/api/v1/admin/jobs/{id}/retry", Access::Admin, 200),
    (
        "POST",
        "/api/v1/admin/jobs/{id}/discard",
        Access::Admin,
        200,
    ),
    (
        "POST",
        "/api/v1/admin/jobs/retry-failed",
        Access::Admin,
        200,
    ),
];

/// Served beside the API but not part of its document.
const EXTRA_ROUTES: &[(&str, &str, Access, u16)] = &[
    ("GET", "/api/openapi.json", Access::Public, 200),
    ("GET", "/api/docs/", Access::Public, 200),
];

struct Matrix {
    app: TestApp,
    callers: HashMap<Caller, TestUser>,
    /// An admin who prepares items and targets (not one of the callers).
    setup_admin: TestUser,
    /// A shopper whose profile and account the routes with `{id}` read and change.
    target_user: TestUser,
    item_id: String,
    /// Plenty of stock, for the orders the order routes act on.
    order_item: Uuid,
}

impl Matrix {
    async fn new() -> Self {
        let app = spawn_app_with(&[("METRICS_TOKEN", "metrics-token-of-the-matrix")]).await;
        let mut callers = HashMap::new();
        for caller in CALLERS {
            if let Some(role) = caller.role() {
                callers.insert(caller, account(&app, role).await);
            }
        }
        let setup_admin = app.create_user_with_role(Role::Admin).await;
        let target_user = app.register_user().await;
        let item_id = app.create_item(&setup_admin, "Matrix item", 100, 1).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let order_item = app
            .create_item(&setup_admin, "Matrix stock", 1_000, 100_000)
            .await["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        Self {
            app,
            callers,
            setup_admin,
            target_user,
            item_id,
            order_item,
        }
    }

    /// A fresh account with the caller's role, for routes that end sessions or accounts.
    async fn fresh(&self, caller: Caller) -> Option<TestUser> {
        match caller.role() {
            Some(role) => Some(account(&self.app, role).await),
            None => None,
        }
    }

    async fn call(&self, method: &str, path: &str, caller: Caller) -> Response {
        let app = &self.app;
        let signed_in = self.callers.get(&caller);
        let mut token = signed_in.map(|u| u.access_token.clone());
        let request = match (method, path) {
            ("GET", "/health" | "/health/live" | "/health/ready" | "/metrics" | "/api/openapi.json" | "/api/docs/")
            | ("GET", "/api/v1/items" | "/api/v1/admin/items" | "/api/v1/admin/users" | "/api/v1/users/me") => {
                app.get(path)
            }
            ("POST", "/api/v1/auth/login") => {
                // Anonymous callers sign in as the target user.
                let user = signed_in.unwrap_or(&self.target_user);
                app.post(path).json(&json!({"email": user.email, "password": PASSWORD}))
            }
            ("POST", "/api/v1/auth/refresh") => {
                token = None;
                match signed_in {
                    Some(user) => {
                        let session = app.login_as(&user.email, PASSWORD, user.role).await;
                        app.post(path).json(&json!({"refreshToken": session.refresh_token}))
                    }
                    None => app.post(path),
                }
            }
            ("POST", "/api/v1/auth/logout") => {
                if let Some(user) = signed_in {
                    token = Some(app.login_as(&user.email, PASSWORD, user.role).await.access_token);
                }
                app.post(path)
            }
            ("POST", "/api/v1/auth/logout-all") => {
                token = self.fresh(caller).await.map(|u| u.access_token);
                app.post(path)
            }
            ("DELETE", "/api/v1/users/me") => {
                token = self.fresh(caller).await.map(|u| u.access_token);
                app.delete(path)
            }
            ("POST", "/api/v1/users") => app
                .post(path)
                .header("Idempotency-Key", Uuid::new_v4().to_string())
                .json(&json!({"name": "Matrix", "email": unique_email(), "password": PASSWORD})),
            ("PATCH", "/api/v1/users/me") => app.patch(path).json(&json!({"name": "Renamed"})),
            ("GET", "/api/v1/users/{id}") => app.get(&format!("/api/v1/users/{}", self.user_viewed(caller))),
            ("POST", "/api/v1/admin/users") => app
                .post(path)
                .header("Idempotency-Key", Uuid::new_v4().to_string())
                .json(&json!({"name": "Made", "email": unique_email(), "password": PASSWORD, "role": "user"})),
            ("GET", "/api/v1/admin/users/{id}") => app.get(&format!("/api/v1/admin/users/{}", self.target_user.id)),
            ("PATCH", "/api/v1/admin/users/{id}") => app
                .patch(&format!("/api/v1/admin/users/{}", self.target_user.id))
                .json(&json!({"name": "Changed by staff"})),
            ("DELETE", "/api/v1/admin/users/{id}") => {
                let victim = app.register_user().await;
                app.delete(&format!("/api/v1/admin/users/{}", victim.id))
            }
            ("GET", "/api/v1/items/{id}") => app.get(&format!("/api/v1/items/{}", self.item_id)),
            ("POST", "/api/v1/admin/items") => app
                .post(path)
                .header("Idempotency-Key", Uuid::new_v4().to_string())
                .json(&json!({"name": "Made", "price": 1, "stock": 1})),
            ("GET", "/api/v1/admin/items/{id}") => app.get(&format!("/api/v1/admin/items/{}", self.item_id)),
            ("PATCH", "/api/v1/admin/items/{id}") => {
                app.patch(&format!("/api/v1/admin/items/{}", self.item_id)).json(&json!({"stock": 9}))
            }
            ("DELETE", "/api/v1/admin/items/{id}") => {
                let doomed = app.create_item(&self.setup_admin, "Doomed", 1, 1).await;
                app.delete(&format!("/api/v1/admin/items/{}", doomed["id"].as_str().unwrap()))
            }
            ("GET", "/api/v1/admin/jobs/queues" | "/api/v1/admin/jobs") => app.get(path),
            ("POST", "/api/v1/admin/jobs/queues/{queue}/pause") => app.post("/api/v1/admin/jobs/queues/maintenance/pause"),
            ("POST", "/api/v1/admin/jobs/queues/{queue}/resume") => app.post("/api/v1/admin/jobs/queues/maintenance/resume"),
            ("GET", "/api/v1/admin/jobs/{id}") => {
                let id = self.fresh_job(false).await;
                app.get(&format!("/api/v1/admin/jobs/{id}"))
            }
            ("POST", "/api/v1/admin/jobs/{id}/retry") => {
                let id = self.fresh_job(true).await;
                app.post(&format!("/api/v1/admin/jobs/{id}/retry"))
            }
            ("POST", "/api/v1/admin/jobs/{id}/discard") => {
                let id = self.fresh_job(false).await;
                app.post(&format!("/api/v1/admin/jobs/{id}/discard"))
            }
            ("POST", "/api/v1/admin/jobs/retry-failed") => app.post(path).json(&json!({"kind": "diagnostics.probe"})),
            ("POST", "/api/v1/orders") => app
                .post(path)
                .header("Idempotency-Key", Uuid::new_v4().to_string())
                .json(&json!({"items": [{"itemId": self.order_item, "quantity": 1}]})),
            ("GET", "/api/v1/orders/me" | "/api/v1/admin/orders") => app.get(path),
            ("GET", "/api/v1/orders/{id}") => {
                let owner = &self.callers[&Caller::User];
                let id = self.order("PENDING", owner).await;
                app.get(&format!("/api/v1/orders/{id}"))
            }
            ("GET", "/api/v1/admin/orders/{id}") => {
                // DELIVERED: every staff role may see it.
                let id = self.order("DELIVERED", &self.target_user).await;
                app.get(&format!("/api/v1/admin/orders/{id}"))
            }
            ("PATCH", "/api/v1/admin/orders/{id}") => {
                let id = self.order("PENDING", &self.target_user).await;
                app.patch(&format!("/api/v1/admin/orders/{id}")).json(&json!({"status": "CANCELED"}))
            }
            ("DELETE", "/api/v1/admin/orders/{id}") => {
                let id = self.order("PENDING", &self.target_user).await;
                app.delete(&format!("/api/v1/admin/orders/{id}"))
            }
            ("PATCH", "/api/v1/admin/orders/{id}/ship") => {
                let id = self.order("PROCESSED", &self.target_user).await;
                app.patch(&format!("/api/v1/admin/orders/{id}/ship")).json(&json!({"carrier": "Post"}))
            }
            ("PATCH", "/api/v1/admin/orders/{id}/deliver") => {
                let id = self.order("SHIPPED", &self.target_user).await;
                app.patch(&format!("/api/v1/admin/orders/{id}/deliver"))
            }
            ("PATCH", "/api/v1/admin/orders/{id}/cancel") => {
                let id = self.order("PENDING", &self.target_user).await;
                app.patch(&format!("/api/v1/admin/orders/{id}/cancel")).json(&json!({}))
            }
            ("PATCH", "/api/v1/admin/orders/{id}/refund") => {
                let id = self.order("PAID", &self.target_user).await;
                app.patch(&format!("/api/v1/admin/orders/{id}/refund")).json(&json!({}))
            }
            ("GET", "/api/v1/notifications" | "/api/v1/notifications/unread/count" | "/api/v1/notifications/stream") => app.get(path),
            ("GET", "/api/v1/notifications/has-new") => app.get("/api/v1/notifications/has-new?since=2020-01-01T00:00:00Z"),
            ("PATCH", "/api/v1/notifications/read-all") => app.patch(path),
            ("PATCH", "/api/v1/notifications/{id}/read") => {
                let id = self.notification_of(&self.callers[&Caller::User]).await;
                app.patch(&format!("/api/v1/notifications/{id}/read"))
            }
            ("POST", "/api/v1/payments/webhook") => {
                token = None;
                let event = crate::helpers::intent_event("payment_intent.succeeded", "pi_unknown", &Uuid::new_v4().to_string(), 100);
                let body = event.to_string();
                let header = dispatch::payments::signature::sign(body.as_bytes(), crate::helpers::WEBHOOK_SECRET, dispatch::db::now().timestamp());
                app.post(path).header("Stripe-Signature", header).header("Content-Type", "application/json").body(body)
            }
            other => panic!("no request for {other:?}: add one"),
        };
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        request.send().await.unwrap()
    }

    /// A fresh notification of `user`, recorded as its job would.
    async fn notification_of(&self, user: &TestUser) -> Uuid {
        use dispatch::jobs::{Job, registry::JobServices};
        let id = Uuid::new_v4();
        let ctx = JobServices::from_state(&self.app.state).context(id, 1, Uuid::new_v4());
        dispatch::notifications::deliver::Deliver {
            user_id: user.id,
            event: dispatch::notifications::event::NotificationEvent::OrderShipped(
                dispatch::notifications::event::OrderSummary {
                    order_id: Uuid::new_v4(),
                    status: "SHIPPED".to_owned(),
                    total: dispatch::money::Money::new(
                        1_000,
                        dispatch::money::Currency::parse("usd").unwrap(),
                    ),
                },
            ),
        }
        .run(&ctx)
        .await
        .unwrap();
        id
    }

    /// A fresh order of `buyer` in `status`.
    async fn order(&self, status: &str, buyer: &TestUser) -> String {
        self.app
            .order_in_status(&self.setup_admin, buyer, self.order_item, status)
            .await
    }

    /// A waiting probe job (no workers run here), or a failed one.
    async fn fresh_job(&self, failed: bool) -> Uuid {
        use dispatch::jobs::{self, Enqueued, NewJob, diagnostics::Probe, model::job};
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
        let db = &self.app.state.db;
        let txn = db.begin_write().await.unwrap();
        let Enqueued::Inserted(id) = jobs::enqueue(&txn, NewJob::of(&Probe::default()))
            .await
            .unwrap()
        else {
            panic!("a probe has no unique key");
        };
        if failed {
            job::Entity::update_many()
                .col_expr(job::Column::State, Expr::value(job::JobState::Failed))
                .filter(job::Column::Id.eq(id))
                .exec(&*txn)
                .await
                .unwrap();
        }
        txn.commit().await.unwrap();
        id
    }

    /// `user` reads their own profile; everyone else reads `user`'s.
    fn user_viewed(&self, caller: Caller) -> Uuid {
        match caller {
            Caller::Anonymous | Caller::AnotherUser => self.callers[&Caller::User].id,
            _ => self
                .callers
                .get(&caller)
                .map_or(self.target_user.id, |u| u.id),
        }
    }
}

async fn account(app: &TestApp, role: Role) -> TestUser {
    match role {
        Role::User => app.register_user().await,
        other => app.create_user_with_role(other).await,
    }
}

fn unique_email() -> String {
    format!("matrix-{}@example.com", Uuid::new_v4().simple())
}

#[tokio::test]
async fn every_route_answers_every_kind_of_caller_as_its_role_allows() {
    let matrix = Matrix::new().await;

    // The table covers the whole API document.
    let document: Value = matrix
        .app
        .get("/api/openapi.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let documented: BTreeSet<(String, String)> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, operations)| {
            operations
                .as_object()
                .unwrap()
                .keys()
                .filter(|method| {
                    ["get", "post", "put", "patch", "delete"].contains(&method.as_str())
                })
                .map(|method| (method.to_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let tabled: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(method, path, _, _)| ((*method).to_owned(), (*path).to_owned()))
        .collect();
    assert_eq!(
        tabled, documented,
        "the access table and the OpenAPI document disagree"
    );

    let mut failures = Vec::new();
    for (method, path, access, success) in ROUTES.iter().chain(EXTRA_ROUTES) {
        for caller in CALLERS {
            let expected = access.expected(caller, *success);
            let response = matrix.call(method, path, caller).await;
            let status = response.status().as_u16();
            assert!(status < 500, "{method} {path} as {caller:?}: {status}");
            if status != expected {
                let text = response.text().await.unwrap_or_default();
                failures.push(format!(
                    "{method} {path} as {caller:?}: expected {expected}, got {status} {text}"
                ));
                continue;
            }
            if status >= 400 {
                if status == 401 {
                    assert_eq!(
                        response.headers()["www-authenticate"],
                        "Bearer",
                        "{method} {path}"
                    );
                }
                let body = problem(response).await;
                let code = match status {
                    401 => "unauthorized",
                    404 => "not_found",
                    _ => "forbidden",
                };
                if path != &"/api/v1/auth/refresh" {
                    assert_eq!(body["code"], code, "{method} {path} as {caller:?}");
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "access matrix failures:\n{}",
        failures.join("\n")
    );
    matrix.app.drain_jobs().await;
}

#[tokio::test]
async fn a_malformed_or_foreign_token_is_refused_on_every_signed_in_route() {
    let matrix = Matrix::new().await;
    for (method, path, access, _) in ROUTES {
        if !matches!(
            access,
            Access::SignedIn | Access::Admin | Access::Owner | Access::Staff | Access::StaffFor(_)
        ) {
            continue;
        }
        let concrete = path
            .replace("/users/{id}", &format!("/users/{}", matrix.target_user.id))
            .replace("/items/{id}", &format!("/items/{}", matrix.item_id))
            .replace("{id}", &Uuid::new_v4().to_string());
        for token in ["not-a-jwt", "eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl"] {
            let request = match *method {
                "GET" => matrix.app.get(&concrete),
                "POST" => matrix.app.post(&concrete),
                "PATCH" => matrix.app.patch(&concrete).json(&json!({})),
                "DELETE" => matrix.app.delete(&concrete),
                other => panic!("{other}"),
            };
            let response = request.bearer_auth(token).send().await.unwrap();
            assert_eq!(response.status(), 401, "{method} {path} with {token}");
            assert_eq!(problem(response).await["code"], "invalid_token");
        }
    }
    // The target survived: nothing above acted.
    let response = matrix
        .app
        .get(&format!("/api/v1/admin/users/{}", matrix.target_user.id))
        .bearer_auth(&matrix.setup_admin.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    matrix.app.drain_jobs().await;
}

#[tokio::test]
async fn a_method_a_route_does_not_serve_is_a_405_problem() {
    let matrix = Matrix::new().await;
    let paths: BTreeSet<&str> = ROUTES.iter().map(|(_, path, _, _)| *path).collect();
    for path in paths {
        let served: Vec<&str> = ROUTES
            .iter()
            .filter(|(_, p, _, _)| *p == path)
            .map(|(method, _, _, _)| *method)
            .collect();
        let concrete = path
            .replace("/users/{id}", &format!("/users/{}", matrix.target_user.id))
            .replace("/items/{id}", &format!("/items/{}", matrix.item_id))
            .replace("{id}", &Uuid::new_v4().to_string());
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if served.contains(&method) {
                continue;
            }
            let response = matrix
                .app
                .client
                .request(method.parse().unwrap(), matrix.app.url(&concrete))
                .bearer_auth(&matrix.setup_admin.access_token)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 405, "{method} {path}");
            assert_eq!(
                problem(response).await["code"],
                "method_not_allowed",
                "{method} {path}"
            );
        }
    }
    matrix.app.drain_jobs().await;
}
