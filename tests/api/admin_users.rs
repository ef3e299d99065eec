//! `/api/v1/admin/users`: account management and the level rules of docs/spec.md
//! §3.1 (superadmin 99 > admin 10 > staff 2 > user 1; only admins and
//! superadmins manage accounts, and only below their own level).

use crate::helpers::{PASSWORD, TestApp, TestUser, problem, spawn_app};
use dispatch::users::role::Role;
use reqwest::Response;
use serde_json::{Value, json};
use uuid::Uuid;

const STAFF_AND_USERS: [Role; 4] = [Role::User, Role::Financial, Role::Shipper, Role::Delivery];

/// A fresh account body for the admin API, with a unique email.
fn account(name: &str, role: &str) -> Value {
    json!({
        "name": name,
        "email": format!("{}-{}@example.com", role, Uuid::new_v4().simple()),
        "password": PASSWORD,
        "role": role,
    })
}

async fn create(app: &TestApp, actor: &TestUser, body: &Value) -> Response {
    app.post("/api/v1/admin/users")
        .bearer_auth(&actor.access_token)
        .header("Idempotency-Key", Uuid::new_v4().to_string())
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Creates an account through the API and returns its view.
async fn created(app: &TestApp, actor: &TestUser, body: &Value) -> Value {
    let response = create(app, actor, body).await;
    let status = response.status();
    let view: Value = response.json().await.unwrap();
    assert_eq!(status, 201, "{view}");
    view
}

/// GET /admin/users with a query string (without the `?`).
async fn list(app: &TestApp, actor: &TestUser, query: &str) -> Value {
    let response = app
        .get(&format!("/api/v1/admin/users?{query}"))
        .bearer_auth(&actor.access_token)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let page: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{page}");
    page
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|u| u["id"].as_str().expect("id").to_owned())
        .collect()
}

async fn get_user(app: &TestApp, actor: &TestUser, id: impl std::fmt::Display) -> Response {
    app.get(&format!("/api/v1/admin/users/{id}"))
        .bearer_auth(&actor.access_token)
        .send()
        .await
        .unwrap()
}

async fn patch_user(
    app: &TestApp,
    actor: &TestUser,
    id: impl std::fmt::Display,
    body: &Value,
) -> Response {
    app.patch(&format!("/api/v1/admin/users/{id}"))
        .bearer_auth(&actor.access_token)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn delete_user(app: &TestApp, actor: &TestUser, id: impl std::fmt::Display) -> Response {
    app.delete(&format!("/api/v1/admin/users/{id}"))
        .bearer_auth(&actor.access_token)
        .send()
        .await
        .unwrap()
}

async fn me(app: &TestApp, access_token: &str) -> Response {
    app.get("/api/v1/users/me")
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap()
}

/// Asserts a problem with this status and code, and returns its body.
async fn expect_problem(response: Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status(), status);
    let body = problem(response).await;
    assert_eq!(body["code"], code, "{body}");
    body
}

