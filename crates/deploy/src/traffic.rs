//! Traffic: an environment's load balancer and its services' target groups,
//! reduced to what a deployment needs of them — register a replica, change
//! its weight, drain it, learn when it is healthy.
//!
//! The real implementation is `gantry_proxy`'s: active HTTP health checks
//! decide health, on the proxy's timers. The deployer holds these traits
//! rather than the proxy's types so that its rules (rollout order, the
//! circuit breaker, rollback, blue/green, re-adoption) can be tested with
//! a fake whose replicas turn healthy or unhealthy on command, on tokio's
//! paused clock (`crate::tests::fake`). The proxy's own tests cover its
//! health checks; the server's deploy tests cover the two together.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gantry_proxy::{
    Action, Certificate, HealthCheckConfig, ListenerStats, LoadBalancer, ProxyError, Rule, Target,
    TargetGroup, TargetStatus, WindowStats,
};
use gantry_runtime::BoxFuture;

/// Starts an environment's load balancer.
pub(crate) trait LoadBalancers: Send + Sync {
    fn start(
        &self,
        listen: SocketAddr,
        rules: Vec<Rule>,
    ) -> BoxFuture<'_, Result<Box<dyn Balancer>, ProxyError>>;

    /// Starts a listener with `config` (timeouts, request limits, h2c)
    /// and, given certificates, HTTPS; a fake serves plain HTTP.
    fn start_configured(
        &self,
        listen: SocketAddr,
        rules: Vec<Rule>,
        config: gantry_proxy::ListenerConfig,
        certificates: Option<Vec<Certificate>>,
    ) -> BoxFuture<'_, Result<Box<dyn Balancer>, ProxyError>> {
        let _ = (config, certificates);
        self.start(listen, rules)
    }
}

/// One environment's load balancer: path rules to services' target groups.
pub(crate) trait Balancer: Send + Sync {
    fn local_addr(&self) -> SocketAddr;
    /// Replaces the rules at once.
    fn set_rules(&self, rules: Vec<Rule>);
    /// Replaces the rules and the default action (`None`: a fixed 404) at
    /// once.
    fn set_routing(&self, rules: Vec<Rule>, default_action: Option<Action>) {
        let _ = default_action;
        self.set_rules(rules);
    }
    /// The target group of a service, created empty on first use.
    fn target_group(&self, service: &str) -> Arc<dyn Targets>;
    /// Swaps an HTTPS listener's certificates at once; on an error nothing
    /// changes. A fake has none.
    fn set_certificates(&self, certificates: &[Certificate]) -> Result<(), ProxyError> {
        let _ = certificates;
        Ok(())
    }
    /// Sends a record of every request to `sink`, or stops; a fake keeps
    /// none.
    fn set_access_log(&self, sink: Option<Arc<dyn gantry_proxy::AccessLogSink>>) {
        let _ = sink;
    }
    /// Starts another listener with its own address, rules, limits and
    /// (given certificates) HTTPS that forwards to this one's target
    /// groups; a fake has none.
    fn start_sibling(
        &self,
        listen: SocketAddr,
        rules: Vec<Rule>,
        config: gantry_proxy::ListenerConfig,
        certificates: Option<Vec<Certificate>>,
    ) -> BoxFuture<'_, Result<Box<dyn Balancer>, ProxyError>> {
        let _ = (listen, rules, config, certificates);
        Box::pin(async {
            Err(ProxyError::Worker {
                source: std::io::Error::other("this load balancer starts no sibling listeners"),
            })
        })
    }
    /// Stops listening; in-flight requests finish.
    fn shutdown(self: Box<Self>) -> BoxFuture<'static, ()>;
    /// Request counters and targets, for metrics; a fake has none.
    fn stats(&self) -> Option<ListenerStats> {
        None
    }
}

/// A service's target group, as [`gantry_proxy::TargetGroup`] documents it.
pub(crate) trait Targets: Send + Sync {
    /// Adds a replica: Initial (no traffic while a Healthy one exists) until
    /// it passes its health checks.
    fn register(&self, target: Target);
    fn set_weight(&self, id: &str, weight: u32) -> Result<(), ProxyError>;
    /// Sends the replica no new request at once; resolves once its
    /// in-flight requests finished or `drain` passed.
    fn deregister(&self, id: &str, drain: Duration) -> BoxFuture<'static, ()>;
    fn set_health_check(&self, config: HealthCheckConfig) -> Result<(), ProxyError>;
    /// Sticky sessions for the group's clients (a cookie lasting this
    /// long), or none; a fake has none.
    fn set_stickiness(&self, duration: Option<Duration>) {
        let _ = duration;
    }
    fn targets(&self) -> Vec<TargetStatus>;
    /// Resolves once the replica is Healthy; fails as soon as it is
    /// Unhealthy or draining, or after `timeout`.
    fn wait_healthy<'a>(
        &'a self,
        id: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), ProxyError>>;
    /// Each revision label's requests over the last `window`, as
    /// [`TargetGroup::window_stats`] counts them: what an analysis judges.
    fn window_stats(&self, window: Duration) -> BTreeMap<String, WindowStats>;
    /// Routes requests with `header: always` to `revision`'s targets and
    /// `never` to the others (`None`: the weights alone decide).
    /// Fails only for a header name HTTP refuses.
    fn set_canary_route(&self, route: Option<(String, String)>) -> Result<(), String>;
}

