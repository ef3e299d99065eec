//! Email addresses through the API: one normalised spelling per mailbox,
//! look-alike domains refused with a localised message.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{PASSWORD, TestApp, problem, spawn_app};

async fn register(app: &TestApp, email: &str, language: &str) -> reqwest::Response {
    app.post("/api/v1/users")
        .header("Idempotency-Key", Uuid::new_v4().to_string())
        .header("Accept-Language", language)
        .json(&json!({"name": "Ana", "email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_international_address_is_stored_once_and_found_by_any_spelling() {
    let app = spawn_app().await;
    let local = format!("ana-{}", Uuid::new_v4().simple());
    let created = register(&app, &format!("{local}@EXÄMPLE.de"), "en").await;
    assert_eq!(created.status(), 201);
    let body: Value = created.json().await.unwrap();
    assert_eq!(body["email"], format!("{local}@exämple.de"), "{body}");

    // The Punycode spelling is the same mailbox: taken, and signs in.
    let again = register(&app, &format!("{local}@xn--exmple-cua.de"), "en").await;
    assert_eq!(again.status(), 409);
    assert_eq!(problem(again).await["code"], "email_taken");
    let signed_in = app
        .login(&format!("{local}@xn--exmple-cua.de"), PASSWORD)
        .await;
    assert_eq!(signed_in.status(), 200);
    app.drain_jobs().await;
}

#[tokio::test]
async fn a_look_alike_domain_is_refused_with_a_localised_message() {
    let app = spawn_app().await;
    // "exаmple.com" with a Cyrillic а.
    for (language, message) in [
        (
            "en",
            "mixes writing systems within one part of its domain (the way look-alikes of other domains do)",
        ),
        (
            "pt-BR",
            "mistura sistemas de escrita numa mesma parte do domínio (como fazem as imitações de outros domínios)",
        ),
    ] {
        let response = register(&app, "ana@ex\u{430}mple.com", language).await;
        assert_eq!(response.status(), 422);
        let body = problem(response).await;
        assert_eq!(body["code"], "validation_failed", "{body}");
        assert_eq!(body["errors"]["email"], json!([message]), "{body}");
    }
}
