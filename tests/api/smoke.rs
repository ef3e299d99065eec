use crate::helpers::{problem, spawn_app};

#[tokio::test]
async fn the_service_is_ready_and_serves_its_docs() {
    let app = spawn_app().await;
    let ready = app.get("/health/ready").send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let docs = app.get("/api/docs/").send().await.unwrap();
    assert_eq!(docs.status(), 200);
    let document: serde_json::Value = app
        .get("/api/openapi.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(document["openapi"], "3.1.0");
}

#[tokio::test]
async fn an_unknown_route_is_a_localised_problem() {
    let app = spawn_app().await;
    let response = app
        .get("/api/v1/nowhere")
        .header("Accept-Language", "pt-BR")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body = problem(response).await;
    assert_eq!(body["code"], "not_found");
    assert_eq!(body["title"], "Não encontrado");
}