/// The real load balancers: `gantry_proxy` listeners.
pub(crate) struct ProxyLoadBalancers;

impl LoadBalancers for ProxyLoadBalancers {
    fn start_configured(
        &self,
        listen: SocketAddr,
        rules: Vec<Rule>,
        config: gantry_proxy::ListenerConfig,
        certificates: Option<Vec<Certificate>>,
    ) -> BoxFuture<'_, Result<Box<dyn Balancer>, ProxyError>> {
        Box::pin(async move {
            let lb = match certificates {
                Some(certificates) => {
                    LoadBalancer::start_https(listen, rules, config, &certificates).await?
                }
                None => LoadBalancer::start_with(listen, rules, config).await?,
            };
            Ok(Box::new(lb) as Box<dyn Balancer>)
        })
    }

    fn start(
        &self,
        listen: SocketAddr,
        rules: Vec<Rule>,
    ) -> BoxFuture<'_, Result<Box<dyn Balancer>, ProxyError>> {
        Box::pin(async move {
            let lb = LoadBalancer::start(listen, rules).await?;
            Ok(Box::new(lb) as Box<dyn Balancer>)
        })
    }
}

impl Balancer for LoadBalancer {
    fn local_addr(&self) -> SocketAddr {
        LoadBalancer::local_addr(self)
    }

    fn set_access_log(&self, sink: Option<Arc<dyn gantry_proxy::AccessLogSink>>) {
        LoadBalancer::set_access_log(self, sink);
    }

    fn start_sibling(
        &self,
        listen: SocketAddr,
        rules: Vec<Rule>,
        config: gantry_proxy::ListenerConfig,
        certificates: Option<Vec<Certificate>>,
    ) -> BoxFuture<'_, Result<Box<dyn Balancer>, ProxyError>> {
        Box::pin(async move {
            let lb =
                LoadBalancer::start_sibling(self, listen, rules, config, certificates.as_deref())
                    .await?;
            Ok(Box::new(lb) as Box<dyn Balancer>)
        })
    }

    fn set_rules(&self, rules: Vec<Rule>) {
        LoadBalancer::set_rules(self, rules);
    }

    fn set_routing(&self, rules: Vec<Rule>, default_action: Option<Action>) {
        LoadBalancer::set_routing(self, rules, default_action);
    }

    fn set_certificates(&self, certificates: &[Certificate]) -> Result<(), ProxyError> {
        LoadBalancer::set_certificates(self, certificates)
    }

    fn target_group(&self, service: &str) -> Arc<dyn Targets> {
        Arc::new(LoadBalancer::target_group(self, service))
    }

    fn shutdown(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(LoadBalancer::shutdown(*self))
    }

    fn stats(&self) -> Option<ListenerStats> {
        Some(LoadBalancer::stats(self))
    }
}

impl Targets for TargetGroup {
    fn register(&self, target: Target) {
        TargetGroup::register(self, target);
    }

    fn set_weight(&self, id: &str, weight: u32) -> Result<(), ProxyError> {
        TargetGroup::set_weight(self, id, weight)
    }

    fn deregister(&self, id: &str, drain: Duration) -> BoxFuture<'static, ()> {
        Box::pin(TargetGroup::deregister(self, id, drain))
    }

    fn set_health_check(&self, config: HealthCheckConfig) -> Result<(), ProxyError> {
        TargetGroup::set_health_check(self, config)
    }

    fn targets(&self) -> Vec<TargetStatus> {
        TargetGroup::targets(self)
    }

    fn set_stickiness(&self, duration: Option<Duration>) {
        TargetGroup::set_stickiness(self, duration);
    }

    fn wait_healthy<'a>(
        &'a self,
        id: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), ProxyError>> {
        Box::pin(TargetGroup::wait_healthy(self, id, timeout))
    }

    fn window_stats(&self, window: Duration) -> BTreeMap<String, WindowStats> {
        TargetGroup::window_stats(self, window)
    }

    fn set_canary_route(&self, route: Option<(String, String)>) -> Result<(), String> {
        let route = match route {
            Some((header, revision)) => {
                let header = http::HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| format!("{header:?} is not a header name"))?;
                Some((header, revision))
            }
            None => None,
        };
        TargetGroup::set_canary_route(self, route);
        Ok(())
    }
}
