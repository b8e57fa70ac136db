//! Apply: registering environments and services. A project's files become
//! the deployer's environments (one load balancer each, with the project's
//! path rules) and the services they may run; the files are stored, so the
//! next server restores them before it re-adopts replicas.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use gantry_api::environment::ListenerCertificate;
use gantry_clock::now_ms;
use gantry_params::Selector;
use gantry_proxy::{Action, Certificate, Cidr, Conditions, FixedResponse, Redirect, Rule};
use gantry_spec::environment::{self as spec, Environment};
use gantry_spec::{assemble, parse_document};
use tokio::sync::Mutex;

use crate::acme::{self, Issued, Paths, Renewal};
use crate::deployer::{Deployer, EnvState, runtime_name};
use crate::error::DeployError;
use crate::traffic::Balancer;

/// The proxy rules of an environment's (first) listener.
pub(crate) fn rules_of(env: &Environment) -> Vec<Rule> {
    let Some(lb) = &env.load_balancer else {
        return Vec::new();
    };
    let Some(listener) = serving(lb) else {
        return Vec::new();
    };
    lb.rules_of(&listener.name)
        .map(|rule| Rule {
            priority: rule.priority,
            conditions: conditions_of(&rule.conditions),
            action: action_of(&rule.action),
        })
        .collect()
}

/// The default action of an environment's (first) listener.
pub(crate) fn default_action_of(env: &Environment) -> Option<Action> {
    let listener = serving(env.load_balancer.as_ref()?)?;
    listener.default_action.as_ref().map(action_of)
}

fn conditions_of(conditions: &spec::Conditions) -> Conditions {
    Conditions {
        host: conditions.host.clone(),
        path: conditions
            .path
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect(),
        header: conditions.header.clone(),
        method: conditions.method.clone(),
        query: conditions
            .query
            .iter()
            .map(|(key, value)| (Some(key.clone()), value.clone()))
            .collect(),
        // The spec checked every block.
        source_ip: conditions
            .source_ip
            .iter()
            .filter_map(|block| Cidr::parse(block).ok())
            .collect(),
    }
}

fn action_of(action: &spec::Action) -> Action {
    match action {
        spec::Action::Forward { service } => Action::Forward {
            target_group: service.to_string(),
        },
        spec::Action::WeightedForward { targets } => Action::WeightedForward {
            target_groups: targets
                .iter()
                .map(|(service, weight)| (service.to_string(), *weight))
                .collect(),
        },
        spec::Action::Redirect(r) => Action::Redirect(Redirect {
            protocol: r.protocol.clone(),
            host: r.host.clone(),
            port: r.port.clone(),
            path: r.path.clone(),
            query: r.query.clone(),
            status: r.status,
        }),
        spec::Action::FixedResponse(f) => Action::FixedResponse(FixedResponse {
            status: f.status,
            content_type: f.content_type.clone(),
            body: f.body.clone(),
        }),
    }
}

/// The summary line of a certificate an https listener now serves.
fn pin_line(environment: &str, env: &Environment, pin: &ListenerCertificate) -> String {
    let listener = env
        .load_balancer
        .as_ref()
        .and_then(serving)
        .map_or("default", |l| l.name.as_str());
    format!(
        "environment {environment}: listener {listener} serves certificate {} version {} with key {} version {}",
        pin.cert, pin.cert_version, pin.key, pin.key_version
    )
}

/// The listener that serves the rules: the first without `redirect_to`.
pub(crate) fn serving(lb: &spec::LoadBalancer) -> Option<&spec::Listener> {
    lb.listeners.iter().find(|l| l.redirect_to.is_none())
}

/// The listeners that only redirect to the serving one.
fn redirecting(env: &Environment) -> Vec<&spec::Listener> {
    env.load_balancer
        .iter()
        .flat_map(|lb| &lb.listeners)
        .filter(|l| l.redirect_to.is_some())
        .collect()
}

