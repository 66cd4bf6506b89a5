//! The service over an in-memory store, driven through its router.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::config::{Reviewer, Runner};
use crate::protocol::Require;
use crate::store::MemoryStore;
use axum::http::Request as HttpRequest;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const HOST: &str = "127.0.0.1:8700";

fn service() -> Service {
    let h = |t: &str| crate::token_hash(t);
    let dir = Directory::new(
        vec![
            Reviewer::new("alice", &["sre"], &h("alice-token")).unwrap(),
            Reviewer::new("bob", &[], &h("bob-token")).unwrap(),
            Reviewer::new("carol", &["sre", "sec"], &h("carol-token")).unwrap(),
        ],
        vec![Runner::new("ci", &h("ci-token")).unwrap(), Runner::new("other", &h("other-token")).unwrap()],
    );
    let origins = Origins::new(HOST.parse().unwrap(), None).unwrap();
    Service::new(dir, Arc::new(MemoryStore::default()), origins)
}

async fn call(svc: &Service, method: &str, uri: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let mut req = HttpRequest::builder().method(method).uri(uri).header("host", HOST);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req.body(body.map_or_else(Body::empty, |b| Body::from(b.to_string()))).unwrap();
    let resp = svc.router().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn submission(user: &str, require: Require, timeout_ms: u64) -> Value {
    serde_json::to_value(Submission {
        task: "task-1".into(),
        user: user.into(),
        agent: "replace".into(),
        intent: Some("fix a typo".into()),
        capability: "fs.write".into(),
        target: "src/a.rs".into(),
        dest: None,
        rule: "fs.write[0] src/**".into(),
        require,
        preview: Some("+hello\n".into()),
        content_sha256: Some(format!("sha256:{}", "a".repeat(64))),
        effect_sha256: format!("sha256:{}", "b".repeat(64)),
        size: Some(6),
        timeout_ms,
    })
    .unwrap()
}

async fn submit(svc: &Service, user: &str, require: Require) -> String {
    let (status, body) =
        call(svc, "POST", "/api/runner/requests", Some("ci-token"), Some(submission(user, require, 60_000))).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["state"], "pending");
    body["id"].as_str().unwrap().to_owned()
}

async fn vote(svc: &Service, id: &str, token: &str, decision: &str) -> (u16, Value) {
    call(
        svc,
        "POST",
        &format!("/api/requests/{id}/decision"),
        Some(token),
        Some(json!({"decision": decision, "comment": "looked at it"})),
    )
    .await
}

#[tokio::test]
async fn min_two_needs_two_distinct_reviewers() {
    let svc = service();
    let id = submit(&svc, "dave", Require::Min(2)).await;
    assert_eq!(vote(&svc, &id, "alice-token", "approve").await, (200, json!({"state": "pending"})));
    assert_eq!(vote(&svc, &id, "alice-token", "approve").await.0, 409);
    assert_eq!(vote(&svc, &id, "bob-token", "approve").await, (200, json!({"state": "approved"})));
    let (_, view) = call(&svc, "GET", &format!("/api/runner/requests/{id}"), Some("ci-token"), None).await;
    assert_eq!(view["state"], "approved");
    let votes = view["votes"].as_array().unwrap();
    assert_eq!(votes.len(), 2);
    assert_eq!(votes[0]["by"], "alice");
    assert_eq!(votes[0]["comment"], "looked at it");
    assert_eq!(votes[0]["effect_sha256"], format!("sha256:{}", "b".repeat(64)));
    assert!(view["decided"].is_string());
}

#[tokio::test]
async fn one_rejection_rejects() {
    let svc = service();
    let id = submit(&svc, "dave", Require::All(vec!["alice".into(), "bob".into()])).await;
    assert_eq!(vote(&svc, &id, "alice-token", "approve").await.1["state"], "pending");
    assert_eq!(vote(&svc, &id, "carol-token", "approve").await.0, 403);
    assert_eq!(vote(&svc, &id, "bob-token", "reject").await.1["state"], "rejected");
    assert_eq!(vote(&svc, &id, "carol-token", "approve").await.0, 409);
}

#[tokio::test]
async fn runners_see_only_their_own_requests() {
    let svc = service();
    let id = submit(&svc, "dave", Require::Any(true)).await;
    assert_eq!(call(&svc, "GET", &format!("/api/runner/requests/{id}"), Some("ci-token"), None).await.0, 200);
    assert_eq!(call(&svc, "GET", &format!("/api/runner/requests/{id}"), Some("other-token"), None).await.0, 404);
    // Reviewer and runner tokens are not interchangeable.
    assert_eq!(call(&svc, "GET", &format!("/api/runner/requests/{id}"), Some("alice-token"), None).await.0, 401);
    assert_eq!(call(&svc, "GET", "/api/requests", Some("ci-token"), None).await.0, 401);
}

