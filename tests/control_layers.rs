//! The control port's tower layers on the real gateway: load shedding past
//! `control.max_concurrent_calls`, request ids, and the server-side deadline setting.

mod fixture;

use fixture::{Gateway, scene::Scene, sio::ws, to_sockets};
use sockgate_client::proto::{AckOptions, GetInfoRequest, SendRequest};
use tonic::Code;

#[tokio::test]
async fn calls_past_the_concurrency_limit_are_shed_and_counted() {
    let builder = Gateway::builder().env("CONTROL__MAX_CONCURRENT_CALLS", "1");
    let (gateway, mut clients, mut control) = Scene::of(builder).await.into_parts();
    let sid = clients.login(ws("quiet").user("q")).await;

    // A Send that waits for an ack the client never gives holds the only slot.
    let mut sender = gateway.control().await;
    let holding = tokio::spawn(async move {
        sender
            .send(SendRequest {
                event: "question".into(),
                data_json: "{}".into(),
                target: to_sockets(&[&sid]),
                ack: Some(AckOptions { timeout_ms: 3000 }),
                ..SendRequest::default()
            })
            .await
    });
    clients.next_event("quiet", "question").await;

    let status = control
        .get_info(GetInfoRequest::default())
        .await
        .expect_err("shed");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("control.max_concurrent_calls"),
        "{status:?}"
    );

    let held = holding.await.unwrap().expect("the holding Send completes");
    assert_eq!(held.into_inner().timed_out_socket_ids.len(), 1);
    control
        .get_info(GetInfoRequest::default())
        .await
        .expect("a slot is free again");
    let (_, metrics) = gateway.admin_get("/metrics").await;
    assert!(
        metrics.contains("sockgate_control_shed_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"sockgate_control_requests_total{method="GetInfo",code="RESOURCE_EXHAUSTED"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn every_call_gets_a_request_id() {
    let gateway = Gateway::start().await;
    let mut control = gateway.control().await;
    let mut request = tonic::Request::new(GetInfoRequest::default());
    request
        .metadata_mut()
        .insert("x-request-id", "trace-me-42".parse().unwrap());
    let response = control.get_info(request).await.unwrap();
    assert_eq!(
        response.metadata().get("x-request-id").unwrap(),
        "trace-me-42"
    );
    let generated = control
        .get_info(GetInfoRequest::default())
        .await
        .unwrap()
        .metadata()
        .get("x-request-id")
        .expect("a generated id")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!generated.is_empty());
    assert!(
        gateway.log_text().contains("request_id=\"trace-me-42\""),
        "{}",
        gateway.log_text()
    );
}

#[tokio::test]
async fn a_request_timeout_shorter_than_the_ack_timeout_is_refused() {
    let stderr = Gateway::builder()
        .env("CONTROL__REQUEST_TIMEOUT", "30s")
        .start_expecting_failure()
        .await;
    assert!(stderr.contains("control.request_timeout"), "{stderr}");
}
