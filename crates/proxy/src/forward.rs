//! One proxied request: route it, pick a target, rewrite headers, send it
//! upstream (retrying once when that is safe), and stream the answer back —
//! or hand both connections to a tunnel after a protocol upgrade.
//!
//! A request that came over HTTP/2 gets a Host header from its
//! `:authority` before anything reads it, so rules, `X-Forwarded-Host` and
//! an HTTP/1.1 target see what an HTTP/1.1 client would have sent.
//! HTTP/2 and gRPC targets are sent the request over h2c instead
//! (`forward_h2`), frames and trailers as they come.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{
    CONNECTION, CONTENT_TYPE, Entry, HOST, HeaderMap, HeaderName, HeaderValue, LOCATION,
    SET_COOKIE, TE, UPGRADE,
};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::access_log::{Matched, Pending};
use crate::body::ResponseBody;
use crate::http2::Http2Upstreams;
use crate::rule::{RequestView, RouteAction, RouteTable};
use crate::stats::Outcome;
use crate::target_group::{InFlight, Protocol, TargetGroup};
use crate::upstream::{UpstreamError, UpstreamRequest, Upstreams};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// What a worker needs to forward requests. Each worker has its own, so its
/// pool of upstream connections is driven by the worker's own thread.
pub(crate) struct Forwarder {
    /// Shared by the listener and every worker's forwarder.
    routes: Arc<ArcSwap<RouteTable>>,
    /// Whether the listener terminates TLS (`X-Forwarded-Proto`, `#{protocol}`).
    tls: bool,
    local_port: u16,
    upstreams: Arc<Upstreams>,
    /// Connections to HTTP/2 and gRPC targets.
    h2_upstreams: Http2Upstreams,
    upstream_timeout: Duration,
    /// The largest request body forwarded (`ListenerConfig::max_body_size`).
    max_body: Option<u64>,
    /// Tunnels of upgraded connections live here so shutdown can wait for,
    /// and end, them.
    tunnels: TaskTracker,
    /// Ends tunnels when the listener starts shutting down: an upgraded
    /// connection has no request boundary at which to stop gracefully.
    closing: CancellationToken,
}

enum Failure {
    Timeout,
    BodyTooLarge,
    Upstream(UpstreamError),
}

impl Forwarder {
    pub(crate) fn new(
        routes: Arc<ArcSwap<RouteTable>>,
        tls: bool,
        local_port: u16,
        upstream_timeout: Duration,
        max_body: Option<u64>,
        tunnels: TaskTracker,
        closing: CancellationToken,
    ) -> Self {
        Self {
            routes,
            tls,
            local_port,
            upstreams: Arc::default(),
            h2_upstreams: Http2Upstreams::default(),
            upstream_timeout,
            max_body,
            tunnels,
            closing,
        }
    }

    /// Never fails: every problem becomes the response ALB would give.
    /// Returns a `Result` only because hyper's service must; doing so here
    /// rather than in a wrapping future keeps each request's future smaller.
    pub(crate) async fn handle(
        self: Arc<Self>,
        client_ip: HeaderValue,
        peer: IpAddr,
        request: Request<Incoming>,
    ) -> Result<Response<ResponseBody>, Infallible> {
        let mut matched = Matched::default();
        let Some(sink) = self.routes.load().access_log().cloned() else {
            return Ok(self
                .handle_request(client_ip, peer, request, &mut matched)
                .await);
        };
        let pending = Pending::start(&request, peer, self.tls);
        let response = self
            .handle_request(client_ip, peer, request, &mut matched)
            .await;
        Ok(pending.finish(response, matched, sink))
    }

