//! Retry: which failures are worth another try, and how long to wait first.
//!
//! A failure is *transient* when trying again may help: a `5xx` answer or a
//! transport error (refused or dropped connection, timeout). A `4xx` is the
//! registry's final word and is reported verbatim. Tries are spaced by the
//! [`RetryPolicy`]: `base_delay`, then twice that, and so on.
//!
//! Two things are retried, both through [`Tries`], so the policy is applied in
//! one place:
//!
//! - **one request** ([`RegistryClient::send_retrying`]), when nothing of it
//!   has been consumed yet: the request is rebuilt and sent again;
//! - **a whole operation** ([`RegistryClient::retry_operation`]), when a step
//!   inside it cannot be repeated alone: an upload whose `PATCH` failed has a
//!   session offset nobody knows, and a download into a file has already
//!   written bytes, so both start over from the beginning.
//!
//! This is the registry client's only backoff; the runtime's restart backoff
//! for replicas is another concept and lives there.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use reqwest::{RequestBuilder, Response};

use super::{Call, RegistryClient, RegistryError};

/// How often and how patiently a failed request is tried again.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Tries in all, the first included (at least 1).
    pub attempts: u32,
    /// The wait before the second try; it doubles for each later one.
    pub base_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(200),
        }
    }
}

impl RetryPolicy {
    /// The wait after the failed try number `attempt` (counted from 0).
    fn delay(&self, attempt: u32) -> Duration {
        self.base_delay.saturating_mul(1u32 << attempt.min(16))
    }
}

/// Whether an answer's status may go away on its own (the registry or a proxy
/// in front of it is overloaded, restarting, or failing over).
fn is_transient_status(status: u16) -> bool {
    status >= 500
}

/// Whether a transport error may go away on its own.
fn is_transient_transport(error: &reqwest::Error) -> bool {
    error.is_connect() || error.is_timeout() || error.is_request() || error.is_body()
}

impl RegistryError {
    /// Whether trying the whole operation again may help (5xx, connection loss).
    fn is_transient(&self) -> bool {
        match self {
            RegistryError::Status { status, .. } => is_transient_status(*status),
            RegistryError::Unreachable { .. } => true,
            _ => false,
        }
    }
}

/// The tries of one request or operation: how many were made, whether
/// another is allowed, and the wait before it.
struct Tries {
    policy: RetryPolicy,
    allowed: u32,
    made: u32,
}

impl Tries {
    /// The first try; more follow only when `retry`.
    fn new(policy: RetryPolicy, retry: bool) -> Tries {
        Tries {
            policy,
            allowed: if retry { policy.attempts.max(1) } else { 1 },
            made: 1,
        }
    }

    /// Whether another try may follow the current one.
    fn more(&self) -> bool {
        self.made < self.allowed
    }

    /// Logs why the current try failed and gives the wait before the next.
    fn wait(&mut self, call: &Call<'_>, why: &dyn Display) -> tokio::time::Sleep {
        tracing::warn!(image = %call.image, what = %call.what, reason = %why, tries = self.made, "transient registry failure, trying again");
        let delay = self.policy.delay(self.made - 1);
        self.made += 1;
        tokio::time::sleep(delay)
    }
}

impl RegistryClient {
    /// Sends a request built (and authorized) anew by `build` for each try and,
    /// when `retry`, tries again on 5xx answers and transient transport errors.
    /// The last answer is returned whatever its status.
    pub(super) async fn send_retrying<F>(
        &self,
        call: &Call<'_>,
        retry: bool,
        build: &mut F,
    ) -> Result<Response, RegistryError>
    where
        F: FnMut() -> Result<RequestBuilder, RegistryError>,
    {
        let mut tries = Tries::new(self.inner.options.retry, retry);
        loop {
            let request = self.authorize(call, build()?)?;
            let why = match request.send().await {
                Ok(response) if is_transient_status(response.status().as_u16()) && tries.more() => {
                    format!("registry answered {}", response.status())
                }
                Ok(response) => return Ok(response),
                Err(source) if is_transient_transport(&source) && tries.more() => {
                    format!("registry unreachable: {source}")
                }
                Err(source) => return Err(call.unreachable(tries.made, source)),
            };
            tries.wait(call, &why).await;
        }
    }

    /// Runs `operation` and starts it over from the beginning after a transient
    /// failure, up to the policy's number of tries.
    pub(super) async fn retry_operation<T, F, Fut>(
        &self,
        call: &Call<'_>,
        mut operation: F,
    ) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        let mut tries = Tries::new(self.inner.options.retry, true);
        loop {
            match operation().await {
                Err(e) if e.is_transient() && tries.more() => tries.wait(call, &e).await,
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_delay() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay(0), Duration::from_millis(200));
        assert_eq!(policy.delay(1), Duration::from_millis(400));
        assert_eq!(policy.delay(2), Duration::from_millis(800));
        assert!(policy.delay(100) >= Duration::from_millis(200));
    }

    #[test]
    fn only_server_errors_and_lost_connections_are_transient() {
        let status = |status| RegistryError::Status {
            image: "r/app".into(),
            what: "GET manifest".into(),
            status,
            body: String::new(),
        };
        for (error, transient) in [
            (status(500), true),
            (status(502), true),
            (status(503), true),
            (status(400), false),
            (status(401), false),
            (status(404), false),
            (status(429), false),
            (
                RegistryError::ManifestNotFound {
                    image: "r/app".into(),
                },
                false,
            ),
            (
                RegistryError::DigestMismatch {
                    image: "r/app".into(),
                    what: "GET manifest".into(),
                    expected: "sha256:a".into(),
                    actual: "sha256:b".into(),
                },
                false,
            ),
        ] {
            assert_eq!(error.is_transient(), transient, "{error}");
        }
    }
}
