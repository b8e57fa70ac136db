//! Serves the registry on its own, for benchmarks and manual tests:
//!
//! ```text
//! cargo run --release -p gantry-registry --example serve -- DATA_DIR [ADDR]
//! ```
//!
//! DATA_DIR gets a `gantry.db`, an `artifacts/` store and `registry/uploads/`,
//! as a gantry data dir would. ADDR defaults to 127.0.0.1:5000; the address
//! actually bound is printed on stdout (useful with port 0).

use std::error::Error;
use std::io::Write as _;
use std::path::PathBuf;

use gantry_registry::{Registry, router};
use gantry_store::{ArtifactStore, Store};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let Some(data_dir) = args.next().map(PathBuf::from) else {
        return Err("usage: serve DATA_DIR [ADDR]".into());
    };
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:5000".to_string());
    std::fs::create_dir_all(&data_dir)?;
    let store = Store::open(&data_dir.join("gantry.db")).await?;
    let artifacts = ArtifactStore::open(data_dir.join("artifacts"))?;
    let registry = Registry::open(&store, artifacts, &data_dir).await?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    axum::serve(listener, router(registry)).await?;
    Ok(())
}
