//! Live updates: `GET /events` is a stream of server-sent events, one
//! `change` event (its data the state's version) each time
//! [`ControlPlane::changes`](crate::control::ControlPlane::changes) moves.
//! The page's script then re-fetches its live fragment; changes that come
//! while it fetches coalesce into one more fetch. A stream ends after
//! [`STREAM_LIFETIME`] (the browser reconnects, and its session is checked
//! again), and a keep-alive comment every 15 s keeps proxies from closing it.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use gantry_auth::{Permission, Target};

use super::{Console, Failure};
use crate::guard::Caller;

/// How long one event stream lives before the browser must reconnect.
pub(super) const STREAM_LIFETIME: Duration = Duration::from_secs(10 * 60);

pub(super) async fn events(
    State(console): State<Console>,
    caller: Caller,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Failure> {
    caller
        .require(Permission::Read, Target::any())
        .map_err(|e| Failure {
            status: axum::http::StatusCode::FORBIDDEN,
            code: e.code(),
            message: e.to_string(),
        })?;
    let rx = console.plane().changes();
    let deadline = gantry_clock::Instant::now() + STREAM_LIFETIME;
    let stream = futures_util::stream::unfold(rx, move |mut rx| async move {
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {
                let version = *rx.borrow_and_update();
                let event = Event::default().event("change").data(version.to_string());
                Some((Ok(event), rx))
            }
            // The stream's time is up, or the server is going away.
            _ => None,
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
