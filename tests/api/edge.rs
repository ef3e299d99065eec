//! The edge of the service (docs/spec.md §6.6, §8.3, §10.1): the listener's
//! header-read and idle timeouts and connection cap, the notification
//! stream caps, and the headers every answer carries.

use std::time::Duration;

use dispatch::users::role::Role;
use reqwest::Response;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use uuid::Uuid;

use crate::helpers::{TestApp, TestUser, eventually, problem, spawn_app, spawn_app_with};

/// Bounds a wait that must end by the server's doing, so a regression fails
/// instead of hanging; no assertion depends on how long it took.
const HANG_GUARD: Duration = Duration::from_secs(20);

const REQUEST: &[u8] = b"GET /health/live HTTP/1.1\r\nHost: dispatch.test\r\n\r\n";

async fn connect(app: &TestApp) -> TcpStream {
    let address = app.address.trim_start_matches("http://");
    TcpStream::connect(address).await.unwrap()
}

/// Reads one response (head, then `Content-Length` bytes of body) and
/// returns its head; the connection stays open.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let read = tokio::time::timeout(HANG_GUARD, stream.read(&mut buffer))
            .await
            .expect("a response")
            .unwrap();
        assert!(read > 0, "the connection closed before a response");
        received.extend_from_slice(&buffer[..read]);
    };
    let head = String::from_utf8_lossy(&received[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .expect("a Content-Length");
    while received.len() < head_end + length {
        let read = tokio::time::timeout(HANG_GUARD, stream.read(&mut buffer))
            .await
            .expect("the body")
            .unwrap();
        assert!(read > 0, "the connection closed inside the body");
        received.extend_from_slice(&buffer[..read]);
    }
    head
}

/// Whether the server closed the connection without sending anything more.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buffer = [0u8; 1024];
    match tokio::time::timeout(HANG_GUARD, stream.read(&mut buffer)).await {
        Ok(Ok(0)) => true,
        Ok(Err(e)) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(Ok(_)) | Err(_) => false,
    }
}

#[tokio::test]
async fn a_half_sent_request_is_closed_after_the_header_read_timeout() {
    let app = spawn_app_with(&[
        ("HTTP_HEADER_READ_TIMEOUT", "300ms"),
        ("HTTP_IDLE_TIMEOUT", "10m"),
    ])
    .await;

    // A whole request on a fresh connection is answered.
    let mut whole = connect(&app).await;
    whole.write_all(REQUEST).await.unwrap();
    assert!(read_response(&mut whole).await.starts_with("HTTP/1.1 200"));

    // A request line and one header, and then nothing: closed unanswered.
    let mut half = connect(&app).await;
    half.write_all(b"GET /health/live HTTP/1.1\r\nHost: dispatch.test\r\n")
        .await
        .unwrap();
    assert!(
        closed_by_server(&mut half).await,
        "the half-sent request was closed"
    );

    // A connection that never sends a byte is closed the same way.
    let mut silent = connect(&app).await;
    assert!(
        closed_by_server(&mut silent).await,
        "the silent connection was closed"
    );
}

