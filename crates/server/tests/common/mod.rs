//! What the server's integration tests share: a control plane on the test
//! database the run chose.

#![allow(dead_code)]

use gantry_server::ControlPlane;

/// The control plane of a data dir, on the test database the run chose
/// (the data dir's SQLite, or PostgreSQL with GANTRY_TEST_POSTGRES).
pub(crate) async fn open_plane(
    data_dir: &std::path::Path,
) -> Result<ControlPlane, gantry_server::error::ControlError> {
    let database = gantry_testkit::database::database_for(data_dir).await;
    ControlPlane::open_in(
        data_dir,
        database.as_deref(),
        gantry_server::actions::Runners::standard(),
    )
    .await
}
