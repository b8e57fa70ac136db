//! The embedded registry keeps one address per data dir (issue 18 item 1):
//! a server started after another exited listens where the first did, and
//! a short reference given to `gantry deploy` (`shop/web:1`) is looked up in
//! the embedded registry, not on Docker Hub. The real binary, background
//! servers as every command starts them.

mod project;

use std::time::Duration;

use project::{Project, stderr};

impl Project {
    /// The registry address in `server.json`, once a server published it.
    fn registry(&self) -> String {
        let info = self.data_dir().join("server.json");
        let mut registry = None;
        let found = gantry_clock::blocking_poll(
            Duration::from_secs(30),
            Duration::from_millis(100),
            || {
                let text = std::fs::read_to_string(&info).ok()?;
                let json: serde_json::Value = serde_json::from_str(&text).ok()?;
                registry = json["registry"].as_str().map(str::to_string);
                registry.clone()
            },
        );
        found.unwrap_or_else(|| panic!("no server.json in {}", self.data_dir().display()))
    }

    /// Stops the server and waits until it has gone.
    fn shutdown(&self) {
        let _ = self.run(&["shutdown"]);
        let info = self.data_dir().join("server.json");
        let gone = gantry_clock::blocking_poll(
            Duration::from_secs(30),
            Duration::from_millis(100),
            || (!info.exists()).then_some(()),
        );
        assert!(gone.is_some(), "the server did not stop");
    }
}

fn port(addr: &str) -> &str {
    addr.rsplit_once(':').map_or(addr, |(_, p)| p)
}

#[test]
fn the_registry_keeps_its_address_and_short_references_are_in_it() {
    let p = Project::new();
    p.write_environments();
    let out = p.run(&["apply", "-f", "environments.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let first = p.registry();
    let remembered = std::fs::read_to_string(p.data_dir().join("registry.port")).unwrap();
    assert_eq!(remembered.trim(), port(&first));

    p.shutdown();
    let out = p.run(&["env", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(p.registry(), first, "a new server moved the registry");

    // `shop/web:1` names the embedded registry; nothing is asked of Docker Hub.
    let out = p.run(&["deploy", "staging", "web", "--image", "shop/web:1"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert!(
        text.contains(&format!("image {first}/shop/web:1 does not exist")),
        "{text}"
    );
    assert!(text.contains("[deploy.image_not_found]"), "{text}");

    // Its usual port taken, a server takes another for now and says so.
    p.shutdown();
    let taken = std::net::TcpListener::bind(&first).unwrap();
    let out = p.run(&["env", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let now = p.registry();
    assert_ne!(now, first);
    let log = std::fs::read_to_string(p.data_dir().join("server.log")).unwrap();
    assert!(
        log.contains(&format!("usual address {first} is not free")),
        "{log}"
    );
    drop(taken);
    p.shutdown();
    let _ = p.run(&["env", "list"]);
    assert_eq!(
        p.registry(),
        first,
        "the remembered port was not asked for again"
    );
}

impl Project {
    fn write_environments(&self) {
        std::fs::write(
            self.dir.join("environments.yaml"),
            "version: 1\nenvironments:\n  staging: {runtime: process}\nservices:\n  web: {image: shop/web:1, port: 8080}\n",
        )
        .unwrap();
    }
}