#[tokio::test]
async fn a_request_head_larger_than_32_kib_is_refused_with_431() {
    let app = spawn_app().await;
    let huge = app
        .get("/health/live")
        .header("X-Padding", "a".repeat(100 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 431);
    let normal = app
        .get("/health/live")
        .header("X-Padding", "a".repeat(16 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(normal.status(), 200);
}

#[tokio::test]
async fn a_kept_alive_connection_idle_past_the_idle_timeout_is_closed() {
    let app = spawn_app_with(&[
        ("HTTP_HEADER_READ_TIMEOUT", "10m"),
        ("HTTP_IDLE_TIMEOUT", "300ms"),
    ])
    .await;
    let mut stream = connect(&app).await;
    stream.write_all(REQUEST).await.unwrap();
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
    // Kept alive: a second request on the same connection is answered.
    stream.write_all(REQUEST).await.unwrap();
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
    // Then idle: the idle timeout (not the ten-minute header timeout) ends it.
    assert!(
        closed_by_server(&mut stream).await,
        "the idle connection was closed"
    );
}

#[tokio::test]
async fn a_connection_above_the_cap_is_closed_and_the_place_returns_when_one_closes() {
    let app = spawn_app_with(&[("HTTP_MAX_CONNECTIONS", "2")]).await;
    let mut first = connect(&app).await;
    let mut second = connect(&app).await;
    for stream in [&mut first, &mut second] {
        stream.write_all(REQUEST).await.unwrap();
        assert!(read_response(stream).await.starts_with("HTTP/1.1 200"));
    }

    let mut third = connect(&app).await;
    // The request may or may not be written before the server closes.
    let _ = third.write_all(REQUEST).await;
    assert!(
        closed_by_server(&mut third).await,
        "the third connection was closed"
    );

    // The two open connections still work.
    second.write_all(REQUEST).await.unwrap();
    assert!(read_response(&mut second).await.starts_with("HTTP/1.1 200"));

    drop(first);
    eventually("a place to free up", HANG_GUARD, || async {
        let mut again = connect(&app).await;
        if again.write_all(REQUEST).await.is_err() {
            return false;
        }
        let mut buffer = [0u8; 64];
        matches!(
            tokio::time::timeout(HANG_GUARD, again.read(&mut buffer)).await,
            Ok(Ok(n)) if n > 0 && buffer.starts_with(b"HTTP/1.1 200")
        )
    })
    .await;
}

async fn open_stream(app: &TestApp, user: &TestUser) -> Response {
    app.get("/api/v1/notifications/stream")
        .bearer_auth(&user.access_token)
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_sixth_stream_of_one_user_is_refused_with_429_and_the_five_stay_open() {
    // Short keep-alives, so a stream the client drops is noticed soon.
    let app = spawn_app_with(&[("SSE_KEEP_ALIVE", "200ms")]).await;
    let user = app.register_user().await;
    let mut open = Vec::new();
    for _ in 0..5 {
        let stream = open_stream(&app, &user).await;
        assert_eq!(stream.status(), 200);
        open.push(stream);
    }
    assert_eq!(app.state.notifications.slots().open_streams(), 5);

    let refused = open_stream(&app, &user).await;
    assert_eq!(refused.status(), 429);
    let body = problem(refused).await;
    assert_eq!(body["code"], "too_many_streams");
    assert_eq!(app.state.notifications.slots().open_streams(), 5);

    // The five were not disturbed: each still sends (keep-alive comments).
    for stream in &mut open {
        let chunk = tokio::time::timeout(HANG_GUARD, stream.chunk())
            .await
            .expect("a keep-alive")
            .unwrap();
        assert!(chunk.is_some(), "the stream is still open");
    }
    // Another user is not affected.
    let other = app.register_user().await;
    let other_stream = open_stream(&app, &other).await;
    assert_eq!(other_stream.status(), 200);
    assert_eq!(app.state.notifications.slots().open_streams(), 6);

    // Closing one gives its place back.
    drop(open.pop());
    eventually("a stream place to free up", HANG_GUARD, || async {
        app.state.notifications.slots().open_streams() == 5
    })
    .await;
    assert_eq!(open_stream(&app, &user).await.status(), 200);
    drop(other_stream);
    app.drain_jobs().await;
}

#[tokio::test]
async fn a_stream_above_the_process_cap_is_refused_with_503_and_retry_after() {
    let app = spawn_app_with(&[("SSE_MAX_STREAMS", "2")]).await;
    let (a, b, c) = (
        app.register_user().await,
        app.register_user().await,
        app.register_user().await,
    );
    let _a = open_stream(&app, &a).await;
    let _b = open_stream(&app, &b).await;
    assert_eq!(_a.status(), 200);
    assert_eq!(_b.status(), 200);

    let refused = open_stream(&app, &c).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "5");
    assert_eq!(problem(refused).await["code"], "streams_unavailable");
    app.drain_jobs().await;
}

fn assert_not_stored(response: &Response, what: &str) {
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap()),
        Some("no-store"),
        "{what}: Cache-Control"
    );
}

#[tokio::test]
async fn every_response_carrying_a_token_or_a_client_secret_says_no_store() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;

    let login = app.login(&admin.email, &admin.password).await;
    assert_eq!(login.status(), 200);
    assert_not_stored(&login, "login");
    let tokens: Value = login.json().await.unwrap();

    let refresh = app
        .post("/api/v1/auth/refresh")
        .json(&json!({"refreshToken": tokens["refreshToken"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refresh.status(), 200);
    assert_not_stored(&refresh, "refresh");

    let register = app
        .post("/api/v1/users")
        .header("Idempotency-Key", Uuid::new_v4().to_string())
        .json(&json!({
            "name": "Stored Nowhere",
            "email": format!("no-store-{}@example.com", Uuid::new_v4().simple()),
            "password": crate::helpers::PASSWORD,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(register.status(), 201);
    assert_not_stored(&register, "registration");

    let dashboard = app
        .post("/admin/queues/login")
        .form(&[("email", &admin.email), ("password", &admin.password)])
        .send()
        .await
        .unwrap();
    assert_eq!(dashboard.status(), 303);
    assert!(dashboard.headers().contains_key("set-cookie"));
    assert_not_stored(&dashboard, "dashboard sign-in");

    let item: Uuid = app.create_item(&admin, "Lamp", 1500, 5).await["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let buyer = app.register_user().await;
    let key = Uuid::new_v4().to_string();
    let placed = app.place_order(&buyer, &[(item, 1)], &key).await;
    assert_eq!(placed.status(), 201);
    assert_not_stored(&placed, "checkout");
    let order: Value = placed.json().await.unwrap();
    assert!(order["payment"]["clientSecret"].is_string(), "{order}");

    let replayed = app.place_order(&buyer, &[(item, 1)], &key).await;
    assert_eq!(replayed.status(), 201);
    assert_eq!(replayed.headers()["idempotent-replayed"], "true");
    assert_not_stored(&replayed, "checkout replay");

    let view = app
        .get(&format!("/api/v1/orders/{}", order["id"].as_str().unwrap()))
        .bearer_auth(&buyer.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(view.status(), 200);
    assert_not_stored(&view, "order view");
    let view: Value = view.json().await.unwrap();
    assert!(view["payment"]["clientSecret"].is_string(), "{view}");
    app.drain_jobs().await;
}

#[tokio::test]
async fn a_cors_preflight_answer_carries_the_security_headers() {
    let app = spawn_app().await;
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/v1/auth/login"))
        .header("Origin", "http://localhost:5173")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let headers = preflight.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "http://localhost:5173"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(
        headers["content-security-policy"],
        "default-src 'none'; frame-ancestors 'none'"
    );
    assert_eq!(headers["cache-control"], "no-store");
    assert!(headers.contains_key("x-correlation-id"));
}