/// How a listener of the file starts: its timeouts, request limits and
/// h2c, each absent one the load balancer's default. They apply when the
/// listener starts (a change to a running one takes a server restart).
fn listener_config(listener: &spec::Listener) -> gantry_proxy::ListenerConfig {
    let mut config = gantry_proxy::ListenerConfig {
        h2c: listener.http2 && listener.protocol == spec::Protocol::Http,
        ..gantry_proxy::ListenerConfig::default()
    };
    let limits = &listener.limits;
    if let Some(idle) = limits.idle_timeout {
        config.idle_timeout = idle;
    }
    if let Some(header) = limits.header_timeout {
        config.header_read_timeout = header;
    }
    if let Some(max) = limits.max_header_size {
        config.max_header_size = usize::try_from(max).unwrap_or(usize::MAX);
    }
    config.max_body_size = limits.max_body_size;
    config
}

/// A redirect listener's one action: everything to https on `port`.
pub(crate) fn redirect_to_https(port: u16) -> Action {
    Action::Redirect(Redirect {
        protocol: Some("https".to_owned()),
        port: Some(port.to_string()),
        status: 301,
        ..Redirect::default()
    })
}

/// What `apply` cannot serve yet: `acme` on a listener other than the
/// first that serves rules (one renewal task per environment).
fn unsupported(env: &Environment) -> Option<String> {
    let with_acme = sibling_listeners(env)
        .into_iter()
        .find(|l| l.acme.is_some())?;
    Some(format!(
        "environment {}: listener `{}` takes `acme`, which this version serves on the first listener that serves rules only; give it `certificates`, or make it the first",
        env.name, with_acme.name
    ))
}

/// The listeners that serve rules after the first: they share its target
/// groups (`LoadBalancer::start_sibling`).
fn sibling_listeners(env: &Environment) -> Vec<&spec::Listener> {
    env.load_balancer
        .iter()
        .flat_map(|lb| {
            lb.listeners
                .iter()
                .filter(|l| l.redirect_to.is_none())
                .skip(1)
        })
        .collect()
}

/// The proxy rules of the listener named `name`.
fn rules_for(env: &Environment, name: &str) -> Vec<Rule> {
    env.load_balancer
        .iter()
        .flat_map(|lb| lb.rules_of(name))
        .map(|rule| Rule {
            priority: rule.priority,
            conditions: conditions_of(&rule.conditions),
            action: action_of(&rule.action),
        })
        .collect()
}

/// The certificates of listeners that serve rules after the first, by
/// (environment, listener), read before anything changes, with their
/// parameter versions.
type SiblingCertificates = BTreeMap<(String, String), (Vec<Certificate>, Vec<ListenerCertificate>)>;

/// A listener that serves rules after the first, as apply keeps it.
pub(crate) struct Sibling {
    pub(crate) name: String,
    pub(crate) lb: Box<dyn Balancer>,
    pub(crate) https: bool,
    /// The certificate versions it serves (https).
    pub(crate) pins: Vec<ListenerCertificate>,
}

impl Deployer {
    /// Starts, keeps (by address) or stops the environment's redirecting
    /// listeners so they match the file, each sending every request to
    /// https on `port`, the serving listener's.
    async fn sync_redirects(
        &self,
        name: &str,
        env: &Environment,
        port: u16,
        running: &mut Vec<(String, Box<dyn Balancer>)>,
        challenges: &[Rule],
        summary: &mut Vec<String>,
    ) -> Result<(), DeployError> {
        let mut old = std::mem::take(running);
        for listener in redirecting(env) {
            let lb = match old
                .iter()
                .position(|(_, b)| b.local_addr() == listener.listen)
            {
                Some(index) => old.swap_remove(index).1,
                None => self
                    .inner
                    .balancers
                    .start_configured(listener.listen, Vec::new(), listener_config(listener), None)
                    .await
                    .map_err(|e| DeployError::LoadBalancer {
                        environment: name.to_owned(),
                        reason: format!("listener {}: {e}", listener.name),
                    })?,
            };
            lb.set_routing(challenges.to_vec(), Some(redirect_to_https(port)));
            summary.push(format!(
                "environment {name}: listener {} on {} redirects to https port {port}",
                listener.name,
                lb.local_addr()
            ));
            running.push((listener.name.clone(), lb));
        }
        for (_, lb) in old {
            lb.shutdown().await;
        }
        Ok(())
    }

