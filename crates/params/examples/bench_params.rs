//! How long resolving a service's parameters takes: 100 references, half String and
//! half SecureString, from a file-backed SQLite store in WAL mode. Target: < 20 ms.
//!
//!     cargo run --release -p gantry-params --example bench_params
//!
//! Measuring real elapsed time is the point here: `gantry_clock::Instant` is real time
//! in a runtime that isn't paused (the library itself reads time only through its `Clock`).

use std::time::Duration;

use gantry_clock::Instant;
use gantry_db::Db;
use gantry_params::{MasterKey, ParamName, ParamStore, ParamType, PutParameter, Selector};

const PARAMS: usize = 100;
const RUNS: usize = 50;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let db = Db::open_sqlite(&dir.path().join("bench.db")).await?;
    let store = ParamStore::open(db, MasterKey::generate()?).await?;

    let mut refs = Vec::with_capacity(PARAMS);
    for i in 0..PARAMS {
        let name = ParamName::parse(&format!("/shop/production/service-{i:03}/VALUE"))?;
        let (param_type, value) = if i % 2 == 0 {
            (
                ParamType::String,
                format!("http://service-{i}.internal:8080"),
            )
        } else {
            (
                ParamType::SecureString,
                format!("secret-{i}-{}", "x".repeat(48)),
            )
        };
        // A few versions each, so lookups pick the latest among several rows.
        for _ in 0..3 {
            store
                .put(PutParameter::new(&name, &value, param_type, "bench").overwrite(true))
                .await?;
        }
        refs.push((format!("VAR_{i}"), Selector::latest(name)));
    }

    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = Instant::now();
        let resolved = store.resolve(&refs).await?;
        times.push(start.elapsed());
        assert_eq!(resolved.len(), PARAMS);
    }
    let first = times[0];
    times.sort();
    let median = times[RUNS / 2];
    let worst = times[RUNS - 1];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "resolve {PARAMS} parameters ({} String, {} SecureString), {RUNS} runs: \
         first {:.2} ms, median {:.2} ms, worst {:.2} ms (target < 20 ms)",
        PARAMS / 2,
        PARAMS / 2,
        ms(first),
        ms(median),
        ms(worst)
    );
    Ok(())
}
