//! Access records through real sockets: a forwarded request names its
//! rule, target, status, bytes and user agent; the default action and a
//! fixed response name no target; a listener without a sink, or after the
//! sink is removed, records nothing.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{Backend, client, get, send};
use gantry_proxy::{
    AccessLogSink, AccessRecord, Action, Conditions, FixedResponse, LoadBalancer, Rule, Target,
};
use http::{Request, StatusCode};
use http_body_util::{Either, Full};

fn any_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

#[derive(Default)]
struct Collect(Mutex<Vec<AccessRecord>>);

impl AccessLogSink for Collect {
    fn record(&self, record: AccessRecord) {
        self.0.lock().unwrap().push(record);
    }
}

impl Collect {
    /// The records so far, once `n` have arrived (a record is sent when
    /// the answer's body is dropped, just after the client has it).
    async fn wait(&self, n: usize) -> Vec<AccessRecord> {
        for _ in 0..200 {
            let records = self.0.lock().unwrap().clone();
            if records.len() >= n {
                return records;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("fewer than {n} records: {:?}", self.0.lock().unwrap());
    }
}

#[tokio::test]
async fn every_request_is_recorded_with_its_rule_target_status_and_bytes() {
    let fixed = Rule {
        priority: 7,
        conditions: Conditions {
            path: vec!["/maintenance".to_owned()],
            ..Conditions::default()
        },
        action: Action::FixedResponse(FixedResponse {
            status: 503,
            content_type: None,
            body: "back soon".to_owned(),
        }),
    };
    let lb = LoadBalancer::start(any_addr(), vec![Rule::new(3, "/api/*", "api"), fixed])
        .await
        .unwrap();
    let backend = Backend::start("api").await;
    lb.target_group("api")
        .register(Target::new("a", backend.addr));
    // No sink yet: nothing is recorded.
    let sink = Arc::new(Collect::default());
    assert_eq!(
        get(&client(), lb.local_addr(), "/api/x").await.status,
        StatusCode::OK
    );
    lb.set_access_log(Some(sink.clone()));

    let request = Request::get(format!("http://{}/api/items?page=2", lb.local_addr()))
        .header("user-agent", "curl/8.0 (test)")
        .body(Either::Left(Full::new(Bytes::new())))
        .unwrap();
    let forwarded = send(&client(), request).await;
    assert_eq!(forwarded.status, StatusCode::OK);
    let records = sink.wait(1).await;
    let record = &records[0];
    assert_eq!(record.method, "GET");
    assert_eq!(record.target_path, "/api/items?page=2");
    assert_eq!(record.user_agent, "curl/8.0 (test)");
    assert_eq!(record.rule, Some(3));
    assert_eq!(record.target, Some(backend.addr));
    assert_eq!(record.status, 200);
    assert_eq!(record.bytes_sent, forwarded.body.len() as u64);
    assert!(record.complete);
    assert!(record.total_time >= record.response_time);
    assert_eq!(record.version, "HTTP/1.1");
    assert!(!record.tls);

    // The default action (a 404) and a fixed response: no target.
    assert_eq!(
        get(&client(), lb.local_addr(), "/nothing").await.status,
        StatusCode::NOT_FOUND
    );
    let answer = get(&client(), lb.local_addr(), "/maintenance").await;
    assert_eq!(answer.body, "back soon");
    let records = sink.wait(3).await;
    assert_eq!(
        (records[1].rule, records[1].target, records[1].status),
        (None, None, 404)
    );
    assert_eq!(
        (records[2].rule, records[2].target, records[2].status),
        (Some(7), None, 503)
    );
    assert_eq!(records[2].bytes_sent, 9);
    assert_eq!(records[1].user_agent, "-");

    // Removed: nothing more.
    lb.set_access_log(None);
    get(&client(), lb.local_addr(), "/api/x").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(sink.0.lock().unwrap().len(), 3);
    lb.shutdown().await;
}