    /// A listener's `certificates`, read from the parameter store at their
    /// latest versions (which this apply pins until the next), with those
    /// versions; not yet checked. The key's value never reaches an error.
    async fn explicit_certificates(
        &self,
        env: &Environment,
        listener: &spec::Listener,
    ) -> Result<(Vec<Certificate>, Vec<ListenerCertificate>), DeployError> {
        let fail = |reason: String| DeployError::LoadBalancer {
            environment: env.name.to_string(),
            reason,
        };
        let mut certs = Vec::new();
        let mut pins = Vec::new();
        for pair in &listener.certificates {
            let mut read = Vec::new();
            for (role, name) in [("cert", &pair.cert), ("key", &pair.key)] {
                let selector = Selector::parse(name)
                    .map_err(|e| fail(format!("certificate parameter {name}: {e}")))?;
                let resolved = self
                    .inner
                    .params
                    .resolve(&[(role, selector)])
                    .await
                    .map_err(|e| fail(format!("certificate parameter {name}: {e}")))?;
                let Some(param) = resolved.into_iter().next() else {
                    return Err(fail(format!("certificate parameter {name} does not exist")));
                };
                if role == "key" && !param.secret {
                    return Err(fail(format!(
                        "the private key parameter {name} must be a SecureString"
                    )));
                }
                read.push(param);
            }
            let [cert, key] = <[_; 2]>::try_from(read)
                .map_err(|_| fail("a certificate needs a cert and a key".to_owned()))?;
            pins.push(ListenerCertificate {
                cert: cert.name.to_string(),
                cert_version: cert.version,
                key: key.name.to_string(),
                key_version: key.version,
            });
            certs.push(Certificate::new(
                format!("{}:{}", cert.name, cert.version),
                cert.value.expose().to_owned(),
                key.value.expose().to_owned(),
            ));
        }
        Ok((certs, pins))
    }

    /// Starts, keeps (by address and protocol) or stops the environment's
    /// listeners that serve rules after the first, each with its own rules,
    /// default action and certificates (read before anything changed), all
    /// forwarding to `primary`'s target groups.
    async fn sync_siblings(
        &self,
        name: &str,
        env: &Environment,
        primary: &dyn Balancer,
        running: &mut Vec<Sibling>,
        certificates: &SiblingCertificates,
        summary: &mut Vec<String>,
    ) -> Result<(), DeployError> {
        let fail = |listener: &str, e: gantry_proxy::ProxyError| DeployError::LoadBalancer {
            environment: name.to_owned(),
            reason: format!("listener {listener}: {e}"),
        };
        let mut old = std::mem::take(running);
        for listener in sibling_listeners(env) {
            let https = listener.protocol == spec::Protocol::Https;
            let (certs, pins) = certificates
                .get(&(name.to_owned(), listener.name.clone()))
                .cloned()
                .unwrap_or_default();
            let kept = old
                .iter()
                .position(|s| s.lb.local_addr() == listener.listen && s.https == https);
            let lb = match kept {
                Some(index) => {
                    let sibling = old.swap_remove(index);
                    if https {
                        sibling
                            .lb
                            .set_certificates(&certs)
                            .map_err(|e| fail(&listener.name, e))?;
                    }
                    sibling.lb
                }
                None => primary
                    .start_sibling(
                        listener.listen,
                        Vec::new(),
                        listener_config(listener),
                        https.then(|| certs.clone()),
                    )
                    .await
                    .map_err(|e| fail(&listener.name, e))?,
            };
            lb.set_routing(
                rules_for(env, &listener.name),
                listener.default_action.as_ref().map(action_of),
            );
            summary.push(format!(
                "environment {name}: listener {} on {} serves its rules ({})",
                listener.name,
                lb.local_addr(),
                if https { "https" } else { "http" }
            ));
            running.push(Sibling {
                name: listener.name.clone(),
                lb,
                https,
                pins,
            });
        }
        for sibling in old {
            sibling.lb.shutdown().await;
        }
        Ok(())
    }

