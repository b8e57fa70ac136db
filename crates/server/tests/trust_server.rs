//! A whole server on real sockets, attacked as a second local user or a web
//! page would: the data dir and its secrets are owner-only, the embedded
//! registry wants a token, rebound host names are refused on both
//! listeners, and a non-loopback listener needs TLS or an explicit opt-out.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use gantry_server::{RunningServer, ServerOptions};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

async fn start(data: &Path) -> RunningServer {
    let listen = "127.0.0.1:0".parse().unwrap();
    RunningServer::start(data, listen, listen).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_dir_and_its_secrets_are_readable_by_their_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = start(&data).await;
    // A write, so the WAL exists.
    server
        .plane
        .auth()
        .add_user("u", None, vec![], gantry_clock::now_ms())
        .await
        .unwrap();
    assert_eq!(mode(&data), 0o700, "the data dir");
    for file in [
        "admin.token",
        "gantry.db",
        "gantry.db-wal",
        "params-master.key",
        "docker-config/config.json",
    ] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    assert!(token.starts_with("gantry_"));
    server.shutdown().await;
    // The token survives a restart; a file that no longer authenticates is
    // replaced.
    let server = start(&data).await;
    assert_eq!(
        std::fs::read_to_string(data.join("admin.token")).unwrap(),
        token
    );
    server.shutdown().await;
    std::fs::write(data.join("admin.token"), "gantry_forged").unwrap();
    let server = start(&data).await;
    let renewed = std::fs::read_to_string(data.join("admin.token")).unwrap();
    assert_ne!(renewed, "gantry_forged");
    assert_eq!(mode(&data.join("admin.token")), 0o600);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_and_the_api_want_a_token_and_their_own_host_name() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start(&data).await;
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let http = reqwest::Client::new();
    let registry = format!("http://{}/v2/", server.registry);
    let api = format!("{}/api/v1/whoami", server.api);

    let anonymous = http.get(&registry).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(
        anonymous
            .headers()
            .get("www-authenticate")
            .and_then(|h| h.to_str().ok())
            .is_some_and(|h| h.starts_with("Bearer realm=")),
        "a Docker token challenge"
    );
    let with_token = http
        .get(&registry)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(with_token.status(), 200);
    let basic = http
        .get(&registry)
        .basic_auth("gantry", Some(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200, "docker login's Basic credentials");

    for url in [&registry, &api] {
        let rebound = http
            .get(url)
            .header("host", "evil.example")
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(rebound.status(), 421, "{url}");
    }
    let me: gantry_api::IdentityView = http
        .get(&api)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me.name, "admin");
    server.shutdown().await;
}

#[tokio::test]
async fn a_public_listener_needs_tls_or_an_explicit_opt_out() {
    let dir = tempfile::tempdir().unwrap();
    let options =
        ServerOptions::local("0.0.0.0:0".parse().unwrap(), "127.0.0.1:0".parse().unwrap());
    let error = match RunningServer::start_with(&dir.path().join("data"), options).await {
        Ok(_) => panic!("a plain-HTTP public listener started"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("--tls-cert"), "{error}");
    assert!(
        !dir.path().join("data").join("server.json").exists(),
        "nothing was published"
    );
}