async fn ok_json(response: Response) -> Value {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

/// The role an account has now, as an admin sees it.
async fn role_of(app: &TestApp, actor: &TestUser, id: impl std::fmt::Display) -> Value {
    ok_json(get_user(app, actor, id).await).await["role"].clone()
}

#[tokio::test]
async fn admins_list_users_filtered_by_name_email_and_role() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let tag = Uuid::new_v4().simple().to_string();
    let alice = created(
        &app,
        &admin,
        &account(&format!("Alice Zebra {tag}"), "shipper"),
    )
    .await;
    let bob = created(&app, &admin, &account(&format!("Bob zebra {tag}"), "user")).await;
    let carol = created(&app, &admin, &account("Carol Lion", "shipper")).await;
    let shopper = app.register_user().await;

    // Name: part of it, any case.
    let by_name = list(&app, &admin, &format!("name=ZEBRA%20{tag}")).await;
    assert_eq!(
        ids(&by_name),
        [bob["id"].as_str().unwrap(), alice["id"].as_str().unwrap()]
    );
    assert_eq!(by_name["hasMore"], false);
    assert!(by_name["nextCursor"].is_null());
    // A full view, email included.
    assert_eq!(by_name["items"][0]["email"], bob["email"]);
    assert_eq!(by_name["items"][0]["role"], "user");

    // Email: part of it, any case.
    let carol_email = carol["email"].as_str().unwrap();
    let fragment = carol_email.split('@').next().unwrap().to_uppercase();
    let by_email = list(&app, &admin, &format!("email={fragment}")).await;
    assert_eq!(ids(&by_email), [carol["id"].as_str().unwrap()]);
    let by_email = list(&app, &admin, &format!("email={}", shopper.email)).await;
    assert_eq!(ids(&by_email), [shopper.id.to_string()]);

    // Role.
    let shippers = list(&app, &admin, "role=shipper").await;
    assert_eq!(
        ids(&shippers),
        [carol["id"].as_str().unwrap(), alice["id"].as_str().unwrap()]
    );
    let admins = list(&app, &admin, "role=admin").await;
    assert_eq!(ids(&admins), [admin.id.to_string()]);

    // Filters combine.
    let both = list(&app, &admin, "name=zebra&role=shipper").await;
    assert_eq!(ids(&both), [alice["id"].as_str().unwrap()]);
    let none = list(&app, &admin, &format!("name={tag}&role=delivery")).await;
    assert!(ids(&none).is_empty());

    // Everyone, newest first.
    let everyone = list(&app, &admin, "").await;
    assert_eq!(
        ids(&everyone),
        [
            shopper.id.to_string(),
            carol["id"].as_str().unwrap().to_owned(),
            bob["id"].as_str().unwrap().to_owned(),
            alice["id"].as_str().unwrap().to_owned(),
            admin.id.to_string(),
        ]
    );

    // An unknown role is a 400 naming the filter.
    let response = app
        .get("/api/v1/admin/users?role=root")
        .bearer_auth(&admin.access_token)
        .send()
        .await
        .unwrap();
    let body = expect_problem(response, 400, "invalid_request").await;
    assert!(body["errors"]["role"].is_array(), "{body}");
    app.drain_jobs().await;
}

#[tokio::test]
async fn the_user_list_pages_with_limit_and_cursor() {
    let app = spawn_app().await;
    let superadmin = app.create_user_with_role(Role::Superadmin).await;
    let tag = Uuid::new_v4().simple().to_string();
    let mut made = Vec::new();
    for n in 0..5 {
        let view = created(
            &app,
            &superadmin,
            &account(&format!("Paged {n} {tag}"), "user"),
        )
        .await;
        made.push(view["id"].as_str().unwrap().to_owned());
    }
    made.reverse();

    let first = list(&app, &superadmin, &format!("name={tag}&limit=2")).await;
    assert_eq!(ids(&first), made[0..2]);
    assert_eq!(first["hasMore"], true);
    let cursor = first["nextCursor"].as_str().expect("nextCursor").to_owned();
    let second = list(
        &app,
        &superadmin,
        &format!("name={tag}&limit=2&cursor={cursor}"),
    )
    .await;
    assert_eq!(ids(&second), made[2..4]);
    assert_eq!(second["hasMore"], true);
    let cursor = second["nextCursor"]
        .as_str()
        .expect("nextCursor")
        .to_owned();
    let last = list(
        &app,
        &superadmin,
        &format!("name={tag}&limit=2&cursor={cursor}"),
    )
    .await;
    assert_eq!(ids(&last), made[4..]);
    assert_eq!(last["hasMore"], false);
    assert!(last["nextCursor"].is_null());

    let default = list(&app, &superadmin, &format!("name={tag}")).await;
    assert_eq!(ids(&default), made);

    let bad_cursor = app
        .get("/api/v1/admin/users?cursor=not-a-cursor")
        .bearer_auth(&superadmin.access_token)
        .send()
        .await
        .unwrap();
    let body = expect_problem(bad_cursor, 400, "invalid_request").await;
    assert!(body["errors"]["cursor"].is_array(), "{body}");
    for limit in ["0", "101"] {
        let response = app
            .get(&format!("/api/v1/admin/users?limit={limit}"))
            .bearer_auth(&superadmin.access_token)
            .send()
            .await
            .unwrap();
        let body = expect_problem(response, 422, "validation_failed").await;
        assert!(body["errors"]["limit"].is_array(), "{body}");
    }
    app.drain_jobs().await;
}

