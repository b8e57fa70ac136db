//! A standby answers too: while another server leads (`--database`), a
//! server's API, console and registry listeners forward every request to
//! the leader, whose addresses its lease names (its `--advertise-url`, else
//! its listen address), and hand the answer back,
//! streamed both ways. Once the lease is this server's, the same listeners
//! serve its own routers ([`dispatch`]), with no gap and no second bind.
//!
//! The standby checks the request's host and origin against its own names
//! first, then forwards it with the leader's host and without the origin
//! (which names the standby); the leader authenticates the token and
//! checks the role as for any request. With no leader (the lease ran out
//! and nobody took it yet) the answer is 503 `server.no_leader`; a leader
//! that does not answer is 502 `server.leader_unreachable`.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use gantry_store::{LEADER, Store};
use tower::ServiceExt;

use crate::api::ApiError;
use crate::error::ControlError;
use crate::guard::{self, HostPolicy};

/// Which of the leader's listeners a standby's listener forwards to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listener {
    Api,
    Registry,
}

/// Marks a request a standby forwarded: a standby never forwards it again.
const FORWARDED: &str = "x-gantry-forwarded";

/// How long a standby trusts what it read of the lease.
const LEADER_CACHE: Duration = Duration::from_millis(500);

/// Forwards requests to whichever server leads.
pub(crate) struct Forward {
    store: Store,
    client: reqwest::Client,
    listener: Listener,
    hosts: Arc<HostPolicy>,
    /// The leader's addresses as last read, and when.
    cached: Mutex<Option<(tokio::time::Instant, Option<Advertised>)>>,
}

/// The addresses a leader advertises in its lease's holder:
/// `ID API_URL REGISTRY_HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Advertised {
    pub api: String,
    pub registry: String,
}

impl Advertised {
    /// The lease holder naming this server and its addresses.
    pub(crate) fn holder(&self, id: &str) -> String {
        format!("{id} {} {}", self.api, self.registry)
    }

    fn parse(holder: &str) -> Option<Advertised> {
        let mut parts = holder.split_whitespace().skip(1);
        let api = parts.next()?.to_string();
        let registry = parts.next()?.to_string();
        Some(Advertised { api, registry })
    }
}

impl Forward {
    pub(crate) fn new(
        store: Store,
        listener: Listener,
        hosts: Arc<HostPolicy>,
        ca_pem: Option<&[u8]>,
    ) -> Result<Forward, ControlError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none());
        // A leader serving TLS is trusted by the certificate the servers
        // share (each server's --tls-cert).
        if let Some(pem) = ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ControlError::Options(format!("--tls-cert: {e}")))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .build()
            .map_err(|e| ControlError::Internal(format!("forwarding client: {e}")))?;
        Ok(Forward {
            store,
            client,
            listener,
            hosts,
            cached: Mutex::new(None),
        })
    }

    /// The leader's addresses, read from its lease (cached briefly).
    async fn leader(&self) -> Result<Option<Advertised>, ControlError> {
        let now = tokio::time::Instant::now();
        if let Some((at, leader)) = self
            .cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            && now.duration_since(*at) < LEADER_CACHE
        {
            return Ok(leader.clone());
        }
        let holder = self.store.lease_holder(LEADER).await?;
        let leader = holder
            .filter(|h| !h.expired)
            .and_then(|h| Advertised::parse(&h.holder));
        *self
            .cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((now, leader.clone()));
        Ok(leader)
    }

    async fn forward(&self, request: Request) -> Response {
        if let Some((refused, _)) = guard::refuse_foreign(
            &self.hosts,
            &request,
            guard::host_header(&request).as_deref(),
        ) {
            return refused;
        }
        // A request a standby forwarded, reaching a standby again (a load
        // balancer in front of every server, an old lease): no loop.
        if request.headers().contains_key(FORWARDED) {
            return ApiError::from(ControlError::NoLeader).into_response();
        }
        let leader = match self.leader().await {
            Ok(Some(leader)) => leader,
            Ok(None) => return ApiError::from(ControlError::NoLeader).into_response(),
            Err(error) => return ApiError::from(error).into_response(),
        };
        let base = match self.listener {
            Listener::Api => leader.api.trim_end_matches('/').to_string(),
            Listener::Registry => {
                let scheme = if leader.api.starts_with("https://") {
                    "https"
                } else {
                    "http"
                };
                format!("{scheme}://{}", leader.registry)
            }
        };
        let (parts, body) = request.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", axum::http::uri::PathAndQuery::as_str);
        let mut outbound = self
            .client
            .request(parts.method.clone(), format!("{base}{path}"));
        for (name, value) in &parts.headers {
            if !hop_by_hop(name) && name != header::HOST && name != header::ORIGIN {
                outbound = outbound.header(name, value);
            }
        }
        outbound = outbound.header(FORWARDED, "1");
        let stream = body.into_data_stream();
        let answer = outbound
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) => {
                tracing::warn!(leader = %base, error = %error.without_url(), "Forwarding to the leader failed.");
                return ApiError::from(ControlError::LeaderUnreachable(base)).into_response();
            }
        };
        let mut response = Response::builder().status(answer.status());
        for (name, value) in answer.headers() {
            if !hop_by_hop(name) {
                response = response.header(name, value);
            }
        }
        let body = Body::from_stream(answer.bytes_stream().map_err(std::io::Error::other));
        response.body(body).unwrap_or_else(|_| {
            ApiError::from(ControlError::LeaderUnreachable(base)).into_response()
        })
    }
}

/// Headers that belong to one connection, not to the request.
fn hop_by_hop(name: &HeaderName) -> bool {
    [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
    ]
    .contains(name)
        || name.as_str() == "keep-alive"
}

/// A listener's router: this server's own once it leads (`own` is set),
/// else every request forwarded to the leader.
pub(crate) fn dispatch(own: Arc<OnceLock<Router>>, forward: Arc<Forward>) -> Router {
    Router::new().fallback(move |request: Request| {
        let (own, forward) = (own.clone(), forward.clone());
        async move {
            match own.get() {
                Some(router) => match router.clone().oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                },
                None => forward.forward(request).await,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_names_the_leaders_addresses() {
        let advertised = Advertised {
            api: "https://a.example:7700".into(),
            registry: "a.example:7701".into(),
        };
        let holder = advertised.holder("host:12:abc");
        assert_eq!(Advertised::parse(&holder), Some(advertised));
        // A holder written by a server of before: no addresses.
        assert_eq!(Advertised::parse("host:12:abc"), None);
    }
}
