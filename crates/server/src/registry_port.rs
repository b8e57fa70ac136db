//! One address for the embedded registry per data dir: image references a
//! run printed (`127.0.0.1:PORT/shop/web@sha256:…`) keep working after the
//! server that printed them has exited and another has started.
//!
//! When the server is asked for any free port (`--registry-listen
//! 127.0.0.1:0`, as a background server is), it asks for the port it got
//! the first time, remembered in `DATA_DIR/registry.port`; when that port is
//! taken, it takes another for this run and says so (the file keeps the
//! first, so the next server tries it again). An explicit port is used as
//! given and not remembered.

use std::net::SocketAddr;
use std::path::Path;

use tokio::net::TcpListener;

use crate::error::ControlError;

/// The file that remembers the registry's port.
pub(crate) const REGISTRY_PORT_FILE: &str = "registry.port";

/// Listens for the embedded registry at `requested`, or, for port 0, at
/// the data dir's remembered port when it is free. `bind` maps errors.
pub(crate) async fn listen<F, Fut>(
    data_dir: &Path,
    requested: SocketAddr,
    bind: F,
) -> Result<TcpListener, ControlError>
where
    F: Fn(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = Result<TcpListener, ControlError>>,
{
    if requested.port() != 0 {
        return bind(requested).await;
    }
    let file = data_dir.join(REGISTRY_PORT_FILE);
    let remembered = std::fs::read_to_string(&file)
        .ok()
        .and_then(|text| text.trim().parse::<u16>().ok())
        .filter(|port| *port != 0);
    if let Some(port) = remembered {
        let mut usual = requested;
        usual.set_port(port);
        match TcpListener::bind(usual).await {
            Ok(listener) => return Ok(listener),
            Err(error) => {
                let listener = bind(requested).await?;
                let now = listener
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                tracing::warn!(
                    "The embedded registry's usual address {usual} is not free ({error}); it \
                     listens on {now} until the next start. Image references printed with \
                     {usual} reach it again once that port is free."
                );
                return Ok(listener);
            }
        }
    }
    let listener = bind(requested).await?;
    if let Ok(addr) = listener.local_addr() {
        // Remembered for the next server; a data dir that cannot keep it
        // only loses the stable address.
        if let Err(error) = std::fs::write(&file, format!("{}\n", addr.port())) {
            tracing::warn!(%error, "Cannot remember the registry's port in {}.", file.display());
        }
    }
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn bind(addr: SocketAddr) -> Result<TcpListener, ControlError> {
        TcpListener::bind(addr)
            .await
            .map_err(|e| ControlError::Internal(e.to_string()))
    }

    #[tokio::test]
    async fn the_first_port_is_remembered_and_asked_for_again() {
        let dir = tempfile::tempdir().unwrap();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let first = listen(dir.path(), any, bind).await.unwrap();
        let port = first.local_addr().unwrap().port();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(REGISTRY_PORT_FILE)).unwrap(),
            format!("{port}\n")
        );
        drop(first);
        let again = listen(dir.path(), any, bind).await.unwrap();
        assert_eq!(again.local_addr().unwrap().port(), port);

        // Taken: another port for now, and the file still names the first.
        let other = listen(dir.path(), any, bind).await.unwrap();
        assert_ne!(other.local_addr().unwrap().port(), port);
        assert_eq!(
            std::fs::read_to_string(dir.path().join(REGISTRY_PORT_FILE)).unwrap(),
            format!("{port}\n")
        );
    }
}
