//! `DATA_DIR/server.json` and the data dir's lock: how the CLI and scripts
//! find the server that owns a data dir, and how two servers are kept from
//! owning one.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::ControlError;

/// The contents of `server.json` (formats.md §3).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServerInfo {
    pub pid: u32,
    /// `http://ADDR:PORT`, or `https://…` when the server serves TLS.
    pub api: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// The certificate the API serves (PEM path), so that the CLI on this
    /// machine trusts it without setup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<std::path::PathBuf>,
}

/// The server described by `server.json`, if its process is alive.
pub fn live_server(data_dir: &Path) -> Option<ServerInfo> {
    let text = std::fs::read_to_string(data_dir.join("server.json")).ok()?;
    let info: ServerInfo = serde_json::from_str(&text).ok()?;
    let alive = Path::new("/proc").join(info.pid.to_string()).exists();
    alive.then_some(info)
}

/// Exclusive ownership of a data dir, held while a server runs. Dropping it
/// removes `server.json` and releases the lock.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    info_path: PathBuf,
    wrote_info: bool,
}

impl DataDirLock {
    /// Takes the lock, or says which server holds it.
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock, ControlError> {
        std::fs::create_dir_all(data_dir).map_err(|e| ControlError::io(data_dir, e))?;
        // The data dir holds the master key, tokens and logs: owner only.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| ControlError::io(data_dir, e))?;
        }
        let path = data_dir.join("server.lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| ControlError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = live_server(data_dir)
                    .map(|i| format!(" (pid {}, {})", i.pid, i.api))
                    .unwrap_or_default();
                return Err(ControlError::DataDirOwned {
                    data_dir: data_dir.display().to_string(),
                    holder,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(ControlError::io(&path, e)),
        }
        Ok(DataDirLock {
            _file: file,
            info_path: data_dir.join("server.json"),
            wrote_info: false,
        })
    }

    /// Writes `server.json` atomically.
    pub fn publish(&mut self, info: &ServerInfo) -> Result<(), ControlError> {
        let tmp = self.info_path.with_extension("json.tmp");
        let text =
            serde_json::to_string(info).map_err(|e| ControlError::Internal(e.to_string()))?;
        std::fs::write(&tmp, text).map_err(|e| ControlError::io(&tmp, e))?;
        std::fs::rename(&tmp, &self.info_path).map_err(|e| ControlError::io(&self.info_path, e))?;
        self.wrote_info = true;
        Ok(())
    }
}

impl Drop for DataDirLock {
    fn drop(&mut self) {
        if self.wrote_info {
            let _ = std::fs::remove_file(&self.info_path);
        }
    }
}
