//! The registry's database goes away: clients get 503 (retry later), not
//! 500, and the registry answers again once it is back. Against a
//! PostgreSQL cluster of the test's own, which it stops and starts;
//! skipped unless GANTRY_TEST_POSTGRES says PostgreSQL is installed.

mod common;

use axum::http::StatusCode;
use common::fixture::*;
use gantry_registry::RegistryLimits;

#[tokio::test]
async fn an_unreachable_database_answers_503_until_it_is_back() {
    if gantry_testkit::database::postgres_url().is_none() {
        println!("skipped: set GANTRY_TEST_POSTGRES (scripts/postgres) to run it");
        return;
    }
    let cluster = gantry_testkit::database::Cluster::start();
    let db = gantry_db::Db::connect_with(&cluster.url(), std::time::Duration::from_secs(2))
        .await
        .unwrap();
    let fx = Fixture::on(db, RegistryLimits::default()).await;
    fx.push_image("shop/web", "1.0", b"layer").await;
    assert_eq!(
        fx.get("/v2/shop/web/tags/list").await.status,
        StatusCode::OK
    );

    cluster.stop();
    let down = fx.get("/v2/shop/web/tags/list").await;
    assert_eq!(
        down.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        down.text()
    );
    assert!(!down.text().contains("postgres"), "{}", down.text());

    cluster.resume();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let again = fx.get("/v2/shop/web/tags/list").await;
        if again.status == StatusCode::OK {
            assert!(again.text().contains("1.0"), "{}", again.text());
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", again.text());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