    async fn handle_request(
        &self,
        client_ip: HeaderValue,
        peer: IpAddr,
        mut request: Request<Incoming>,
        matched: &mut Matched,
    ) -> Response<ResponseBody> {
        // A tunnel to an arbitrary authority is a forward proxy's job, and
        // ALB refuses it too.
        if request.method() == Method::CONNECT {
            return fixed(StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not supported\n");
        }
        if let Some(max) = self.max_body
            && request
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .is_some_and(|len| len > max)
        {
            return fixed(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is larger than this listener takes\n",
            );
        }
        if request.version() == Version::HTTP_2 {
            host_from_authority(&mut request);
        }
        let group = {
            let routes = self.routes.load();
            let view = RequestView {
                method: request.method(),
                uri: request.uri(),
                headers: request.headers(),
                peer,
                tls: self.tls,
                local_port: self.local_port,
            };
            let (action, rule) = routes.route(&view);
            matched.rule = rule;
            match action {
                Some(RouteAction::Forward(group)) => group.clone(),
                Some(RouteAction::Weighted(weighted)) => match weighted.pick() {
                    Some(group) => group.clone(),
                    None => {
                        return fixed(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "every target group of this rule has weight 0\n",
                        );
                    }
                },
                Some(RouteAction::Redirect(redirect)) => {
                    return redirect_response(redirect.status, &redirect.location(&view));
                }
                Some(RouteAction::Fixed {
                    status,
                    content_type,
                    body,
                }) => {
                    let mut response = Response::new(ResponseBody::Fixed(Some(body.clone())));
                    *response.status_mut() = *status;
                    response
                        .headers_mut()
                        .insert(CONTENT_TYPE, content_type.clone());
                    return response;
                }
                None => {
                    return fixed(
                        StatusCode::NOT_FOUND,
                        "no listener rule matches this path\n",
                    );
                }
            }
        };
        let upgrade = is_upgrade(request.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
        let (mut parts, body) = request.into_parts();
        let path_and_query = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        strip_hop_by_hop(&mut parts.headers, upgrade);
        add_forwarded(&mut parts.headers, client_ip, self.tls);

        let Some(first) = group.pick_for(None, Some(&parts.headers)) else {
            return fixed(
                StatusCode::SERVICE_UNAVAILABLE,
                "the target group has no target that can take requests\n",
            );
        };
        if first.endpoint().protocol != Protocol::Http1 {
            if upgrade {
                return fixed(
                    StatusCode::NOT_IMPLEMENTED,
                    "protocol upgrades are not forwarded to HTTP/2 targets\n",
                );
            }
            return self.forward_h2(&group, first, parts, body, matched).await;
        }
        // Only a request that is safe to repeat and has no body (so nothing
        // of it is lost with the first attempt) may go to a second target.
        let retryable =
            (parts.method == Method::GET || parts.method == Method::HEAD) && body.is_end_stream();
        let mut client_body = (!retryable).then_some(body);
        let mut target = first;
        let mut last = !retryable;
        let outcome = loop {
            matched.target = Some(target.endpoint().addr);
            let request = UpstreamRequest {
                method: &parts.method,
                path_and_query: &path_and_query,
                headers: &parts.headers,
                default_host: &target.endpoint().host,
                max_body: self.max_body,
            };
            // Bounded from connect to response head, as ALB's idle timeout
            // bounds a target that accepts and then says nothing.
            let attempt = self.upstreams.send(
                target.endpoint().addr,
                &request,
                client_body.take(),
                self.upstream_timeout,
            );
            let started = tokio::time::Instant::now();
            let result = attempt.await;
            target.record(
                match &result {
                    Ok(answer) => Outcome::Answered(answer.response.status().as_u16()),
                    Err(UpstreamError::Timeout) => Outcome::TimedOut,
                    Err(_) => Outcome::ConnectionFailed,
                },
                started,
            );
            match result {
                Ok(answer) => break Ok((answer, target)),
                // A timed-out request may still be running on the target;
                // trying it elsewhere would double the wait and the work.
                Err(UpstreamError::Timeout) => break Err(Failure::Timeout),
                Err(UpstreamError::BodyTooLarge) => break Err(Failure::BodyTooLarge),
                Err(error) if !last => {
                    tracing::debug!(
                        target_group = %group.name(), target = %target.endpoint().id,
                        %error, "upstream failed; retrying the idempotent request"
                    );
                    // Another target if there is one; the same one only if
                    // it was reached at all (a pooled connection closing
                    // under the request), since a refused connect will be
                    // refused again.
                    let headers = Some(&parts.headers);
                    let next = group
                        .pick_for(Some(target.endpoint()), headers)
                        .or_else(|| {
                            (!error.is_connect())
                                .then(|| group.pick_for(None, headers))
                                .flatten()
                        });
                    match next {
                        Some(next) => {
                            target = next;
                            last = true;
                        }
                        None => break Err(Failure::Upstream(error)),
                    }
                }
                Err(error) => break Err(Failure::Upstream(error)),
            }
        };

        let (mut answer, in_flight) = match outcome {
            Ok(answered) => answered,
            Err(Failure::Timeout) => {
                tracing::warn!(target_group = %group.name(), timeout = ?self.upstream_timeout, "upstream timed out");
                return fixed(
                    StatusCode::GATEWAY_TIMEOUT,
                    "the target did not answer in time\n",
                );
            }
            Err(Failure::BodyTooLarge) => {
                return fixed(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the request body is larger than this listener takes\n",
                );
            }
            Err(Failure::Upstream(error)) => {
                tracing::warn!(target_group = %group.name(), %error, "upstream request failed");
                return fixed(StatusCode::BAD_GATEWAY, "the target failed to answer\n");
            }
        };

        if let Some((upstream, early)) = answer.take_upgraded() {
            let Some(client_upgrade) = client_upgrade else {
                return fixed(
                    StatusCode::BAD_GATEWAY,
                    "the target switched protocols without being asked\n",
                );
            };
            let mut response = answer.response;
            strip_hop_by_hop(response.headers_mut(), true);
            self.tunnels.spawn(tunnel(
                client_upgrade,
                upstream,
                early,
                in_flight,
                self.closing.clone(),
            ));
            return response.map(|_| ResponseBody::empty());
        }
        let mut response = answer.response;
        strip_hop_by_hop(response.headers_mut(), false);
        if let Some(cookie) = group.sticky_cookie(in_flight.endpoint()) {
            response.headers_mut().append(SET_COOKIE, cookie);
        }
        response.map(|body| ResponseBody::Upstream {
            body,
            _in_flight: in_flight,
        })
    }
}

impl Forwarder {
    /// Sends a request to an HTTP/2 or gRPC target over h2c and streams the
    /// answer back, trailers included. A GET or HEAD without a body whose
    /// target refused the connection is tried once on another target, as
    /// on HTTP/1.1.
    async fn forward_h2(
        &self,
        group: &TargetGroup,
        mut target: InFlight,
        parts: http::request::Parts,
        body: Incoming,
        matched: &mut Matched,
    ) -> Response<ResponseBody> {
        if target.endpoint().protocol == Protocol::Grpc
            && parts.version != Version::HTTP_2
            && is_grpc(&parts.headers)
        {
            // gRPC ends every call with trailers, which HTTP/1.1 cannot
            // carry to most clients: refuse rather than half-work.
            let mut response = fixed(
                StatusCode::UPGRADE_REQUIRED,
                "gRPC needs HTTP/2: use https (ALPN h2) or an h2c listener\n",
            );
            response
                .headers_mut()
                .insert(UPGRADE, HeaderValue::from_static("h2"));
            return response;
        }
        let h2_client = parts.version == Version::HTTP_2;
        let retryable =
            (parts.method == Method::GET || parts.method == Method::HEAD) && body.is_end_stream();
        let mut body = (!retryable).then_some(body);
        let mut last = !retryable;
        loop {
            matched.target = Some(target.endpoint().addr);
            let request = match h2_request(&parts, &target, body.take(), h2_client) {
                Ok(request) => request,
                Err(response) => return response,
            };
            let started = tokio::time::Instant::now();
            let result = tokio::time::timeout(
                self.upstream_timeout,
                self.h2_upstreams.send(target.endpoint().addr, request),
            )
            .await;
            target.record(
                match &result {
                    Ok(Ok(response)) => Outcome::Answered(response.status().as_u16()),
                    Ok(Err(_)) => Outcome::ConnectionFailed,
                    Err(_) => Outcome::TimedOut,
                },
                started,
            );
            match result {
                Ok(Ok(response)) => {
                    let mut response = response;
                    strip_hop_by_hop(response.headers_mut(), false);
                    // The listener answers in its client's version.
                    *response.version_mut() = Version::HTTP_11;
                    return response.map(|body| ResponseBody::Http2 {
                        body,
                        _in_flight: target,
                    });
                }
                Err(_) => {
                    tracing::warn!(target_group = %group.name(), timeout = ?self.upstream_timeout, "upstream timed out");
                    return fixed(
                        StatusCode::GATEWAY_TIMEOUT,
                        "the target did not answer in time\n",
                    );
                }
                Ok(Err(error)) => {
                    let next = (!last && error.is_connect())
                        .then(|| group.pick_for(Some(target.endpoint()), Some(&parts.headers)))
                        .flatten();
                    match next {
                        Some(next) => {
                            tracing::debug!(
                                target_group = %group.name(), target = %target.endpoint().id,
                                %error, "HTTP/2 target refused; retrying the idempotent request"
                            );
                            target = next;
                            last = true;
                        }
                        None => {
                            tracing::warn!(target_group = %group.name(), %error, "upstream request failed");
                            return fixed(StatusCode::BAD_GATEWAY, "the target failed to answer\n");
                        }
                    }
                }
            }
        }
    }
}

/// The request as an HTTP/2 target gets it: an absolute URI whose
/// authority is the client's Host (HTTP/2 carries it as `:authority`), the
/// same headers but Host, and `te: trailers` for an HTTP/2 client, which
/// is how gRPC says it reads trailers. Returns the response to give when
/// the Host does not make a URI.
#[allow(clippy::result_large_err)] // The error is the response, built once.
fn h2_request(
    parts: &http::request::Parts,
    target: &InFlight,
    body: Option<Incoming>,
    h2_client: bool,
) -> Result<Request<crate::http2::Http2RequestBody>, Response<ResponseBody>> {
    let authority = parts.headers.get(HOST).unwrap_or(&target.endpoint().host);
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let Ok(uri) = Uri::builder()
        .scheme("http")
        .authority(authority.as_bytes())
        .path_and_query(path)
        .build()
    else {
        return Err(fixed(
            StatusCode::BAD_REQUEST,
            "the Host header is not a valid authority\n",
        ));
    };
    let mut headers = parts.headers.clone();
    headers.remove(HOST);
    if h2_client {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    }
    let body = match body {
        Some(body) => http_body_util::Either::Left(body),
        None => http_body_util::Either::Right(http_body_util::Empty::new()),
    };
    let mut request = Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_2;
    *request.headers_mut() = headers;
    Ok(request)
}

/// Whether a request is a native gRPC call: `application/grpc`, alone or
/// followed by `+FORMAT` or parameters. gRPC-Web (`application/grpc-web…`)
/// carries its trailers in the body and works over HTTP/1.1, so it is not.
fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes()
            .strip_prefix(b"application/grpc")
            .is_some_and(|rest| matches!(rest.first(), None | Some(b'+' | b';')))
    })
}

