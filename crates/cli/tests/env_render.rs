//! `gantry env render ENV --kubernetes` (issue 15): the sample shop's
//! manifests for any environment, with no server and no data dir, what
//! the golden test in crates/kube checks (the same rendering code) printed
//! on stdout, and never a secret value.

mod project;

use std::path::Path;

use project::{gantry, stderr, stdout};

fn shop_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/shop"))
}

#[test]
fn renders_the_shops_environments_without_a_server() {
    let digest = format!("127.0.0.1:5000/shop/catalog@sha256:{}", "a".repeat(64));
    let out = gantry()
        .current_dir(shop_dir())
        .args(["env", "render", "production", "--kubernetes", "--image"])
        .arg(format!("catalog={digest}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.matches("\nkind: Deployment\n").count(), 3, "{text}");
    assert_eq!(text.matches("\nkind: Service\n").count(), 3);
    assert!(text.contains("name: gantry-production\n"));
    assert!(text.contains(&digest));
    // The runtime line says process; it renders as if it were kubernetes.
    assert!(text.contains("# Secret bff-secrets-"));
    assert!(text.contains("  SERVICE_DNS: \"\"\n"), "{text}");
}

#[test]
fn render_refuses_an_unknown_environment_and_a_missing_format() {
    let out = gantry()
        .current_dir(shop_dir())
        .args(["env", "render", "qa", "--kubernetes"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(
            "environment qa: not in the project (it has: production, staging) [kubernetes.manifest]"
        ),
        "{}",
        stderr(&out)
    );
    let out = gantry()
        .current_dir(shop_dir())
        .args(["env", "render", "staging"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--kubernetes"), "{}", stderr(&out));
}