#[tokio::test]
async fn users_and_staff_roles_get_403_from_the_admin_users_api() {
    let app = spawn_app().await;
    let target = app.register_user().await;

    for role in STAFF_AND_USERS {
        let caller = app.create_user_with_role(role).await;
        let listed = app
            .get("/api/v1/admin/users")
            .bearer_auth(&caller.access_token)
            .send()
            .await
            .unwrap();
        expect_problem(listed, 403, "forbidden").await;
        expect_problem(
            create(&app, &caller, &account("Sneaky", "user")).await,
            403,
            "forbidden",
        )
        .await;
        expect_problem(get_user(&app, &caller, target.id).await, 403, "forbidden").await;
        let patched = patch_user(&app, &caller, target.id, &json!({"name": "Sneaky"})).await;
        expect_problem(patched, 403, "forbidden").await;
        expect_problem(
            delete_user(&app, &caller, target.id).await,
            403,
            "forbidden",
        )
        .await;
        // Not even on themselves.
        expect_problem(get_user(&app, &caller, caller.id).await, 403, "forbidden").await;
    }
    assert_eq!(me(&app, &target.access_token).await.status(), 200);
    let admin = app.create_user_with_role(Role::Admin).await;
    assert_eq!(
        ok_json(get_user(&app, &admin, target.id).await).await["name"],
        "Test Shopper"
    );
    app.drain_jobs().await;
}

#[tokio::test]
async fn anonymous_callers_get_401_from_the_admin_users_api() {
    let app = spawn_app().await;
    let target = app.register_user().await;
    let path = format!("/api/v1/admin/users/{}", target.id);

    expect_problem(
        app.get("/api/v1/admin/users").send().await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    let created = app
        .post("/api/v1/admin/users")
        .header("Idempotency-Key", Uuid::new_v4().to_string())
        .json(&account("Anonymous", "user"))
        .send()
        .await
        .unwrap();
    expect_problem(created, 401, "unauthorized").await;
    expect_problem(app.get(&path).send().await.unwrap(), 401, "unauthorized").await;
    let patched = app
        .patch(&path)
        .json(&json!({"name": "X"}))
        .send()
        .await
        .unwrap();
    expect_problem(patched, 401, "unauthorized").await;
    expect_problem(app.delete(&path).send().await.unwrap(), 401, "unauthorized").await;
    app.drain_jobs().await;
}

#[tokio::test]
async fn an_admin_creates_a_shipper_who_can_sign_in() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let mut body = account("Sam Shipper", "shipper");
    let email = body["email"].as_str().unwrap().to_owned();
    body["email"] = json!(email.to_uppercase());
    body["language"] = json!("pt-BR");

    let view = created(&app, &admin, &body).await;

    assert_eq!(view["role"], "shipper");
    assert_eq!(view["name"], "Sam Shipper");
    assert_eq!(view["email"], email);
    assert_eq!(view["language"], "pt-BR");
    let shipper = app.login_as(&email, PASSWORD, Role::Shipper).await;
    assert_eq!(shipper.id.to_string(), view["id"]);
    assert_eq!(
        ok_json(me(&app, &shipper.access_token).await).await["role"],
        "shipper"
    );
    app.drain_jobs().await;
}

#[tokio::test]
async fn an_admin_may_create_every_role_below_admin() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;

    for role in ["user", "financial", "shipper", "delivery"] {
        let view = created(&app, &admin, &account("Below", role)).await;
        assert_eq!(view["role"], role);
    }
    app.drain_jobs().await;
}

#[tokio::test]
async fn an_account_created_without_a_role_is_a_plain_user() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let mut body = account("No Role", "user");
    body.as_object_mut().unwrap().remove("role");

    let view = created(&app, &admin, &body).await;

    assert_eq!(view["role"], "user");
    app.drain_jobs().await;
}

#[tokio::test]
async fn an_admin_may_not_create_an_admin_or_a_superadmin() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;

    for role in ["admin", "superadmin"] {
        let body = account("Climber", role);
        let response = create(&app, &admin, &body).await;
        expect_problem(response, 403, "role_not_allowed").await;
        let email = body["email"].as_str().unwrap();
        expect_problem(app.login(email, PASSWORD).await, 401, "invalid_credentials").await;
    }
    assert!(ids(&list(&app, &admin, "name=Climber").await).is_empty());
    app.drain_jobs().await;
}

#[tokio::test]
async fn a_superadmin_creates_an_admin_but_not_a_superadmin() {
    let app = spawn_app().await;
    let superadmin = app.create_user_with_role(Role::Superadmin).await;

    let view = created(&app, &superadmin, &account("New Admin", "admin")).await;
    assert_eq!(view["role"], "admin");
    let new_admin = app
        .login_as(view["email"].as_str().unwrap(), PASSWORD, Role::Admin)
        .await;
    assert_eq!(
        list(&app, &new_admin, "role=admin").await["items"][0]["id"],
        view["id"]
    );

    let response = create(&app, &superadmin, &account("Another Root", "superadmin")).await;
    expect_problem(response, 403, "role_not_allowed").await;
    assert!(ids(&list(&app, &superadmin, "name=Another%20Root").await).is_empty());
    app.drain_jobs().await;
}