/// An HTTP/2 request names its host in `:authority`, which hyper keeps in
/// the URI; a Host header, if the client also sent one, wins (RFC 9113
/// §8.3.1 says they must agree).
fn host_from_authority(request: &mut Request<Incoming>) {
    if request.headers().contains_key(HOST) {
        return;
    }
    if let Some(authority) = request.uri().authority()
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        request.headers_mut().insert(HOST, host);
    }
}

/// Copies bytes both ways between the upgraded client connection and the
/// target's socket until either side closes or the listener shuts down.
/// `early` is what the target sent right after its 101. The in-flight guard
/// keeps a draining target waiting for the tunnel.
async fn tunnel(
    client: OnUpgrade,
    mut upstream: TcpStream,
    early: Bytes,
    in_flight: InFlight,
    closing: CancellationToken,
) {
    let client = match client.await {
        Ok(client) => client,
        Err(error) => {
            tracing::debug!(%error, "protocol upgrade failed");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let relay = async {
        if !early.is_empty() {
            client.write_all(&early).await?;
        }
        tokio::io::copy_bidirectional(&mut client, &mut upstream).await
    };
    tokio::select! {
        result = relay => {
            if let Err(error) = result {
                tracing::debug!(target = %in_flight.endpoint().id, %error, "upgraded connection ended");
            }
        }
        () = closing.cancelled() => {}
    }
}

fn fixed(status: StatusCode, message: &'static str) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::Fixed(Some(Bytes::from_static(
        message.as_bytes(),
    ))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A redirect action's answer. A `Location` that is not a valid header
/// value (a placeholder filled with odd bytes) becomes a 400, as a request
/// that cannot be redirected.
fn redirect_response(status: u16, location: &str) -> Response<ResponseBody> {
    let Ok(location) = HeaderValue::from_str(location) else {
        return fixed(
            StatusCode::BAD_REQUEST,
            "the request cannot be redirected\n",
        );
    };
    let status = if status == 302 {
        StatusCode::FOUND
    } else {
        StatusCode::MOVED_PERMANENTLY
    };
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = status;
    response.headers_mut().insert(LOCATION, location);
    response
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE) && connection_lists(headers, "upgrade")
}

