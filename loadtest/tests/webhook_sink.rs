//! The webhook sink over real HTTP: it answers 204 and records each body, with
//! its path, as one JSON line.

use std::time::{SystemTime, UNIX_EPOCH};

use loadtest::sink::{self, Sink};
use serde_json::{json, Value};

#[tokio::test]
async fn sink_records_each_notification_as_a_json_line_and_answers_204() {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let path = std::env::temp_dir().join(format!("sink-test-{}-{nanos}.jsonl", std::process::id()));
    let sink = Sink::open(&path).await.expect("open the sink file");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("local addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(sink::serve(listener, sink, async {
        let _ = stopped.await;
    }));

    let client = reqwest::Client::new();
    let firing = json!({"status": "firing", "receiver": "critical", "alerts": [{"labels": {"alertname": "HighErrorRateCritical"}}]});
    let discord =
        json!({"content": "HighLatency", "embeds": [{"title": "[FIRING:1] HighLatency"}]});
    for (route, body) in [("/critical", &firing), ("/warning", &discord)] {
        let response = client
            .post(format!("{base}{route}"))
            .json(body)
            .send()
            .await
            .expect("post");
        assert_eq!(response.status().as_u16(), 204, "{route}");
    }
    let count = client
        .get(format!("{base}/count"))
        .send()
        .await
        .expect("count")
        .text()
        .await
        .expect("count body");
    assert_eq!(count.trim(), r#"{"count":2}"#);
    let wrong = client
        .get(format!("{base}/critical"))
        .send()
        .await
        .expect("get");
    assert_eq!(wrong.status().as_u16(), 405);

    let _ = stop.send(());
    server.await.expect("the sink stops");
    let text = std::fs::read_to_string(&path).expect("read the sink file");
    let _ = std::fs::remove_file(&path);
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["path"], "/critical");
    assert_eq!(lines[0]["body"], firing);
    assert_eq!(lines[1]["path"], "/warning");
    assert_eq!(lines[1]["body"], discord);
    assert!(lines[0]["received_at_ms"].as_u64().is_some());
}
