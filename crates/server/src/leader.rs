//! Several servers on one database, one leader: a server started with
//! `--database` takes the database's `leader` lease before it opens the
//! control plane, and waits as a standby while another holds it (its
//! listeners forward to the leader meanwhile, `crate::standby`). The
//! leader renews the lease every third of its length and writes every
//! engine event under its fencing token ([`gantry_store::Store::fence`]).
//!
//! A leader that learns it lost the lease — its renewal finds another's
//! token, or a fenced write does — shuts down: it writes nothing more (the
//! fence refuses its writes even before it notices). A leader that merely
//! cannot reach the database keeps running: its load balancers go on
//! serving, its changes wait (`store.unavailable`), and once the database
//! answers it learns whether it still leads. The standby that takes over opens the control plane as any
//! restarted server does: in-flight actions fail as interrupted, approvals
//! and timers come back, replicas are adopted.

use std::time::Duration;

use gantry_store::{LEADER, Store};

use crate::ControlPlane;
use crate::error::ControlError;

/// The lease a leading server holds, and the task that renews it from the
/// moment it is taken (opening the control plane may outlast a lease).
pub(crate) struct Leadership {
    store: Store,
    holder: String,
    token: i64,
    /// Cancelled when the lease is lost.
    lost: tokio_util::sync::CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Leadership {
    /// Waits until this server holds the lease (logging once that it
    /// stands by), fences the store with the new token, and renews the
    /// lease from then on.
    /// The lease's holder names this server and the addresses it serves
    /// at, so standbys forward to it (`crate::standby`).
    pub(crate) async fn take(
        store: &Store,
        lease: Duration,
        advertised: &crate::standby::Advertised,
    ) -> Result<Leadership, ControlError> {
        let holder = advertised.holder(&format!(
            "{}:{}:{}",
            hostname(),
            std::process::id(),
            uuid::Uuid::now_v7().simple()
        ));
        let ttl = millis(lease);
        let mut announced = false;
        let token = loop {
            if let Some(token) = store.acquire_lease(LEADER, &holder, ttl).await? {
                break token;
            }
            if !announced {
                let current = store.lease_holder(LEADER).await?;
                tracing::info!(leader = ?current.map(|c| c.holder), "Another server leads: standing by until its lease expires.");
                eprintln!(
                    "gantry server: standing by (another server leads); forwarding requests to it"
                );
                announced = true;
            }
            tokio::time::sleep(lease / 3).await;
        };
        store.fence(token);
        tracing::info!(%holder, token, "This server leads.");
        let lost = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(renew(
            store.clone(),
            holder.clone(),
            token,
            lease,
            lost.clone(),
        ));
        Ok(Leadership {
            store: store.clone(),
            holder,
            token,
            lost,
            task: Some(task),
        })
    }

    /// Whether the lease was lost (while the control plane opened, say).
    pub(crate) fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }

    /// Asks the server to shut down once the lease is lost.
    pub(crate) fn keep(&mut self, plane: ControlPlane) {
        let lost = self.lost.clone();
        tokio::spawn(async move {
            lost.cancelled().await;
            eprintln!("gantry server: lost the leadership to another server");
            plane.request_shutdown();
        });
    }

    /// Stops renewing and gives the lease back, so a standby takes over at
    /// once (a clean shutdown).
    pub(crate) async fn release(self) {
        if let Some(task) = self.task {
            task.abort();
        }
        if !self.store.deposed()
            && let Err(error) = self
                .store
                .release_lease(LEADER, &self.holder, self.token)
                .await
        {
            tracing::warn!(%error, "Giving the leader's lease back failed; it expires by itself.");
        }
    }
}

/// Renews the lease every third of `lease` until it is lost, then
/// cancels `lost`.
async fn renew(
    store: Store,
    holder: String,
    token: i64,
    lease: Duration,
    lost: tokio_util::sync::CancellationToken,
) {
    let ttl = millis(lease);
    let mut failing = false;
    loop {
        tokio::time::sleep(lease / 3).await;
        let gone = match store.renew_lease(LEADER, &holder, token, ttl).await {
            Ok(renewed) => {
                failing = false;
                !renewed || store.deposed()
            }
            // Unreachable: the lease may run out meanwhile, and another
            // server take it; the fence keeps this one from writing, and
            // the next renewal that reaches the database tells.
            Err(error) => {
                if !failing {
                    tracing::warn!(%error, "Renewing the leader's lease failed; trying on.");
                }
                failing = true;
                store.deposed()
            }
        };
        if gone {
            tracing::error!(
                token,
                "This server lost the leader's lease: another server leads now. Shutting down."
            );
            lost.cancel();
            return;
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".to_string())
}