    /// The certificates of an environment's https listener, read from the
    /// parameter store at their latest versions (which this apply pins
    /// until the next), and a line per certificate naming the versions;
    /// with `acme`, the kept ACME certificate (or a placeholder) after
    /// them and what its renewal task needs. `None` for an environment
    /// without one. The key's value never reaches an error or a log.
    async fn certificates_of(&self, env: &Environment) -> Result<Option<Tls>, DeployError> {
        let Some(listener) = env
            .load_balancer
            .as_ref()
            .and_then(serving)
            .filter(|l| l.protocol == spec::Protocol::Https)
        else {
            return Ok(None);
        };
        let fail = |reason: String| DeployError::LoadBalancer {
            environment: env.name.to_string(),
            reason,
        };
        let (mut certs, mut pins) = self.explicit_certificates(env, listener).await?;
        let Some(config) = &listener.acme else {
            gantry_proxy::check_certificates(&certs).map_err(|e| fail(e.to_string()))?;
            return Ok(Some(Tls {
                certificates: certs,
                pins,
                acme: None,
            }));
        };
        if !certs.is_empty() {
            gantry_proxy::check_certificates(&certs).map_err(|e| fail(e.to_string()))?;
        }
        let paths = Paths::of(env.name.as_str(), listener, config);
        let issued = acme::stored(&self.inner.params, &paths, config)
            .await
            .map_err(fail)?;
        let ca_pem = match &config.directory_ca {
            None => None,
            Some(name) => {
                let selector = Selector::parse(name)
                    .map_err(|e| fail(format!("directory_ca parameter {name}: {e}")))?;
                let resolved = self
                    .inner
                    .params
                    .resolve(&[("directory_ca", selector)])
                    .await
                    .map_err(|e| fail(format!("directory_ca parameter {name}: {e}")))?;
                let param = resolved
                    .into_iter()
                    .next()
                    .ok_or_else(|| fail(format!("directory_ca parameter {name} does not exist")))?;
                Some(param.value.expose().to_owned())
            }
        };
        if issued.as_ref().is_none_or(|i| !i.covers) {
            // An order is due now: the CA must answer.
            acme::check_directory(&config.directory, ca_pem.as_deref())
                .await
                .map_err(fail)?;
        }
        let explicit = certs.clone();
        match &issued {
            Some(issued) => {
                certs.push(issued.certificate.clone());
                pins.push(issued.pin.clone());
            }
            None if certs.is_empty() => {
                certs.push(acme::placeholder(&config.domains).map_err(fail)?);
            }
            None => {}
        }
        Ok(Some(Tls {
            certificates: certs,
            pins,
            acme: Some(AcmePlan {
                listener: listener.name.clone(),
                acme: config.clone(),
                paths,
                explicit,
                issued,
                ca_pem,
            }),
        }))
    }

    /// Turns the environment's access log on or off as its file says:
    /// every listener (serving and redirecting) records into one file.
    async fn sync_access_log(&self, environment: &Arc<EnvState>, env: &Environment) {
        let on = env.load_balancer.as_ref().is_some_and(|lb| lb.access_log);
        let writer = match (&self.inner.access_logs, on) {
            (Some(dir), true) => {
                let mut kept = environment
                    .access_writer
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if kept.is_none() {
                    match crate::access_log::AccessWriter::start(dir, &environment.name) {
                        Ok(writer) => *kept = Some(writer),
                        Err(error) => tracing::error!(
                            environment = %environment.name, %error,
                            "The access log cannot be written."
                        ),
                    }
                }
                kept.clone()
            }
            _ => None,
        };
        if writer.is_none() {
            *environment
                .access_writer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        }
        let serving = env
            .load_balancer
            .as_ref()
            .and_then(serving)
            .map_or("default", |l| l.name.as_str());
        let sink = |listener: &str| writer.as_ref().map(|w| w.sink(&environment.name, listener));
        environment.lb.set_access_log(sink(serving));
        for (name, lb) in environment.redirects.lock().await.iter() {
            lb.set_access_log(sink(name));
        }
        for sibling in environment.siblings.lock().await.iter() {
            sibling.lb.set_access_log(sink(&sibling.name));
        }
    }

    /// Starts the renewal task of an environment's ACME listener (stopping
    /// the one before), or stops it when the listener has no `acme` now.
    fn renew(&self, environment: &Arc<EnvState>, plan: Option<&AcmePlan>) {
        let task = plan.map(|plan| {
            Renewal {
                params: self.inner.params.clone(),
                environment: Arc::downgrade(environment),
                listener: plan.listener.clone(),
                acme: plan.acme.clone(),
                paths: plan.paths.clone(),
                explicit: plan.explicit.clone(),
                issued: plan.issued.clone(),
                ca_pem: plan.ca_pem.clone(),
            }
            .spawn()
        });
        *environment
            .acme
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = task;
    }

