//! HTTP/2 and gRPC through the load balancer, against real clients and
//! servers: curl over HTTP/1.1 and HTTP/2 (TLS with ALPN, and h2c with
//! prior knowledge), `h2load`, and a gRPC client and server written with
//! tonic (services by hand over prost's derives: no protoc) for unary,
//! server-, client- and bidirectional streaming, with trailers carrying a
//! non-OK status; and the gRPC health check following tonic-health's
//! serving status.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::Backend;
use common::pki::Pki;
use gantry_proxy::{
    HealthCheckConfig, ListenerConfig, LoadBalancer, Protocol, Rule, Target, TargetGroup,
};
use http::uri::PathAndQuery;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::StreamExt;
use tonic::server::NamedService;
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

/// The one message of the test service.
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

/// `test.Echo`: `Unary` echoes (or fails with FAILED_PRECONDITION on
/// "fail"), `Split` streams the words back (ending ABORTED after them if
/// one is "boom"), `Join` joins a stream of words, `Chat` answers each
/// message in upper case as it arrives.
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
                        let text = request.into_inner().text;
                        let mut items: Vec<Result<Echo, Status>> =
                            text.split(' ').map(|word| Ok(echo(word))).collect();
                        if text.split(' ').any(|word| word == "boom") {
                            items.push(Err(Status::aborted("boom after the words")));
                        }
                        Ok(Response::new(
                            Box::pin(tokio_stream::iter(items)) as EchoStream
                        ))
                    });
                    grpc.server_streaming(split, request).await
                }
                "/test.Echo/Join" => {
                    let join = tower::service_fn(|request: Request<Streaming<Echo>>| async move {
                        let mut words = Vec::new();
                        let mut stream = request.into_inner();
                        while let Some(message) = stream.next().await {
                            words.push(message?.text);
                        }
                        Ok(Response::new(echo(&words.join(" "))))
                    });
                    grpc.client_streaming(join, request).await
                }
                "/test.Echo/Chat" => {
                    let chat = tower::service_fn(|request: Request<Streaming<Echo>>| async move {
                        let answers = request
                            .into_inner()
                            .map(|message| message.map(|m| echo(&m.text.to_uppercase())));
                        Ok(Response::new(Box::pin(answers) as EchoStream))
                    });
                    grpc.streaming(chat, request).await
                }
                _ => Status::unimplemented("no such method").into_http(),
            })
        })
    }
}

/// A tonic server on h2c serving `test.Echo` and `grpc.health.v1.Health`.
struct GrpcServer {
    addr: SocketAddr,
    health: tonic_health::server::HealthReporter,
    task: tokio::task::JoinHandle<()>,
}