#[tokio::test]
async fn creating_a_user_needs_an_idempotency_key() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;

    let response = app
        .post("/api/v1/admin/users")
        .bearer_auth(&admin.access_token)
        .json(&account("Keyless", "shipper"))
        .send()
        .await
        .unwrap();

    expect_problem(response, 400, "idempotency_key_required").await;
    assert!(ids(&list(&app, &admin, "name=Keyless").await).is_empty());
    app.drain_jobs().await;
}

#[tokio::test]
async fn creating_a_user_with_a_taken_email_is_409() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let shopper = app.register_user().await;
    let mut body = account("Duplicate", "shipper");
    body["email"] = json!(shopper.email.to_uppercase());

    expect_problem(create(&app, &admin, &body).await, 409, "email_taken").await;
    app.drain_jobs().await;
}

#[tokio::test]
async fn an_admin_reads_one_user_in_full() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let shopper = app.register_user().await;

    let view = ok_json(get_user(&app, &admin, shopper.id).await).await;

    assert_eq!(view["id"], shopper.id.to_string());
    assert_eq!(view["email"], shopper.email);
    assert_eq!(view["role"], "user");
    assert_eq!(view["language"], "en");
    assert!(view["address"].is_null());
    assert!(view["createdAt"].is_string() && view["updatedAt"].is_string());
    // An admin may read (not change) an account at their own level or above.
    let superadmin = app.create_user_with_role(Role::Superadmin).await;
    assert_eq!(
        ok_json(get_user(&app, &admin, superadmin.id).await).await["role"],
        "superadmin"
    );

    expect_problem(
        get_user(&app, &admin, Uuid::new_v4()).await,
        404,
        "not_found",
    )
    .await;
    let malformed =
        expect_problem(get_user(&app, &admin, "nope").await, 400, "invalid_request").await;
    assert!(malformed["errors"]["id"].is_array(), "{malformed}");
    app.drain_jobs().await;
}

#[tokio::test]
async fn an_admin_changes_a_users_name_role_and_address() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let shopper = app.register_user().await;
    let address = json!({"line1": "1 Main St", "city": "Recife", "state": "PE", "postalCode": "50000-000", "country": "BR"});

    let response = patch_user(
        &app,
        &admin,
        shopper.id,
        &json!({"name": "Dana Delivery", "role": "delivery", "language": "pt-BR", "address": address}),
    )
    .await;

    let view = ok_json(response).await;
    assert_eq!(view["name"], "Dana Delivery");
    assert_eq!(view["role"], "delivery");
    assert_eq!(view["language"], "pt-BR");
    assert_eq!(view["address"]["city"], "Recife");
    assert_eq!(
        ok_json(get_user(&app, &admin, shopper.id).await).await,
        view
    );
    // The user's own session sees the change at once and keeps working.
    let mine = ok_json(me(&app, &shopper.access_token).await).await;
    assert_eq!(mine["role"], "delivery");
    assert_eq!(mine["name"], "Dana Delivery");

    let cleared =
        ok_json(patch_user(&app, &admin, shopper.id, &json!({"address": null})).await).await;
    assert!(cleared["address"].is_null());
    assert_eq!(cleared["role"], "delivery");
    app.drain_jobs().await;
}

