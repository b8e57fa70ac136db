//! Retry and auth behaviour of the registry client, against a loopback server
//! scripted to fail the ways registries fail. Needs nothing installed.

mod common;

use common::{Answer, ScriptedServer};
use gantry_images::{ClientOptions, Credentials, Reference, RegistryClient, RegistryError};

fn image(server: &ScriptedServer, name: &str) -> Reference {
    Reference::parse(&format!("{}/{name}", server.addr)).unwrap()
}

/// `user:secret`, as a Basic `Authorization` header carries it.
const USER_SECRET_BASIC: &str = "authorization: Basic dXNlcjpzZWNyZXQ=";

/// A client holding the credentials `user` / `password` for `registry`.
fn with_credentials(registry: &str, password: &str) -> RegistryClient {
    let mut options = ClientOptions::default();
    options.credentials.insert(
        registry.to_owned(),
        Credentials {
            username: "user".into(),
            password: password.into(),
        },
    );
    RegistryClient::new(options).unwrap()
}

/// A registry that challenges for Basic credentials and gives `authorized()`
/// to requests carrying `user:secret`.
async fn basic_auth_registry(
    authorized: impl Fn() -> Answer + Send + Sync + 'static,
) -> ScriptedServer {
    ScriptedServer::start(move |_, request| {
        if request.headers.contains(USER_SECRET_BASIC) {
            authorized()
        } else {
            Answer::new(401, "{}").header("WWW-Authenticate", r#"Basic realm="registry""#)
        }
    })
    .await
}

fn carries_authorization(seen: &common::Seen) -> bool {
    seen.headers.to_ascii_lowercase().contains("authorization:")
}

#[tokio::test]
async fn server_errors_are_retried_until_the_registry_recovers() {
    let server = ScriptedServer::start(|n, _| {
        if n < 2 {
            Answer::new(503, r#"{"errors":[{"code":"UNAVAILABLE"}]}"#)
        } else {
            Answer::new(200, "{}")
        }
    })
    .await;
    common::client().ping(&server.addr).await.unwrap();
    assert_eq!(server.requests(), 3, "two 503s, then the 200");
}

#[tokio::test]
async fn server_errors_give_up_after_three_tries_with_the_last_answer() {
    let server =
        ScriptedServer::start(|_, _| Answer::new(502, r#"{"errors":[{"code":"BAD_GATEWAY"}]}"#))
            .await;
    let app = image(&server, "app:v1");
    let err = common::client().get_manifest_raw(&app).await.unwrap_err();
    assert_eq!(server.requests(), 3);
    let text = err.to_string();
    assert!(
        text.contains("502") && text.contains("BAD_GATEWAY") && text.contains(&app.to_string()),
        "{text}"
    );
}

#[tokio::test]
async fn client_errors_are_not_retried_and_are_reported_verbatim() {
    let body =
        r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#;
    let server = ScriptedServer::start(move |_, _| Answer::new(403, body)).await;
    let app = image(&server, "team/app:v1");
    let err = common::client().list_tags(&app).await.unwrap_err();
    assert_eq!(server.requests(), 1, "a 4xx is final");
    assert!(
        matches!(&err, RegistryError::Status { status: 403, .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains(body), "{text}");
    assert!(text.contains(&app.to_string()), "{text}");
}

#[tokio::test]
async fn a_missing_manifest_is_reported_as_not_found_naming_the_image() {
    let server = ScriptedServer::start(|_, _| {
        Answer::new(404, r#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#)
    })
    .await;
    let app = image(&server, "app:gone");
    let err = common::client().get_manifest_raw(&app).await.unwrap_err();
    assert_eq!(err.code(), "manifest_not_found");
    assert!(
        err.to_string()
            .contains(&format!("{}/app:gone", server.addr)),
        "{err}"
    );
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn connection_refused_is_retried_then_reported_as_unreachable() {
    // Bind then drop, so the port is very likely closed.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let client = RegistryClient::new(ClientOptions {
        retry: gantry_images::RetryPolicy {
            attempts: 3,
            base_delay: std::time::Duration::from_millis(1),
        },
        ..ClientOptions::default()
    })
    .unwrap();
    let err = client.ping(&addr.to_string()).await.unwrap_err();
    assert!(
        matches!(err, RegistryError::Unreachable { attempts: 3, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_docker_token_flow_fetches_a_bearer_token_with_basic_credentials() {
    // Bind first so the challenge can name this server's own token endpoint.
    let listener_addr = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let realm_addr = listener_addr.clone();
    let server = ScriptedServer::start(move |_, request| {
        let realm = format!("http://{}/token", realm_addr.get().unwrap());
        if request.path.starts_with("/token") {
            if request.headers.contains(USER_SECRET_BASIC) {
                Answer::new(200, r#"{"token":"t0k3n"}"#)
            } else {
                Answer::new(401, r#"{"details":"bad credentials"}"#)
            }
        } else if request.headers.contains("authorization: Bearer t0k3n") {
            Answer::new(200, r#"{"name":"team/app","tags":["v1","v2"]}"#)
        } else {
            Answer::new(401, r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#).header(
                "WWW-Authenticate",
                &format!(r#"Bearer realm="{realm}",service="test-registry",scope="repository:team/app:pull""#),
            )
        }
    })
    .await;
    listener_addr.set(server.addr.clone()).unwrap();
    let client = with_credentials(&server.addr, "secret");
    let app = image(&server, "team/app");
    assert_eq!(client.list_tags(&app).await.unwrap(), ["v1", "v2"]);
    let seen = server.seen.lock().unwrap().clone();
    let token_request = seen
        .iter()
        .find(|s| s.path.starts_with("/token"))
        .expect("token request");
    assert!(
        token_request.path.contains("service=test-registry"),
        "{token_request:?}"
    );
    assert!(
        token_request
            .path
            .contains("scope=repository%3Ateam%2Fapp%3Apull"),
        "{token_request:?}"
    );
    // The cached token is reused: a second call goes straight through.
    let before = server.requests();
    client.list_tags(&app).await.unwrap();
    assert_eq!(server.requests(), before + 1);

    // Wrong credentials: the realm's refusal is reported, naming the image.
    let client = with_credentials(&server.addr, "wrong");
    let err = client.list_tags(&app).await.unwrap_err();
    assert_eq!(err.code(), "registry_auth");
    assert!(
        err.to_string().contains("bad credentials") && err.to_string().contains(&app.to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn a_basic_challenge_is_answered_with_the_registry_credentials() {
    let server = basic_auth_registry(|| Answer::new(200, "{}")).await;
    let client = with_credentials(&server.addr, "secret");
    client.ping(&server.addr).await.unwrap();
    // Without credentials the 401 is reported as it is.
    let err = common::client().ping(&server.addr).await.unwrap_err();
    assert!(
        matches!(err, RegistryError::Status { status: 401, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn credentials_never_go_to_a_plain_http_realm_on_another_host() {
    // The realm: another host (another port of loopback is another origin),
    // plain HTTP. It hands out an anonymous token to anyone.
    let realm = ScriptedServer::start(|_, _| Answer::new(200, r#"{"token":"anonymous"}"#)).await;
    let realm_url = format!("http://{}/token", realm.addr);
    let registry = ScriptedServer::start(move |_, request| {
        if request.headers.contains("authorization: Bearer anonymous") {
            Answer::new(200, r#"{"name":"team/app","tags":["v1"]}"#)
        } else {
            Answer::new(401, "{}").header(
                "WWW-Authenticate",
                &format!(r#"Bearer realm="{realm_url}",service="elsewhere""#),
            )
        }
    })
    .await;
    let client = with_credentials(&registry.addr, "secret");
    let app = image(&registry, "team/app");
    assert_eq!(client.list_tags(&app).await.unwrap(), ["v1"]);
    let asked = realm.seen.lock().unwrap().clone();
    assert_eq!(asked.len(), 1);
    assert!(!carries_authorization(&asked[0]), "{asked:?}");
}

#[tokio::test]
async fn a_redirect_to_another_host_carries_no_credentials() {
    let storage =
        ScriptedServer::start(|_, _| Answer::new(200, r#"{"name":"team/app","tags":["v1"]}"#))
            .await;
    let target = format!("http://{}/storage/tags", storage.addr);
    let registry =
        basic_auth_registry(move || Answer::new(307, "").header("Location", &target)).await;
    let client = with_credentials(&registry.addr, "secret");
    let app = image(&registry, "team/app");
    assert_eq!(client.list_tags(&app).await.unwrap(), ["v1"]);
    let fetched = storage.seen.lock().unwrap().clone();
    assert_eq!(fetched.len(), 1, "the redirect was not followed");
    assert!(!carries_authorization(&fetched[0]), "{fetched:?}");
}

#[tokio::test]
async fn credentials_set_later_reach_every_clone_of_the_client() {
    let server = basic_auth_registry(|| Answer::new(200, "{}")).await;
    let client = common::client();
    let clone = client.clone();
    let err = clone.ping(&server.addr).await.unwrap_err();
    assert!(
        matches!(err, RegistryError::Status { status: 401, .. }),
        "{err:?}"
    );
    client.set_credentials(
        &server.addr,
        Credentials {
            username: "user".into(),
            password: "secret".into(),
        },
    );
    clone.ping(&server.addr).await.unwrap();
    client.ping(&server.addr).await.unwrap();
}