    /// Registers environments and services (files with their text; includes
    /// already read by the caller). Load balancers start or get new rules.
    pub async fn apply(&self, files: Vec<(String, String)>) -> Result<Vec<String>, DeployError> {
        let summary = self.install(&files).await?;
        let text = serde_json::to_string(&files).map_err(|e| DeployError::Spec(e.to_string()))?;
        self.inner.db.save_project(&text, now_ms()).await?;
        Ok(summary)
    }

    pub(crate) async fn install(
        &self,
        files: &[(String, String)],
    ) -> Result<Vec<String>, DeployError> {
        let mut documents = Vec::new();
        let mut errors = Vec::new();
        for (file, text) in files {
            match parse_document(file, text) {
                Ok(doc) => documents.push((file.clone(), doc)),
                Err(e) => errors.extend(e.iter().map(ToString::to_string)),
            }
        }
        if !errors.is_empty() {
            return Err(DeployError::Spec(errors.join("\n")));
        }
        let project = assemble(documents).map_err(|e| {
            DeployError::Spec(
                e.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        })?;
        // Refused before anything changes: unsupported listeners, and
        // certificates missing, of the wrong type or unfit to serve.
        let mut certificates: BTreeMap<String, Tls> = BTreeMap::new();
        let mut sibling_certificates = SiblingCertificates::new();
        for env in project.environments.values() {
            if let Some(reason) = unsupported(env) {
                return Err(DeployError::Spec(reason));
            }
            if let Some(found) = self.certificates_of(env).await? {
                certificates.insert(env.name.to_string(), found);
            }
            for listener in sibling_listeners(env) {
                if listener.protocol != spec::Protocol::Https {
                    continue;
                }
                let (certs, pins) = self.explicit_certificates(env, listener).await?;
                gantry_proxy::check_certificates(&certs).map_err(|e| {
                    DeployError::LoadBalancer {
                        environment: env.name.to_string(),
                        reason: format!("listener {}: {e}", listener.name),
                    }
                })?;
                sibling_certificates
                    .insert((env.name.to_string(), listener.name.clone()), (certs, pins));
            }
        }
        let mut state = self.inner.state.lock().await;
        let mut summary = Vec::new();
        for (name, env) in &project.environments {
            let name = name.to_string();
            match state.environments.get(&name) {
                Some(existing) => {
                    let listen = env
                        .load_balancer
                        .as_ref()
                        .and_then(serving)
                        .map(|l| l.listen);
                    if listen.is_some_and(|l| l != existing.lb.local_addr()) {
                        summary.push(format!(
                            "environment {name}: the listener moves to {} when the server restarts",
                            listen.map(|l| l.to_string()).unwrap_or_default()
                        ));
                    }
                    if let Some(Tls {
                        certificates: certs,
                        pins,
                        ..
                    }) = certificates.get(&name)
                    {
                        existing.lb.set_certificates(certs).map_err(|e| {
                            DeployError::LoadBalancer {
                                environment: name.clone(),
                                reason: e.to_string(),
                            }
                        })?;
                        summary.extend(pins.iter().map(|pin| pin_line(&name, env, pin)));
                        *existing
                            .certificates
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = pins.clone();
                    }
                    existing
                        .lb
                        .set_routing(rules_of(env), default_action_of(env));
                    let port = existing.lb.local_addr().port();
                    let challenges = acme::challenge_rules(&existing.acme_challenges);
                    let mut redirects = existing.redirects.lock().await;
                    self.sync_redirects(
                        &name,
                        env,
                        port,
                        &mut redirects,
                        &challenges,
                        &mut summary,
                    )
                    .await?;
                    drop(redirects);
                    let mut siblings = existing.siblings.lock().await;
                    self.sync_siblings(
                        &name,
                        env,
                        existing.lb.as_ref(),
                        &mut siblings,
                        &sibling_certificates,
                        &mut summary,
                    )
                    .await?;
                    drop(siblings);
                    self.renew(
                        existing,
                        certificates.get(&name).and_then(|t| t.acme.as_ref()),
                    );
                    self.sync_access_log(existing, env).await;
                    *existing.spec.lock().await = env.clone();
                    summary.push(format!("environment {name}: rules updated"));
                }
                None => {
                    let serving_listener = env.load_balancer.as_ref().and_then(serving);
                    let listen = serving_listener
                        .map_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)), |l| l.listen);
                    let config = serving_listener.map(listener_config).unwrap_or_default();
                    let tls = certificates.get(&name).map(
                        |Tls {
                             certificates: certs,
                             pins,
                             ..
                         }| {
                            summary.extend(pins.iter().map(|pin| pin_line(&name, env, pin)));
                            certs.clone()
                        },
                    );
                    let started = self
                        .inner
                        .balancers
                        .start_configured(listen, rules_of(env), config, tls)
                        .await;
                    let lb = started.map_err(|e| DeployError::LoadBalancer {
                        environment: name.clone(),
                        reason: match &e {
                            // A clash a person fixes in the file.
                            gantry_proxy::ProxyError::Bind { addr, source }
                                if source.kind() == std::io::ErrorKind::AddrInUse =>
                            {
                                format!(
                                    "cannot listen on {addr}: port {} is in use (by another \
                                         program, or another data dir's environment); choose \
                                         another `listen:` in environment {name}'s \
                                         `load_balancer` (port 0 takes any free one)",
                                    addr.port()
                                )
                            }
                            other => other.to_string(),
                        },
                    })?;
                    if let Some(default) = default_action_of(env) {
                        lb.set_routing(rules_of(env), Some(default));
                    }
                    let runtime = self.inner.runtimes.get(runtime_name(env.runtime)).cloned();
                    summary.push(format!(
                        "environment {name}: load balancer on {}, runtime {}{}",
                        lb.local_addr(),
                        runtime_name(env.runtime),
                        // A kubernetes environment needs no runtime of the
                        // server's: its cluster runs the pods.
                        if runtime.is_none() && !crate::kubernetes::is_kubernetes(env) {
                            " (not available on this server)"
                        } else {
                            ""
                        }
                    ));
                    let mut redirects = Vec::new();
                    self.sync_redirects(
                        &name,
                        env,
                        lb.local_addr().port(),
                        &mut redirects,
                        &[],
                        &mut summary,
                    )
                    .await?;
                    let mut siblings = Vec::new();
                    self.sync_siblings(
                        &name,
                        env,
                        lb.as_ref(),
                        &mut siblings,
                        &sibling_certificates,
                        &mut summary,
                    )
                    .await?;
                    let tls = certificates.get(&name);
                    let pins = tls.map(|t| t.pins.clone()).unwrap_or_default();
                    let environment = Arc::new(EnvState {
                        name: name.clone(),
                        spec: Mutex::new(env.clone()),
                        lb,
                        certificates: std::sync::Mutex::new(pins),
                        redirects: Mutex::new(redirects),
                        siblings: Mutex::new(siblings),
                        runtime,
                        services: Mutex::new(BTreeMap::new()),
                        acme_challenges: acme::Challenges::default(),
                        acme: std::sync::Mutex::new(None),
                        acme_status: std::sync::Mutex::new(None),
                        access_writer: std::sync::Mutex::new(None),
                    });
                    self.sync_access_log(&environment, env).await;
                    self.renew(&environment, tls.and_then(|t| t.acme.as_ref()));
                    state.environments.insert(name, environment);
                }
            }
        }
        summary.push(format!("{} service(s)", project.services.len()));
        state.project = Some(Arc::new(project));
        Ok(summary)
    }
}

/// What an https listener serves, as apply read it.
struct Tls {
    /// The listener's `certificates`, then the ACME one (or a placeholder).
    certificates: Vec<Certificate>,
    /// Their parameter versions (a placeholder has none).
    pins: Vec<ListenerCertificate>,
    acme: Option<AcmePlan>,
}

/// What an ACME listener's renewal task starts from.
struct AcmePlan {
    listener: String,
    acme: spec::Acme,
    paths: Paths,
    explicit: Vec<Certificate>,
    issued: Option<Issued>,
    ca_pem: Option<String>,
}
