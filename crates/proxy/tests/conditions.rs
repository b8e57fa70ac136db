//! ALB's rule conditions (host, path, header, method, query string, source
//! IP) and actions (forward, redirect with placeholders, fixed response,
//! the listener's default action), through real sockets.

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use common::{Answer, Backend, client, send};
use gantry_proxy::{Action, Cidr, Conditions, FixedResponse, LoadBalancer, Redirect, Rule, Target};
use http::{Request, StatusCode};
use http_body_util::{Either, Full};

/// Method, Host, path, extra headers, and the backend expected ("" = 404).
type Case<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);

fn any_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn forward(priority: u32, conditions: Conditions, group: &str) -> Rule {
    Rule {
        priority,
        conditions,
        action: Action::Forward {
            target_group: group.to_owned(),
        },
    }
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

async fn request(
    lb: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("http://{lb}{path}"))
        .header("host", host);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder.body(Either::Left(Full::new(Bytes::new()))).unwrap();
    send(&client(), request).await
}

#[tokio::test]
async fn every_condition_must_match_and_any_value_of_one_may() {
    let rules = vec![
        forward(
            1,
            Conditions {
                host: strings(&["API.*.example", "api.example"]),
                path: strings(&["/v1/*"]),
                header: vec![("X-Tenant".to_owned(), strings(&["a", "b*"]))],
                ..Conditions::default()
            },
            "tenant",
        ),
        forward(
            2,
            Conditions {
                method: strings(&["POST", "PUT"]),
                ..Conditions::default()
            },
            "writes",
        ),
        forward(
            3,
            Conditions {
                query: vec![
                    (Some("version".to_owned()), "v?".to_owned()),
                    (None, "beta".to_owned()),
                ],
                ..Conditions::default()
            },
            "query",
        ),
        forward(
            4,
            Conditions {
                source_ip: vec![Cidr::parse("10.0.0.0/8").unwrap()],
                ..Conditions::default()
            },
            "internal",
        ),
        forward(
            5,
            Conditions {
                source_ip: vec![
                    Cidr::parse("2001:db8::/32").unwrap(),
                    Cidr::parse("127.0.0.0/8").unwrap(),
                ],
                path: strings(&["/local"]),
                ..Conditions::default()
            },
            "local",
        ),
    ];
    let lb = LoadBalancer::start(any_addr(), rules).await.unwrap();
    let mut backends = Vec::new();
    for name in ["tenant", "writes", "query", "internal", "local"] {
        let backend = Backend::start(name).await;
        lb.target_group(name)
            .register(Target::new(name, backend.addr));
        backends.push(backend);
    }
    let addr = lb.local_addr();
    let cases: &[Case<'_>] = &[
        // Host without case, port ignored, wildcard; header any value.
        (
            "GET",
            "api.eu.EXAMPLE:8443",
            "/v1/x",
            &[("x-tenant", "A")],
            "tenant",
        ),
        (
            "GET",
            "api.example",
            "/v1/x",
            &[("x-tenant", "b7")],
            "tenant",
        ),
        ("GET", "api.example", "/v1/x", &[("x-tenant", "c")], ""),
        ("GET", "www.example", "/v1/x", &[("x-tenant", "a")], ""),
        ("GET", "api.example", "/v2/x", &[("x-tenant", "a")], ""),
        ("GET", "api.example", "/v1/x", &[], ""),
        // Methods are exact.
        ("PUT", "h", "/anything", &[], "writes"),
        ("DELETE", "h", "/anything", &[], ""),
        // Query pairs: key and value, or a value under any key.
        ("GET", "h", "/q?a=1&version=V2", &[], "query"),
        ("GET", "h", "/q?channel=beta", &[], "query"),
        ("GET", "h", "/q?version=v10", &[], ""),
        // The TCP peer is 127.0.0.1: not in 10/8, in 127/8.
        ("GET", "h", "/local", &[], "local"),
    ];
    for (method, host, path, headers, expected) in cases {
        let answer = request(addr, method, host, path, headers).await;
        assert_eq!(
            answer.backend(),
            *expected,
            "{method} {host} {path} {headers:?}"
        );
        let status = if expected.is_empty() {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::OK
        };
        assert_eq!(answer.status, status, "{method} {host} {path}");
    }
    lb.shutdown().await;
}

#[tokio::test]
async fn redirects_fill_alb_placeholders_and_fixed_responses_answer_themselves() {
    let redirect = |priority, path: &str, to: Redirect| Rule {
        priority,
        conditions: Conditions {
            path: strings(&[path]),
            ..Conditions::default()
        },
        action: Action::Redirect(to),
    };
    let rules = vec![
        redirect(
            1,
            "/old/*",
            Redirect {
                path: Some("/new/#{path}".to_owned()),
                status: 301,
                ..Redirect::default()
            },
        ),
        redirect(
            2,
            "/secure/*",
            Redirect {
                protocol: Some("HTTPS".to_owned()),
                port: Some("443".to_owned()),
                host: Some("www.#{host}".to_owned()),
                query: Some("from=#{port}&#{query}".to_owned()),
                status: 302,
                ..Redirect::default()
            },
        ),
        Rule {
            priority: 3,
            conditions: Conditions {
                path: strings(&["/maintenance"]),
                ..Conditions::default()
            },
            action: Action::FixedResponse(FixedResponse {
                status: 503,
                content_type: Some("text/plain".to_owned()),
                body: "back soon".to_owned(),
            }),
        },
    ];
    let lb = LoadBalancer::start(any_addr(), rules.clone())
        .await
        .unwrap();
    let addr = lb.local_addr();

    let answer = request(addr, "GET", "shop.example:8080", "/old/a/b?x=1", &[]).await;
    assert_eq!(answer.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        answer.headers["location"],
        "http://shop.example:8080/new/old/a/b?x=1"
    );

    let answer = request(addr, "GET", "shop.example:8080", "/secure/p?y=2", &[]).await;
    assert_eq!(answer.status, StatusCode::FOUND);
    assert_eq!(
        answer.headers["location"],
        "https://www.shop.example/secure/p?from=8080&y=2"
    );

    let answer = request(addr, "GET", "h", "/maintenance", &[]).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.headers["content-type"], "text/plain");
    assert_eq!(answer.body, "back soon");

    // The default action replaces the fixed 404, and keeps across set_rules.
    let answer = request(addr, "GET", "h", "/elsewhere", &[]).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    lb.set_routing(
        rules.clone(),
        Some(Action::FixedResponse(FixedResponse {
            status: 200,
            content_type: Some("application/json".to_owned()),
            body: "{}".to_owned(),
        })),
    );
    lb.set_rules(rules);
    let answer = request(addr, "GET", "h", "/elsewhere", &[]).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers["content-type"], "application/json");
    assert_eq!(answer.body, "{}");
    assert_eq!(lb.stats().unmatched_requests, 2);
    lb.shutdown().await;
}

#[tokio::test]
async fn an_http_listener_can_redirect_everything_to_https() {
    let lb = LoadBalancer::start(any_addr(), Vec::new()).await.unwrap();
    lb.set_routing(
        Vec::new(),
        Some(Action::Redirect(Redirect {
            protocol: Some("https".to_owned()),
            port: Some("18443".to_owned()),
            status: 301,
            ..Redirect::default()
        })),
    );
    let answer = request(lb.local_addr(), "GET", "shop.example:18081", "/a?b=c", &[]).await;
    assert_eq!(answer.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        answer.headers["location"],
        "https://shop.example:18443/a?b=c"
    );
    lb.shutdown().await;
}