fn connection_lists(headers: &HeaderMap, token: &str) -> bool {
    headers.get_all(CONNECTION).iter().any(|value| {
        value
            .to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1), plus
/// the `Proxy-*` family, which is addressed to proxies.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    let name = name.as_str();
    matches!(
        name,
        "connection" | "keep-alive" | "te" | "trailer" | "transfer-encoding" | "upgrade"
    ) || name.starts_with("proxy-")
}

/// Removes hop-by-hop headers, including those the Connection header names.
/// For an upgrade, `Connection: upgrade` and `Upgrade` must reach the other
/// side, so they are kept.
fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // The common request has none; finding that out allocates nothing.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let mut doomed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    doomed.extend(headers.keys().filter(|name| is_hop_by_hop(name)).cloned());
    for name in &doomed {
        if keep_upgrade && (name == CONNECTION || name == UPGRADE) {
            continue;
        }
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Appends this hop to the `X-Forwarded-*` chains, as ALB does for
/// `X-Forwarded-For`; the original Host header is left untouched.
fn add_forwarded(headers: &mut HeaderMap, client_ip: HeaderValue, tls: bool) {
    let host = headers.get(HOST).cloned();
    append_forwarded(headers, X_FORWARDED_FOR, client_ip);
    let proto = HeaderValue::from_static(if tls { "https" } else { "http" });
    append_forwarded(headers, X_FORWARDED_PROTO, proto);
    if let Some(host) = host {
        append_forwarded(headers, X_FORWARDED_HOST, host);
    }
}

/// Joins existing values and ours into one comma-separated line, which is
/// how every framework reads these headers.
fn append_forwarded(headers: &mut HeaderMap, name: HeaderName, value: HeaderValue) {
    match headers.entry(name) {
        Entry::Vacant(entry) => {
            entry.insert(value);
        }
        Entry::Occupied(mut entry) => {
            let mut joined = Vec::new();
            for existing in entry.iter() {
                joined.extend_from_slice(existing.as_bytes());
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(value.as_bytes());
            match HeaderValue::from_bytes(&joined) {
                Ok(joined) => {
                    entry.insert(joined);
                }
                // Existing values were valid and so is ours, so the join is;
                // appending a separate line is the harmless fallback anyway.
                Err(_) => entry.append(value),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for &(name, value) in pairs {
            map.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        map
    }

    #[test]
    fn hop_by_hop_headers_and_those_named_by_connection_go() {
        let mut map = headers(&[
            ("connection", "keep-alive, x-session-hop"),
            ("keep-alive", "timeout=5"),
            ("x-session-hop", "1"),
            ("proxy-authorization", "secret"),
            ("te", "trailers"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut map, false);
        assert_eq!(
            map.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            ["accept"]
        );
    }

    #[test]
    fn upgrades_keep_connection_and_upgrade() {
        let mut map = headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
            ("keep-alive", "timeout=5"),
        ]);
        assert!(is_upgrade(&map));
        strip_hop_by_hop(&mut map, true);
        assert_eq!(map["connection"], "upgrade");
        assert_eq!(map["upgrade"], "websocket");
        assert!(!map.contains_key("keep-alive"));
    }

    #[test]
    fn grpc_calls_are_told_from_grpc_web_by_content_type() {
        for (content_type, grpc) in [
            ("application/grpc", true),
            ("application/grpc+proto", true),
            ("application/grpc;charset=utf-8", true),
            ("application/grpc-web", false),
            ("application/grpc-web+proto", false),
            ("application/grpcx", false),
            ("application/json", false),
        ] {
            let map = headers(&[("content-type", content_type)]);
            assert_eq!(is_grpc(&map), grpc, "{content_type}");
        }
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn forwarded_headers_append_to_existing_chains() {
        let mut map = headers(&[
            ("host", "app.example"),
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-for", "198.51.100.2"),
        ]);
        add_forwarded(&mut map, HeaderValue::from_static("127.0.0.1"), false);
        assert_eq!(
            map["x-forwarded-for"],
            "203.0.113.7, 198.51.100.2, 127.0.0.1"
        );
        assert_eq!(map["x-forwarded-proto"], "http");
        assert_eq!(map["x-forwarded-host"], "app.example");
        assert_eq!(map["host"], "app.example");
    }
}