impl GrpcServer {
    async fn start() -> GrpcServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<EchoService>().await;
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(EchoService)
                .add_service(health_service)
                .serve_with_incoming(incoming)
                .await
                .unwrap();
        });
        GrpcServer { addr, health, task }
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A gRPC client of the load balancer: over TLS with ALPN `h2` to
/// `grpc.example` (the test CA trusted), or over h2c.
async fn channel(lb: SocketAddr, tls_ca: Option<&Path>) -> tonic::transport::Channel {
    let endpoint =
        tonic::transport::Endpoint::from_shared(format!("http://grpc.example:{}", lb.port()))
            .unwrap()
            .timeout(Duration::from_secs(10));
    let Some(ca) = tls_ca else {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{lb}")).unwrap();
        return endpoint.connect().await.unwrap();
    };
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).unwrap();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    use rustls::pki_types::pem::PemObject;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    endpoint
        .connect_with_connector(tower::service_fn(move |_uri: http::Uri| {
            let connector = connector.clone();
            async move {
                let tcp = TcpStream::connect(lb).await?;
                let name = rustls::pki_types::ServerName::try_from("grpc.example").unwrap();
                let tls = connector.connect(name, tcp).await?;
                assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await
        .unwrap()
}

fn path(method: &'static str) -> PathAndQuery {
    PathAndQuery::from_static(method)
}

/// The four kinds of call, their answers and their error trailers.
async fn every_kind_of_call(channel: tonic::transport::Channel) {
    let mut client = tonic::client::Grpc::new(channel);
    let codec = ProstCodec::<Echo, Echo>::default;

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

    // A non-OK status with its message, as the server set it.
    client.ready().await.unwrap();
    let status = client
        .unary(
            Request::new(echo("fail")),
            path("/test.Echo/Unary"),
            codec(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(status.message(), "told to fail");

    // Server streaming: every message, then OK in the trailers.
    client.ready().await.unwrap();
    let mut words = client
        .server_streaming(
            Request::new(echo("one two three")),
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
    assert_eq!(got, ["one", "two", "three"]);

    // Messages, then an error status in trailers after them.
    client.ready().await.unwrap();
    let mut words = client
        .server_streaming(
            Request::new(echo("tick boom")),
            path("/test.Echo/Split"),
            codec(),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(words.message().await.unwrap().unwrap().text, "tick");
    assert_eq!(words.message().await.unwrap().unwrap().text, "boom");
    let status = words.message().await.unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(status.message(), "boom after the words");

    // Client streaming.
    client.ready().await.unwrap();
    let stream = tokio_stream::iter(["a", "b", "c"].map(echo));
    let joined = client
        .client_streaming(Request::new(stream), path("/test.Echo/Join"), codec())
        .await
        .unwrap();
    assert_eq!(joined.into_inner().text, "a b c");

    // Bidirectional: each answer arrives before the next message is sent,
    // so nothing on the way buffers a whole stream.
    client.ready().await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut answers = client
        .streaming(
            Request::new(tokio_stream::wrappers::ReceiverStream::new(rx)),
            path("/test.Echo/Chat"),
            codec(),
        )
        .await
        .unwrap()
        .into_inner();
    for word in ["ping", "pong", "done"] {
        tx.send(echo(word)).await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(5), answers.message())
            .await
            .expect("the answer comes before the stream ends")
            .unwrap()
            .unwrap();
        assert_eq!(answer.text, word.to_uppercase());
    }
    drop(tx);
    assert!(answers.message().await.unwrap().is_none());
}

fn grpc_group(lb: &LoadBalancer, server: &GrpcServer) -> TargetGroup {
    let group = lb.target_group("grpc");
    group.register(Target::new("grpc-1", server.addr).with_protocol(Protocol::Grpc));
    group
}

fn rules() -> Vec<Rule> {
    vec![
        Rule::new(1, "/test.Echo/*", "grpc"),
        Rule::new(2, "/grpc-plain/*", "grpc"),
        Rule::new(3, "/*", "app"),
    ]
}

async fn https_listener(pki: &Pki, config: ListenerConfig) -> LoadBalancer {
    let certificate = pki.leaf("lb", "grpc.example");
    LoadBalancer::start_https(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        rules(),
        config,
        &[certificate],
    )
    .await
    .unwrap()
}

/// curl's answer: `(http_version, status, body)`.
fn curl(lb: SocketAddr, ca: Option<&Path>, path: &str, extra: &[&str]) -> (String, u16, String) {
    let port = lb.port();
    let mut command = Command::new("curl");
    command.args([
        "-sS",
        "--max-time",
        "10",
        "-w",
        "\n%{http_version} %{http_code}",
    ]);
    match ca {
        Some(ca) => {
            command
                .arg("--cacert")
                .arg(ca)
                .args(["--resolve", &format!("grpc.example:{port}:127.0.0.1")])
                .arg(format!("https://grpc.example:{port}{path}"));
        }
        None => {
            command.arg(format!("http://127.0.0.1:{port}{path}"));
        }
    }
    let output = command.args(extra).output().expect("curl runs");
    assert!(
        output.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').unwrap();
    let (version, status) = tail.split_once(' ').unwrap();
    (version.to_owned(), status.parse().unwrap(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_speaks_http2_and_http1_over_tls_to_an_http1_backend() {
    let pki = Pki::new();
    let lb = https_listener(&pki, ListenerConfig::default()).await;
    let backend = Backend::start("app").await;
    lb.target_group("app")
        .register(Target::new("app-1", backend.addr));
    let addr = lb.local_addr();
    let ca = pki.ca();
    tokio::task::spawn_blocking(move || {
        let (version, status, body) = curl(addr, Some(&ca), "/", &["--http2"]);
        assert_eq!((version.as_str(), status, body.as_str()), ("2", 200, "app"));
        let (version, status, body) = curl(addr, Some(&ca), "/", &["--http1.1"]);
        assert_eq!(
            (version.as_str(), status, body.as_str()),
            ("1.1", 200, "app")
        );
        // The HTTP/1.1 backend gets a Host from :authority and the
        // X-Forwarded-* headers; no HTTP/2 pseudo-header leaks.
        let (_, _, headers) = curl(
            addr,
            Some(&ca),
            "/headers?x=1",
            &["--http2", "-H", "X-Forwarded-For: 203.0.113.9"],
        );
        let port = addr.port();
        assert!(
            headers.contains(&format!("host: grpc.example:{port}")),
            "{headers}"
        );
        assert!(headers.contains("x-forwarded-proto: https"), "{headers}");
        assert!(
            headers.contains(&format!("x-forwarded-host: grpc.example:{port}")),
            "{headers}"
        );
        assert!(
            headers.contains("x-forwarded-for: 203.0.113.9, 127.0.0.1"),
            "{headers}"
        );
        assert!(
            !headers.contains(':') || !headers.contains("\n:"),
            "{headers}"
        );
        // A body both ways, and a streamed chunked answer, over HTTP/2.
        let (_, status, body) = curl(
            addr,
            Some(&ca),
            "/upload",
            &["--http2", "--data-binary", "0123456789"],
        );
        assert_eq!((status, body.as_str()), (200, "10"));
        let (_, status, body) = curl(addr, Some(&ca), "/chunked/100000", &["--http2"]);
        assert_eq!((status, body.len()), (200, 100_000));
    })
    .await
    .unwrap();
    let stats = lb.stats();
    let app = &stats
        .target_groups
        .iter()
        .find(|(name, _)| name == "app")
        .unwrap()
        .1;
    // Every attempt counted under 2xx (the second outcome class).
    assert_eq!(app[0].outcomes[1], 5, "{app:?}");
    assert_eq!(stats.rules[2].requests, 5);
    lb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2load_over_tls_and_h2c_fails_no_request() {
    let pki = Pki::new();
    let config = || ListenerConfig {
        h2c: true,
        ..ListenerConfig::default()
    };
    let tls = https_listener(&pki, config()).await;
    let plain = LoadBalancer::start_with(SocketAddr::from(([127, 0, 0, 1], 0)), rules(), config())
        .await
        .unwrap();
    let backend = Backend::start("app").await;
    for lb in [&tls, &plain] {
        lb.target_group("app")
            .register(Target::new("app-1", backend.addr));
    }
    let urls = [
        format!("https://127.0.0.1:{}/", tls.local_addr().port()),
        format!("http://127.0.0.1:{}/", plain.local_addr().port()),
    ];
    tokio::task::spawn_blocking(move || {
        for url in urls {
            let output = Command::new("h2load")
                .args(["-n", "2000", "-c", "4", "-m", "16", &url])
                .output()
                .expect("h2load runs (Debian's nghttp2-client)");
            let text = String::from_utf8_lossy(&output.stdout);
            assert!(
                text.contains("2000 succeeded, 0 failed, 0 errored"),
                "{url}: {text}"
            );
            assert!(text.contains("Application protocol: h2"), "{url}: {text}");
        }
    })
    .await
    .unwrap();
    // HTTP/1.1 still works on the h2c listener.
    let addr = plain.local_addr();
    let (version, status, body) =
        tokio::task::spawn_blocking(move || curl(addr, None, "/", &["--http1.1"]))
            .await
            .unwrap();
    assert_eq!(
        (version.as_str(), status, body.as_str()),
        ("1.1", 200, "app")
    );
    let (version, _, _) =
        tokio::task::spawn_blocking(move || curl(addr, None, "/", &["--http2-prior-knowledge"]))
            .await
            .unwrap();
    assert_eq!(version, "2");
    tls.shutdown().await;
    plain.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_of_every_kind_pass_through_with_their_trailers() {
    let pki = Pki::new();
    let config = ListenerConfig {
        h2c: true,
        ..ListenerConfig::default()
    };
    let tls = https_listener(&pki, config.clone()).await;
    let plain = LoadBalancer::start_with(SocketAddr::from(([127, 0, 0, 1], 0)), rules(), config)
        .await
        .unwrap();
    let server = GrpcServer::start().await;
    grpc_group(&tls, &server);
    grpc_group(&plain, &server);

    every_kind_of_call(channel(tls.local_addr(), Some(&pki.ca())).await).await;
    every_kind_of_call(channel(plain.local_addr(), None).await).await;

    // gRPC from an HTTP/1.1 client is refused clearly; a plain request to
    // the gRPC target still goes over HTTP/2 (tonic answers UNIMPLEMENTED
    // in its headers).
    let (addr, ca) = (tls.local_addr(), pki.ca());
    tokio::task::spawn_blocking(move || {
        let (_, status, body) = curl(
            addr,
            Some(&ca),
            "/test.Echo/Unary",
            &[
                "--http1.1",
                "-H",
                "content-type: application/grpc",
                "--data-binary",
                "x",
            ],
        );
        assert_eq!(status, 426, "{body}");
        assert!(body.contains("gRPC needs HTTP/2"), "{body}");
        let output = Command::new("curl")
            .args(["-sS", "-D", "-", "-o", "/dev/null", "--http1.1", "--cacert"])
            .arg(&ca)
            .args([
                "--resolve",
                &format!("grpc.example:{}:127.0.0.1", addr.port()),
            ])
            .arg(format!("https://grpc.example:{}/grpc-plain/x", addr.port()))
            .output()
            .unwrap();
        let head = String::from_utf8_lossy(&output.stdout).to_lowercase();
        assert!(head.contains("grpc-status: 12"), "{head}");
    })
    .await
    .unwrap();
    let stats = tls.stats();
    let grpc = &stats
        .target_groups
        .iter()
        .find(|(name, _)| name == "grpc")
        .unwrap()
        .1;
    // Six calls over TLS and the plain request, each a 200 to the proxy.
    assert_eq!(grpc[0].outcomes[1], 7, "{grpc:?}");
    tls.shutdown().await;
    plain.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_health_check_follows_the_serving_status() {
    let lb = LoadBalancer::start(SocketAddr::from(([127, 0, 0, 1], 0)), rules())
        .await
        .unwrap();
    let server = GrpcServer::start().await;
    let group = lb.target_group("grpc");
    group
        .set_health_check(HealthCheckConfig {
            grpc: Some("test.Echo".to_owned()),
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(1000),
            healthy_threshold: 2,
            unhealthy_threshold: 2,
            ..HealthCheckConfig::default()
        })
        .unwrap();
    let mut events = group.subscribe();
    group.register(Target::new("grpc-1", server.addr).with_protocol(Protocol::Grpc));
    group
        .wait_healthy("grpc-1", Duration::from_secs(10))
        .await
        .unwrap();

    server.health.set_not_serving::<EchoService>().await;
    let mut next = async |health| {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let event = events.recv().await.unwrap();
                if event.current == health {
                    return event;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the target turns {health}"))
    };
    let unhealthy = next(gantry_proxy::Health::Unhealthy).await;
    let reason = unhealthy.reason.unwrap_or_default();
    assert!(reason.contains("NOT_SERVING"), "{reason}");

    server.health.set_serving::<EchoService>().await;
    next(gantry_proxy::Health::Healthy).await;

    // A service the server does not know: NOT_FOUND in the trailers.
    let other = lb.target_group("other");
    other
        .set_health_check(HealthCheckConfig {
            grpc: Some("no.Such".to_owned()),
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(1000),
            healthy_threshold: 1,
            unhealthy_threshold: 1,
            ..HealthCheckConfig::default()
        })
        .unwrap();
    other.register(Target::new("grpc-2", server.addr).with_protocol(Protocol::Grpc));
    let error = other
        .wait_healthy("grpc-2", Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("grpc-status 5"), "{error}");
    lb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_connection_that_opens_no_stream_is_closed_at_the_header_timeout() {
    let lb = LoadBalancer::start_with(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        rules(),
        ListenerConfig {
            h2c: true,
            header_read_timeout: Duration::from_millis(300),
            ..ListenerConfig::default()
        },
    )
    .await
    .unwrap();
    // The preface and an empty SETTINGS frame, then silence.
    let mut stream = TcpStream::connect(lb.local_addr()).await.unwrap();
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let mut sink = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut sink))
        .await
        .expect("the proxy closes the connection")
        .ok();
    assert!(started.elapsed() >= Duration::from_millis(250));
    // Half a preface is closed at the same timeout.
    let mut stream = TcpStream::connect(lb.local_addr()).await.unwrap();
    stream.write_all(b"PRI * HTTP/2").await.unwrap();
    let mut sink = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut sink))
        .await
        .expect("the proxy closes the connection")
        .ok();
    assert!(sink.is_empty());
    lb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_in_flight_finishes_while_the_listener_drains() {
    let lb = LoadBalancer::start_with(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        rules(),
        ListenerConfig {
            h2c: true,
            ..ListenerConfig::default()
        },
    )
    .await
    .unwrap();
    let server = GrpcServer::start().await;
    grpc_group(&lb, &server);
    let mut client = tonic::client::Grpc::new(channel(lb.local_addr(), None).await);
    client.ready().await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut answers = client
        .streaming(
            Request::new(tokio_stream::wrappers::ReceiverStream::new(rx)),
            path("/test.Echo/Chat"),
            ProstCodec::<Echo, Echo>::default(),
        )
        .await
        .unwrap()
        .into_inner();
    tx.send(echo("before")).await.unwrap();
    assert_eq!(answers.message().await.unwrap().unwrap().text, "BEFORE");

    // Shutdown waits for the open stream, which keeps working meanwhile.
    let shutdown = tokio::spawn(lb.shutdown());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!shutdown.is_finished());
    tx.send(echo("during")).await.unwrap();
    assert_eq!(answers.message().await.unwrap().unwrap().text, "DURING");
    drop(tx);
    assert!(answers.message().await.unwrap().is_none());
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .expect("shutdown ends once the stream has")
        .unwrap();
}
