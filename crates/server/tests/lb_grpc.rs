//! gRPC through `apply` and a deployment: a service with `protocol: grpc`
//! and a gRPC health check runs on the process runtime, and a tonic client
//! calls it through an h2c listener (`http2: true`): a unary call, its
//! error status with its message, and a server stream.
//!
//! The replica is this test binary itself, copied into the image and run
//! as `lb_grpc grpc_replica --exact`: with `GANTRY_TEST_GRPC_REPLICA` set
//! (the service's environment sets it) that test serves a tonic server on
//! `$PORT` until killed; anywhere else it returns at once.

mod support;

use std::convert::Infallible;
use std::pin::Pin;
use std::process::Command;
use std::time::Duration;

use gantry_images::{ImageSpec, Reference, build_image};
use gantry_server::RunningServer;
use http::uri::PathAndQuery;
use support::Quiet;
use tonic::server::NamedService;
use tonic::{Code, Request, Response, Status};
use tonic_prost::ProstCodec;

#[derive(Clone, PartialEq, prost::Message)]
struct Echo {
    #[prost(string, tag = "1")]
    text: String,
}

fn echo(text: &str) -> Echo {
    Echo {
        text: text.to_owned(),
    }
}

type EchoStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<Echo, Status>> + Send>>;

/// `test.Echo`: `Unary` echoes (FAILED_PRECONDITION on "fail"), `Split`
/// streams the words back.
#[derive(Clone)]
struct EchoService;

impl NamedService for EchoService {
    const NAME: &'static str = "test.Echo";
}

impl tower::Service<http::Request<tonic::body::Body>> for EchoService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Echo, Echo>::default());
            Ok(match request.uri().path() {
                "/test.Echo/Unary" => {
                    let unary = tower::service_fn(|request: Request<Echo>| async move {
                        let text = request.into_inner().text;
                        if text == "fail" {
                            return Err(Status::failed_precondition("told to fail"));
                        }
                        Ok(Response::new(echo(&text)))
                    });
                    grpc.unary(unary, request).await
                }
                "/test.Echo/Split" => {
                    let split = tower::service_fn(|request: Request<Echo>| async move {
                        let words: Vec<Result<Echo, Status>> = request
                            .into_inner()
                            .text
                            .split(' ')
                            .map(|word| Ok(echo(word)))
                            .collect();
                        Ok(Response::new(
                            Box::pin(tokio_stream::iter(words)) as EchoStream
                        ))
                    });
                    grpc.server_streaming(split, request).await
                }
                _ => Status::unimplemented("no such method").into_http(),
            })
        })
    }
}

/// The replica's program (see the module's doc).
#[test]
fn grpc_replica() {
    if std::env::var_os("GANTRY_TEST_GRPC_REPLICA").is_none() {
        return;
    }
    let port: u16 = std::env::var("PORT").unwrap().parse().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<EchoService>().await;
        tonic::transport::Server::builder()
            .add_service(EchoService)
            .add_service(health_service)
            .serve(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .unwrap();
    });
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An image holding this test binary, run as the replica.
async fn push_image(server: &RunningServer) -> String {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::copy(std::env::current_exe().unwrap(), site.join("grpc-echo")).unwrap();
    let mut spec = ImageSpec::new(&site);
    spec.workdir = Some("/app".into());
    spec.entrypoint = Some(vec![
        "/app/grpc-echo".into(),
        "grpc_replica".into(),
        "--exact".into(),
        "--nocapture".into(),
    ]);
    let target = Reference::parse(&format!("{}/test/grpc-echo:1", server.registry)).unwrap();
    let result = build_image(&spec, &target, server.plane.images())
        .await
        .unwrap();
    target.with_digest(&result.digest).to_string()
}

fn project(port: u16) -> String {
    format!(
        r#"
version: 1
environments:
  staging:
    runtime: process
    load_balancer:
      listeners:
        - {{name: main, listen: "127.0.0.1:{port}", http2: true}}
      rules:
        - {{priority: 10, path: "/test.Echo/*", service: echo}}
services:
  echo:
    protocol: grpc
    environment: {{GANTRY_TEST_GRPC_REPLICA: "1"}}
    health_check: {{grpc: {{service: test.Echo}}, interval: 1s, timeout: 500ms, healthy_threshold: 2, unhealthy_threshold: 2, grace_period: 0s}}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployed_grpc_service_answers_through_an_h2c_listener() {
    let dir = tempfile::tempdir().unwrap();
    let listen = "127.0.0.1:0".parse().unwrap();
    let server = RunningServer::start(&dir.path().join("data"), listen, listen)
        .await
        .unwrap();
    let port = free_port();
    let file = dir.path().join("env.yaml");
    let text = project(port);
    std::fs::write(&file, &text).unwrap();
    server
        .plane
        .apply_file(&file, &text, &Default::default())
        .await
        .unwrap();
    let image = push_image(&server).await;
    // Returns once the replica passed its gRPC health checks.
    server
        .plane
        .deployer()
        .deploy("staging", "echo", &image, "test", &Quiet)
        .await
        .unwrap();

    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    let mut client = tonic::client::Grpc::new(channel);
    let codec = ProstCodec::<Echo, Echo>::default;
    let path = PathAndQuery::from_static;
    client.ready().await.unwrap();
    let answer = client
        .unary(
            Request::new(echo("hello")),
            path("/test.Echo/Unary"),
            codec(),
        )
        .await
        .unwrap();
    assert_eq!(answer.into_inner().text, "hello");
    client.ready().await.unwrap();
    let status = client
        .unary(
            Request::new(echo("fail")),
            path("/test.Echo/Unary"),
            codec(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::FailedPrecondition, "told to fail")
    );
    client.ready().await.unwrap();
    let mut words = client
        .server_streaming(
            Request::new(echo("a b c")),
            path("/test.Echo/Split"),
            codec(),
        )
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(word) = words.message().await.unwrap() {
        got.push(word.text);
    }
    assert_eq!(got, ["a", "b", "c"]);

    server.shutdown().await;
    kill_replicas(&dir.path().join("data"));
}

/// Replicas outlive servers by design; the test cleans up after itself.
fn kill_replicas(data: &std::path::Path) {
    let marker = data.join("replicas").display().to_string();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        if String::from_utf8_lossy(&environ).contains(&marker)
            && let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>()
        {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    }
}
