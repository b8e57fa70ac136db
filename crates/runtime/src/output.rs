//! What a replica wrote (stdout and stderr), for `gantry env logs`.
//!
//! The process runtime appends both streams to `DATA_DIR/replicas/<id>.log`
//! (rotated to `<id>.log.1` past its size limit; see `process`). Those
//! lines carry no time of their own, so `since` there only skips a log not
//! written since then. A cursor is `<inode>:<offset>` of the current log:
//! a follower gets what came after it, or, when the log was rotated since
//! (another inode, or shorter), the tail again. Docker keeps each line's
//! time (`docker logs --timestamps`), so its cursor is the last line's
//! timestamp and `since` is exact.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::RuntimeError;

/// Which part of a replica's output to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// Only output written at or after this time (Unix ms).
    pub since_ms: Option<i64>,
    /// A cursor an earlier answer gave: only what came after it.
    pub after: Option<String>,
    /// At most this many bytes, from the end.
    pub max_bytes: u64,
}

/// A part of a replica's output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaOutput {
    /// The bytes, as text (invalid UTF-8 replaced).
    pub text: String,
    /// Where this answer ended: give it back as [`LogQuery::after`].
    pub cursor: String,
}

/// The last `max` bytes of `file` from `start` on (and whether it was cut).
fn read_from(path: &Path, start: u64, max: u64) -> std::io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let from = start.max(len.saturating_sub(max));
    file.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::new();
    file.take(len - from).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The process runtime's output of replica `id` in `replicas_dir`.
pub(crate) fn process_log(
    replicas_dir: &Path,
    id: &str,
    query: &LogQuery,
) -> Result<ReplicaOutput, RuntimeError> {
    let current = replicas_dir.join(format!("{id}.log"));
    let rotated = replicas_dir.join(format!("{id}.log.1"));
    let state = |path: &Path| RuntimeError::state("reading", path.to_path_buf());
    let meta = match std::fs::metadata(&current) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ReplicaOutput::default()),
        Err(e) => return Err(state(&current)(e)),
    };
    let cursor = format!("{}:{}", meta.ino(), meta.len());
    let unchanged_since = query.since_ms.is_some_and(|since| {
        meta.modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .is_some_and(|t| (t.as_millis() as i64) < since)
    });
    if unchanged_since {
        return Ok(ReplicaOutput {
            text: String::new(),
            cursor,
        });
    }
    let after = query.after.as_deref().and_then(|c| {
        let (ino, offset) = c.split_once(':')?;
        Some((ino.parse::<u64>().ok()?, offset.parse::<u64>().ok()?))
    });
    let bytes = match after {
        // The same file, not rotated since: only what is new.
        Some((ino, offset)) if ino == meta.ino() && offset <= meta.len() => {
            read_from(&current, offset, query.max_bytes).map_err(state(&current))?
        }
        // First read, or the log was rotated: the end of the rotated log,
        // then the current one, within the limit.
        _ => {
            let mut bytes = read_from(&current, 0, query.max_bytes).map_err(state(&current))?;
            let room = query.max_bytes.saturating_sub(bytes.len() as u64);
            if room > 0 && after.is_none() && rotated.exists() {
                let mut older = read_from(&rotated, 0, room).map_err(state(&rotated))?;
                older.append(&mut bytes);
                bytes = older;
            }
            bytes
        }
    };
    Ok(ReplicaOutput {
        text: String::from_utf8_lossy(&bytes).into_owned(),
        cursor,
    })
}