#[tokio::test]
async fn an_admin_password_reset_ends_all_of_that_users_sessions() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let shopper = app.register_user().await;
    let other_device = app.login_as(&shopper.email, PASSWORD, Role::User).await;
    let new_password = "reset by the admin";

    let response = patch_user(&app, &admin, shopper.id, &json!({"password": new_password})).await;

    ok_json(response).await;
    for session in [&shopper, &other_device] {
        expect_problem(
            me(&app, &session.access_token).await,
            401,
            "session_revoked",
        )
        .await;
        let refreshed = app
            .post("/api/v1/auth/refresh")
            .json(&json!({"refreshToken": session.refresh_token}))
            .send()
            .await
            .unwrap();
        expect_problem(refreshed, 401, "session_revoked").await;
    }
    expect_problem(
        app.login(&shopper.email, PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;
    let fresh = app.login_as(&shopper.email, new_password, Role::User).await;
    assert_eq!(me(&app, &fresh.access_token).await.status(), 200);
    // The admin's own session is not affected.
    assert_eq!(me(&app, &admin.access_token).await.status(), 200);
    app.drain_jobs().await;
}

#[tokio::test]
async fn an_admin_may_not_change_or_delete_another_admin_or_a_superadmin() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let other_admin = app.create_user_with_role(Role::Admin).await;
    let superadmin = app.create_user_with_role(Role::Superadmin).await;

    for target in [&other_admin, &superadmin, &admin] {
        let patched = patch_user(&app, &admin, target.id, &json!({"name": "Demoted"})).await;
        expect_problem(patched, 403, "role_not_allowed").await;
        let demoted = patch_user(&app, &admin, target.id, &json!({"role": "user"})).await;
        expect_problem(demoted, 403, "role_not_allowed").await;
        let reset = patch_user(
            &app,
            &admin,
            target.id,
            &json!({"password": "taken over now"}),
        )
        .await;
        expect_problem(reset, 403, "role_not_allowed").await;
        expect_problem(
            delete_user(&app, &admin, target.id).await,
            403,
            "role_not_allowed",
        )
        .await;
    }
    for target in [&other_admin, &superadmin] {
        let view = ok_json(get_user(&app, &superadmin, target.id).await).await;
        assert_eq!(view["role"], target.role.as_str());
        assert_ne!(view["name"], "Demoted");
        assert_eq!(me(&app, &target.access_token).await.status(), 200);
        assert_eq!(app.login(&target.email, PASSWORD).await.status(), 200);
    }
    app.drain_jobs().await;
}

#[tokio::test]
async fn a_superadmin_manages_admins_but_not_another_superadmin() {
    let app = spawn_app().await;
    let superadmin = app.create_user_with_role(Role::Superadmin).await;
    let other_root = app.create_user_with_role(Role::Superadmin).await;
    let admin = app.create_user_with_role(Role::Admin).await;

    for target in [&other_root, &superadmin] {
        let patched = patch_user(
            &app,
            &superadmin,
            target.id,
            &json!({"name": "Renamed Root"}),
        )
        .await;
        expect_problem(patched, 403, "role_not_allowed").await;
        expect_problem(
            delete_user(&app, &superadmin, target.id).await,
            403,
            "role_not_allowed",
        )
        .await;
        assert_eq!(role_of(&app, &superadmin, target.id).await, "superadmin");
    }
    let promoted = patch_user(&app, &superadmin, admin.id, &json!({"role": "superadmin"})).await;
    expect_problem(promoted, 403, "role_not_allowed").await;
    assert_eq!(role_of(&app, &superadmin, admin.id).await, "admin");

    let renamed = ok_json(
        patch_user(
            &app,
            &superadmin,
            admin.id,
            &json!({"name": "Renamed Admin"}),
        )
        .await,
    )
    .await;
    assert_eq!(renamed["name"], "Renamed Admin");
    assert_eq!(delete_user(&app, &superadmin, admin.id).await.status(), 204);
    expect_problem(
        get_user(&app, &superadmin, admin.id).await,
        404,
        "not_found",
    )
    .await;
    app.drain_jobs().await;
}

#[tokio::test]
async fn an_admin_may_not_promote_a_user_to_admin_or_superadmin() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let shopper = app.register_user().await;

    for role in ["admin", "superadmin"] {
        let response = patch_user(
            &app,
            &admin,
            shopper.id,
            &json!({"role": role, "name": "Promoted"}),
        )
        .await;
        expect_problem(response, 403, "role_not_allowed").await;
    }
    let view = ok_json(get_user(&app, &admin, shopper.id).await).await;
    assert_eq!(view["role"], "user");
    assert_eq!(view["name"], "Test Shopper");
    let listed = app
        .get("/api/v1/admin/users")
        .bearer_auth(&shopper.access_token)
        .send()
        .await
        .unwrap();
    expect_problem(listed, 403, "forbidden").await;
    app.drain_jobs().await;
}

#[tokio::test]
async fn a_demoted_admins_existing_token_loses_admin_access_at_once() {
    let app = spawn_app().await;
    let superadmin = app.create_user_with_role(Role::Superadmin).await;
    let admin = app.create_user_with_role(Role::Admin).await;
    // Warm whatever caches the admin's session state.
    list(&app, &admin, "").await;

    let view =
        ok_json(patch_user(&app, &superadmin, admin.id, &json!({"role": "user"})).await).await;
    assert_eq!(view["role"], "user");

    let listed = app
        .get("/api/v1/admin/users")
        .bearer_auth(&admin.access_token)
        .send()
        .await
        .unwrap();
    expect_problem(listed, 403, "forbidden").await;
    // Still signed in, just as a user now.
    assert_eq!(
        ok_json(me(&app, &admin.access_token).await).await["role"],
        "user"
    );
    app.drain_jobs().await;
}

