//! Tests: users.
use crate::helpers::*;

#[tokio::test]
async fn health_answers_ok_without_dependencies() {
    let app = spawn_app().await;
    let resp = app.get("/health").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(
        resp.json::<serde_json::Value>().await.expect("json"),
        serde_json::json!({"status": "ok"})
    );
}
