//! A test certificate authority made with the `openssl` CLI in a
//! temporary directory, and the leaf certificates it signs.

use std::path::PathBuf;
use std::process::{Command, Output};

use gantry_proxy::Certificate;

/// A test CA and leaf certificates it signs, in a temporary directory.
pub struct Pki {
    dir: tempfile::TempDir,
}

pub fn run(command: &mut Command) -> Output {
    let output = command.output().expect("the command runs");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

impl Pki {
    pub fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
        };
        run(Command::new("openssl")
            .current_dir(pki.dir.path())
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args([
                "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            ])
            .args(["-subj", "/CN=gantry test CA"]));
        pki
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A leaf for `name`, saved as `file.pem` and `file.key`.
    pub fn leaf(&self, file: &str, name: &str) -> Certificate {
        let dir = self.dir.path();
        std::fs::write(
            dir.join(format!("{file}.ext")),
            format!("subjectAltName=DNS:{name}\n"),
        )
        .unwrap();
        run(Command::new("openssl")
            .current_dir(dir)
            .args([
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
            ])
            .args([
                "-keyout",
                &format!("{file}.key"),
                "-out",
                &format!("{file}.csr"),
            ])
            .args(["-subj", &format!("/CN={name}")]));
        run(Command::new("openssl")
            .current_dir(dir)
            .args([
                "x509",
                "-req",
                "-in",
                &format!("{file}.csr"),
                "-CA",
                "ca.pem",
            ])
            .args(["-CAkey", "ca.key", "-CAcreateserial", "-days", "2"])
            .args([
                "-out",
                &format!("{file}.pem"),
                "-extfile",
                &format!("{file}.ext"),
            ]));
        self.load(file, file)
    }

    pub fn load(&self, cert_file: &str, key_file: &str) -> Certificate {
        let dir = self.dir.path();
        Certificate::new(
            cert_file,
            std::fs::read_to_string(dir.join(format!("{cert_file}.pem"))).unwrap(),
            std::fs::read_to_string(dir.join(format!("{key_file}.key"))).unwrap(),
        )
    }
}
