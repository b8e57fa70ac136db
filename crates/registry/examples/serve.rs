//! Serves the registry on its own, for benchmarks and manual tests:
//!
//! ```text
//! GANTRY_REGISTRY_TOKEN=SECRET \
//!   cargo run --release -p gantry-registry --example serve -- DATA_DIR [ADDR]
//! ```
//!
//! DATA_DIR gets a `gantry.db`, an `artifacts/` store and `registry/uploads/`,
//! as a gantry data dir would. ADDR defaults to 127.0.0.1:5000; the address
//! actually bound is printed on stdout (useful with port 0). The one secret
//! in `GANTRY_REGISTRY_TOKEN` may do everything (`docker login -u any -p
//! SECRET ADDR`); audit records go to stderr.

use std::error::Error;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use gantry_registry::{
    AuthDenied, AuthFuture, Registry, RegistryAccess, RegistryAuditRecord, RegistryAuth,
    RegistryLimits, RegistryOptions, router,
};
use gantry_store::{ArtifactStore, Store};

/// One secret that may do everything: enough for a benchmark.
struct OneToken(String);

impl RegistryAuth for OneToken {
    fn authorize<'a>(&'a self, secret: &'a str, _access: RegistryAccess<'a>) -> AuthFuture<'a> {
        let ok = secret.as_bytes() == self.0.as_bytes();
        Box::pin(async move {
            if ok {
                Ok("operator".to_string())
            } else {
                Err(AuthDenied::Unauthenticated)
            }
        })
    }

    fn audit(&self, record: RegistryAuditRecord) {
        eprintln!("{record:?}");
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let Some(data_dir) = args.next().map(PathBuf::from) else {
        return Err("usage: GANTRY_REGISTRY_TOKEN=SECRET serve DATA_DIR [ADDR]".into());
    };
    let token = std::env::var("GANTRY_REGISTRY_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .ok_or("set GANTRY_REGISTRY_TOKEN to the secret clients log in with")?;
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:5000".to_string());
    std::fs::create_dir_all(&data_dir)?;
    let store = Store::open(&data_dir.join("gantry.db")).await?;
    let artifacts = ArtifactStore::open(data_dir.join("artifacts"))?;
    let options = RegistryOptions {
        auth: Arc::new(OneToken(token)),
        limits: RegistryLimits::default(),
    };
    let registry = Registry::open(&store, artifacts, &data_dir, options).await?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let app = router(registry).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app).await?;
    Ok(())
}
