//! The runtimes this server offers: `process` always, `docker` when a
//! Docker Engine answers, `swarm` (the same engine in swarm mode, with the
//! same owner and registry credentials) making no docker call until an
//! environment uses it.

use std::path::Path;
use std::sync::Arc;

use gantry_deploy::Runtimes;

/// The runtimes of a server. `adopt_docker`: wait for docker's containers
/// and swarm's services to be known before returning (the applied project
/// has a docker or swarm environment whose replicas the deployer re-adopts
/// next).
/// `owner` labels the docker and swarm replicas: the data dir for a
/// server alone, the database's cluster id for servers sharing one, so the
/// next leader adopts what the last one started.
pub(crate) async fn open(
    data_dir: &Path,
    images: &gantry_images::RegistryClient,
    adopt_docker: bool,
    owner: String,
) -> Runtimes {
    let mut runtimes = Runtimes::new();
    match gantry_runtime::ProcessRuntime::new(data_dir, images.clone()).await {
        Ok(process) => {
            runtimes.insert(
                "process",
                Arc::new(process) as Arc<dyn gantry_runtime::Runtime>,
            );
        }
        Err(error) => tracing::error!(%error, "The process runtime is not available."),
    }
    let mut options = gantry_runtime::DockerOptions::new(owner);
    // The credentials for the embedded registry, when the server wrote them.
    let docker_config = data_dir.join("docker-config");
    if docker_config.is_dir() {
        options.config_dir = Some(docker_config);
    }
    options.adopt_at_start = adopt_docker;
    match gantry_runtime::SwarmRuntime::new(options.clone()).await {
        Ok(swarm) => {
            runtimes.insert("swarm", Arc::new(swarm) as Arc<dyn gantry_runtime::Runtime>);
        }
        Err(error) => tracing::info!(%error, "The swarm runtime is not available."),
    }
    match gantry_runtime::DockerRuntime::new(options).await {
        Ok(docker) => {
            runtimes.insert(
                "docker",
                Arc::new(docker) as Arc<dyn gantry_runtime::Runtime>,
            );
        }
        Err(error) => tracing::info!(%error, "The docker runtime is not available."),
    }
    runtimes
}