#[tokio::test]
async fn wait_returns_when_decided() {
    let svc = service();
    let id = submit(&svc, "dave", Require::Any(true)).await;
    let waiter = {
        let svc = svc.clone();
        let id = id.clone();
        tokio::spawn(async move {
            let start = std::time::Instant::now();
            let r = call(&svc, "GET", &format!("/api/runner/requests/{id}?wait=20"), Some("ci-token"), None).await;
            (r, start.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished());
    assert_eq!(vote(&svc, &id, "bob-token", "approve").await.1["state"], "approved");
    let ((status, view), took) = waiter.await.unwrap();
    assert_eq!((status, view["state"].as_str()), (200, Some("approved")));
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test]
async fn wait_returns_at_expiry_and_at_the_end_of_the_wait() {
    let svc = service();
    let (status, body) =
        call(&svc, "POST", "/api/runner/requests", Some("ci-token"), Some(submission("dave", Require::Any(true), 400)))
            .await;
    assert_eq!(status, 201);
    let id = body["id"].as_str().unwrap();
    let start = std::time::Instant::now();
    let (_, view) = call(&svc, "GET", &format!("/api/runner/requests/{id}?wait=10"), Some("ci-token"), None).await;
    assert_eq!(view["state"], "expired");
    assert!(start.elapsed() < Duration::from_secs(3), "{:?}", start.elapsed());
    assert_eq!(view["decided"], view["expires"]);

    let id = submit(&svc, "dave", Require::Any(true)).await;
    let start = std::time::Instant::now();
    let (_, view) = call(&svc, "GET", &format!("/api/runner/requests/{id}?wait=1"), Some("ci-token"), None).await;
    assert_eq!(view["state"], "pending");
    assert!(start.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn malformed_and_unmeetable_submissions() {
    let svc = service();
    let post = |body: Value| {
        let svc = svc.clone();
        async move { call(&svc, "POST", "/api/runner/requests", Some("ci-token"), Some(body)).await }
    };
    let mut s = submission("dave", Require::Any(true), 1000);
    s["effect_sha256"] = json!("sha256:xyz");
    assert_eq!(post(s).await.0, 400);
    let mut s = submission("dave", Require::Any(true), 1000);
    s["extra"] = json!(1);
    assert_eq!(post(s).await.0, 400);
    assert_eq!(post(submission("dave", Require::Min(0), 1000)).await.0, 400);
    assert_eq!(post(submission("dave", Require::Any(true), 0)).await.0, 400);
    let mut s = submission("dave", Require::Any(true), 1000);
    s["preview"] = json!("x".repeat(crate::protocol::MAX_PREVIEW + 1));
    assert_eq!(post(s).await.0, 400);
    let mut s = submission("dave", Require::Any(true), 1000);
    s["preview"] = json!("x".repeat(crate::protocol::MAX_PREVIEW));
    assert_eq!(post(s).await.0, 201);

    let (status, body) = post(submission("alice", Require::All(vec!["alice".into()]), 1000)).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("`alice`"), "{body}");
    assert_eq!(post(submission("dave", Require::All(vec!["eve".into()]), 1000)).await.0, 422);
    assert_eq!(post(submission("alice", Require::Min(3), 1000)).await.0, 422);
    assert_eq!(post(submission("dave", Require::Min(3), 1000)).await.0, 201);
    assert_eq!(post(submission("carol", Require::Role("sec".into()), 1000)).await.0, 422);
}

#[tokio::test]
async fn listing_and_queries() {
    let svc = service();
    let a = submit(&svc, "dave", Require::Any(true)).await;
    let b = submit(&svc, "dave", Require::Any(true)).await;
    vote(&svc, &a, "bob-token", "approve").await;
    let ids = |v: &Value| v["requests"].as_array().unwrap().iter().map(|r| r["id"].clone()).collect::<Vec<_>>();
    let (status, all) = call(&svc, "GET", "/api/requests", Some("bob-token"), None).await;
    assert_eq!(status, 200);
    assert_eq!(ids(&all), [json!(b), json!(a)]);
    let (_, pending) = call(&svc, "GET", "/api/requests?state=pending", Some("bob-token"), None).await;
    assert_eq!(ids(&pending), [json!(b)]);
    let (_, approved) = call(&svc, "GET", "/api/requests?state=approved", Some("bob-token"), None).await;
    assert_eq!(ids(&approved), [json!(a)]);
    let (_, one) = call(&svc, "GET", "/api/requests?limit=1", Some("bob-token"), None).await;
    assert_eq!(ids(&one), [json!(b)]);
    assert_eq!(call(&svc, "GET", "/api/requests?state=maybe", Some("bob-token"), None).await.0, 400);
    assert_eq!(call(&svc, "GET", "/api/requests?foo=1", Some("bob-token"), None).await.0, 400);
    assert_eq!(call(&svc, "GET", "/api/requests?limit=0", Some("bob-token"), None).await.0, 400);
    assert_eq!(
        call(&svc, "GET", "/api/me", Some("carol-token"), None).await,
        (200, json!({"name": "carol", "roles": ["sre", "sec"]}))
    );
}

#[tokio::test]
async fn concurrent_votes_decide_once() {
    let svc = service();
    let id = submit(&svc, "dave", Require::Min(2)).await;
    let mut tasks = Vec::new();
    for token in ["alice-token", "bob-token", "carol-token"] {
        let svc = svc.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move { vote(&svc, &id, token, "approve").await }));
    }
    let mut states = Vec::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        states.push((status, body["state"].as_str().map(str::to_owned)));
    }
    states.sort();
    assert_eq!(states, [(200, Some("approved".to_owned())), (200, Some("pending".to_owned())), (409, None),]);
}

#[tokio::test]
async fn page_and_headers() {
    let svc = service();
    let req = HttpRequest::builder().uri("/").header("host", HOST).body(Body::empty()).unwrap();
    let resp = svc.router().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    assert!(resp.headers()["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
    assert_eq!(resp.headers()["x-frame-options"], "DENY");
    let req = HttpRequest::builder().uri("/page.js").header("host", "evil.example").body(Body::empty()).unwrap();
    let resp = svc.router().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 421);
    assert_eq!(resp.headers()["cache-control"], "no-store");
}