#[tokio::test]
async fn a_promoted_users_existing_token_gains_admin_access_at_once() {
    let app = spawn_app().await;
    let superadmin = app.create_user_with_role(Role::Superadmin).await;
    let shopper = app.register_user().await;
    let listed = app
        .get("/api/v1/admin/users")
        .bearer_auth(&shopper.access_token)
        .send()
        .await
        .unwrap();
    expect_problem(listed, 403, "forbidden").await;

    ok_json(patch_user(&app, &superadmin, shopper.id, &json!({"role": "admin"})).await).await;

    let page = list(&app, &shopper, "role=admin").await;
    assert_eq!(ids(&page), [shopper.id.to_string()]);
    app.drain_jobs().await;
}

#[tokio::test]
async fn a_deleted_user_cannot_sign_in_and_is_listed_nowhere() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let shopper = app.register_user().await;
    let bystander = app.register_user().await;

    let response = delete_user(&app, &admin, shopper.id).await;

    assert_eq!(response.status(), 204);
    expect_problem(
        app.login(&shopper.email, PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;
    expect_problem(
        me(&app, &shopper.access_token).await,
        401,
        "session_revoked",
    )
    .await;
    let everyone = list(&app, &admin, "").await;
    assert!(!ids(&everyone).contains(&shopper.id.to_string()));
    assert!(ids(&everyone).contains(&bystander.id.to_string()));
    assert!(ids(&list(&app, &admin, &format!("email={}", shopper.email)).await).is_empty());
    assert!(!ids(&list(&app, &admin, "role=user").await).contains(&shopper.id.to_string()));
    assert!(
        !ids(&list(&app, &admin, "name=Test%20Shopper").await).contains(&shopper.id.to_string())
    );
    expect_problem(get_user(&app, &admin, shopper.id).await, 404, "not_found").await;
    let profile = app
        .get(&format!("/api/v1/users/{}", shopper.id))
        .bearer_auth(&bystander.access_token)
        .send()
        .await
        .unwrap();
    expect_problem(profile, 404, "not_found").await;
    // Gone is gone: no second delete, no patch.
    expect_problem(
        delete_user(&app, &admin, shopper.id).await,
        404,
        "not_found",
    )
    .await;
    let patched = patch_user(&app, &admin, shopper.id, &json!({"name": "Ghost"})).await;
    expect_problem(patched, 404, "not_found").await;
    app.drain_jobs().await;
}

#[tokio::test]
async fn an_admin_changing_an_email_to_a_taken_one_is_409() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let shopper = app.register_user().await;
    let other = app.register_user().await;

    let response = patch_user(
        &app,
        &admin,
        shopper.id,
        &json!({"email": other.email.to_uppercase()}),
    )
    .await;

    expect_problem(response, 409, "email_taken").await;
    assert_eq!(
        ok_json(get_user(&app, &admin, shopper.id).await).await["email"],
        shopper.email
    );
    let moved = format!("Moved-{}@Example.com", Uuid::new_v4().simple());
    let view = ok_json(patch_user(&app, &admin, shopper.id, &json!({"email": moved})).await).await;
    assert_eq!(view["email"], moved.to_lowercase());
    assert_eq!(app.login(&moved, PASSWORD).await.status(), 200);
    app.drain_jobs().await;
}

#[tokio::test]
async fn the_user_name_filter_folds_accented_capitals() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let created = app
        .post("/api/v1/admin/users")
        .bearer_auth(&admin.access_token)
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .json(&serde_json::json!({"name": "Ângela Érica", "email": "angela@example.com", "password": "long enough pw", "role": "user"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    for search in ["Ângela", "ângela", "ÉRICA"] {
        let page: serde_json::Value = app
            .get(&format!(
                "/api/v1/admin/users?name={}",
                form_urlencoded::byte_serialize(search.as_bytes()).collect::<String>()
            ))
            .bearer_auth(&admin.access_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            page["items"].as_array().unwrap().len(),
            1,
            "search {search:?}: {page}"
        );
    }
    app.drain_jobs().await;
}
