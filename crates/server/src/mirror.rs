//! Mirrors of git repositories: what source actions and triggers read.
//!
//! A source action's `repository` is a local path (a checkout or a bare
//! repository on this machine) or a URL: `file://`, `git://` (a `git
//! daemon`), `https://` (or `http://`), `ssh://` or scp-like
//! `user@host:path`. gantry keeps one bare mirror per URL under
//! `DATA_DIR/mirrors/`, named by a hash of the normalised URL, and brings
//! it up to date with `git fetch --prune` of every branch and tag: no
//! clone per run, and a run reads its commit from the mirror. A local path
//! needs no mirror: it is read in place.
//!
//! Fetches of one mirror are serialised by a per-mirror async mutex, so a
//! poll and a source action never fetch into one repository at once;
//! reads (`has_commit`, `archive`, …) need no lock, since git writes
//! objects before it moves refs. Mirrors log every ref update
//! (`core.logAllRefUpdates=always`), so a commit a force-push moved away
//! stays readable until the reflog expires: an execution pinned to it
//! still runs it.
//!
//! Credentials never come from the pipeline file (a URL holding a password
//! is refused) but from the parameter store, under
//! [`REPOSITORY_CREDENTIALS_PATH`] (docs/formats.md §7, "Repositories and
//! credentials"): a token is sent as an HTTP `Authorization` header handed
//! to git through `GIT_CONFIG_*` variables (never on a command line, never
//! in a URL), an SSH key is written to a 0600 file for the one call and
//! removed after it. Every git call runs from a cleared environment, with
//! prompts off, a time limit, in its own process group (killed on timeout
//! or cancellation), and its error output, bounded, has every credential
//! masked.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use gantry_build::Masker;
use gantry_params::{ParamName, ParamStore, SecretValue, Selector};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

mod ls_refs;

/// Where repository credentials live in the parameter store:
/// `/gantry/repositories/<host>/<path>/token` (a SecureString; with an
/// optional `username` String beside it) or `…/ssh_key` (a SecureString
/// holding a private key). `<host>` is the host name, lower case, with
/// `:port` written `_port`; `<path>` is the repository's path without a
/// trailing `.git`, every character outside `[A-Za-z0-9_.-]` written `_`.
/// Shorter prefixes are looked at too, most specific first, so
/// `/gantry/repositories/github.com/acme/token` serves every repository of
/// `acme`, and `/gantry/repositories/github.com/token` the whole host.
pub const REPOSITORY_CREDENTIALS_PATH: &str = "/gantry/repositories";

/// The user name sent with a token when no `username` parameter is set;
/// GitHub, GitLab and Gitea accept a token as the password of any user.
pub const DEFAULT_TOKEN_USER: &str = "x-access-token";

/// `git ls-remote`'s time limit.
const LS_REMOTE_TIMEOUT: Duration = Duration::from_secs(60);
/// `git fetch`'s time limit (a first fetch of a large repository).
const FETCH_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// The limit of git's reads of a mirror (a commit, a diff).
const LOCAL_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// `git archive | tar -x`'s time limit; an action's own timeout is
/// usually shorter.
const ARCHIVE_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// How much of git's error output is kept for the error.
const STDERR_LIMIT: usize = 8 * 1024;
/// The most a git call may print (refs, file lists, a commit message).
const STDOUT_LIMIT: usize = 64 * 1024 * 1024;
/// The transports a repository may use (`ext::`, `fd::` and the like never).
const ALLOWED_PROTOCOLS: &str = "file:git:http:https:ssh";

/// Why a repository could not be read. Each variant names the repository
/// (as written, which holds no credential) and never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("repository {repository:?}: {reason}")]
    InvalidRepository { repository: String, reason: String },
    #[error(
        "repository {repository:?}: credentials belong in the parameter store \
         ({REPOSITORY_CREDENTIALS_PATH}/…), not in the URL"
    )]
    CredentialsInUrl { repository: String },
    #[error("{commit:?} is not a commit id (4 to 64 lower-case hexadecimal digits)")]
    InvalidCommit { commit: String },
    #[error("repository {repository}: cannot read its credentials: {reason}")]
    Credentials { repository: String, reason: String },
    #[error("git {operation} of {repository} failed: {detail}")]
    Unreachable {
        repository: String,
        operation: &'static str,
        detail: String,
    },
    #[error("git {operation} of {repository} took longer than {seconds} s and was stopped")]
    TimedOut {
        repository: String,
        operation: &'static str,
        seconds: u64,
    },
    #[error("git {operation} of {repository} printed more than {limit} bytes")]
    OutputTooLarge {
        repository: String,
        operation: &'static str,
        limit: usize,
    },
    #[error(
        "commit {commit} is not in {repository}: it was force-pushed away or deleted \
         before gantry fetched it"
    )]
    CommitNotFound { repository: String, commit: String },
    #[error("repository {repository} has no branch {branch:?}")]
    BranchNotFound { repository: String, branch: String },
    #[error("git {operation} in {repository} failed: {detail}")]
    Git {
        repository: String,
        operation: &'static str,
        detail: String,
    },
    #[error("cannot run git: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl MirrorError {
    /// A stable `source.snake_case` code.
    pub fn code(&self) -> &'static str {
        match self {
            MirrorError::InvalidRepository { .. } => "source.invalid_repository",
            MirrorError::CredentialsInUrl { .. } => "source.credentials_in_url",
            MirrorError::InvalidCommit { .. } => "source.invalid_commit",
            MirrorError::Credentials { .. } => "source.credentials",
            MirrorError::Unreachable { .. } => "source.unreachable",
            MirrorError::TimedOut { .. } => "source.timeout",
            MirrorError::OutputTooLarge { .. } => "source.output_too_large",
            MirrorError::CommitNotFound { .. } => "source.commit_not_found",
            MirrorError::BranchNotFound { .. } => "source.branch_not_found",
            MirrorError::Git { .. } => "source.git_failed",
            MirrorError::Spawn(_) => "source.git_unavailable",
            MirrorError::Io { .. } => "source.io",
        }
    }

    /// The HTTP status an API answers this error with.
    pub fn http_status(&self) -> u16 {
        match self {
            MirrorError::InvalidRepository { .. }
            | MirrorError::CredentialsInUrl { .. }
            | MirrorError::InvalidCommit { .. } => 400,
            MirrorError::CommitNotFound { .. } | MirrorError::BranchNotFound { .. } => 404,
            MirrorError::Unreachable { .. } | MirrorError::OutputTooLarge { .. } => 502,
            MirrorError::TimedOut { .. } => 504,
            MirrorError::Credentials { .. }
            | MirrorError::Git { .. }
            | MirrorError::Spawn(_)
            | MirrorError::Io { .. } => 500,
        }
    }

    fn io(path: &Path, source: std::io::Error) -> MirrorError {
        MirrorError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// One commit's identity and message, as source actions output them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    /// The full commit id.
    pub id: String,
    pub message: String,
    pub author_name: String,
    pub author_email: String,
    /// Strict ISO 8601 (`git log --format=%aI`).
    pub author_date: String,
}

/// A repository as a source action names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repository {
    /// A repository on this machine, read in place (absolute path).
    Local(PathBuf),
    /// A repository behind a URL, read through a mirror.
    Remote(RemoteUrl),
}

/// A parsed repository URL (`file://`, `git://`, `http(s)://`, `ssh://`,
/// scp-like `user@host:path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteUrl {
    /// As written, which is what git is given.
    url: String,
    scheme: Scheme,
    /// Lower case; empty for `file://`.
    host: String,
    port: Option<u16>,
    /// The path as written after the host, without a leading `/`.
    path: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    File,
    Git,
    Http,
    Https,
    Ssh,
    /// `user@host:path`.
    Scp,
}

impl Repository {
    /// Reads a repository's text as a source action writes it. A local path
    /// must be absolute here (see [`resolve_repository`]).
    pub fn parse(text: &str) -> Result<Repository, MirrorError> {
        let invalid = |reason: &str| MirrorError::InvalidRepository {
            repository: text.to_string(),
            reason: reason.to_string(),
        };
        if text.is_empty() {
            return Err(invalid("it is empty"));
        }
        if text.chars().any(char::is_control) {
            return Err(invalid("it holds a control character"));
        }
        if text.starts_with('-') {
            return Err(invalid("it starts with `-`"));
        }
        if let Some((helper, _)) = text.split_once("::")
            && !helper.contains('/')
        {
            // git's `<transport>::<address>` runs a remote helper.
            return Err(invalid(&format!("the transport {helper:?} is not allowed")));
        }
        if let Some((scheme, rest)) = text.split_once("://") {
            let scheme = match scheme.to_ascii_lowercase().as_str() {
                "file" => Scheme::File,
                "git" => Scheme::Git,
                "http" => Scheme::Http,
                "https" => Scheme::Https,
                "ssh" | "git+ssh" | "ssh+git" => Scheme::Ssh,
                other => {
                    return Err(invalid(&format!(
                        "the scheme {other:?} is not one of file, git, http, https, ssh"
                    )));
                }
            };
            if scheme == Scheme::File {
                if !rest.starts_with('/') {
                    return Err(invalid("a file:// URL needs an absolute path (file:///…)"));
                }
                return Ok(Repository::Remote(RemoteUrl {
                    url: text.to_string(),
                    scheme,
                    host: String::new(),
                    port: None,
                    path: rest.trim_start_matches('/').to_string(),
                }));
            }
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let host_port = match authority.rsplit_once('@') {
                Some((userinfo, host_port)) => {
                    if userinfo.contains(':') || scheme != Scheme::Ssh {
                        return Err(MirrorError::CredentialsInUrl {
                            repository: text.to_string(),
                        });
                    }
                    host_port
                }
                None => authority,
            };
            let (host, port) = split_port(host_port).map_err(|r| invalid(&r))?;
            check_host(&host).map_err(|r| invalid(&r))?;
            if path.is_empty() {
                return Err(invalid("the URL names no repository path"));
            }
            return Ok(Repository::Remote(RemoteUrl {
                url: text.to_string(),
                scheme,
                host,
                port,
                path: path.to_string(),
            }));
        }
        // scp-like: a `:` before any `/`, and not a path (`./a:b`, `/a:b`).
        if let Some((before, path)) = text.split_once(':')
            && !before.contains('/')
            && !before.starts_with('.')
            && !before.is_empty()
        {
            let host = match before.rsplit_once('@') {
                Some((user, host)) => {
                    if user.is_empty() {
                        return Err(invalid("the user before `@` is empty"));
                    }
                    host
                }
                None => before,
            };
            let host = host.to_ascii_lowercase();
            check_host(&host).map_err(|r| invalid(&r))?;
            if path.is_empty() {
                return Err(invalid("the URL names no repository path"));
            }
            return Ok(Repository::Remote(RemoteUrl {
                url: text.to_string(),
                scheme: Scheme::Scp,
                host,
                port: None,
                path: path.trim_start_matches('/').to_string(),
            }));
        }
        let path = PathBuf::from(text);
        if !path.is_absolute() {
            return Err(invalid(
                "a local path must be absolute here (relative paths are relative to the \
                 pipeline file's directory)",
            ));
        }
        Ok(Repository::Local(path))
    }

    /// What git is given to name the repository: the path or the URL.
    fn git_target(&self) -> OsString {
        match self {
            Repository::Local(path) => path.clone().into_os_string(),
            Repository::Remote(remote) => remote.as_str().into(),
        }
    }

    /// Whether a source action's `repository` text is a URL (else a path).
    pub fn is_url(text: &str) -> bool {
        matches!(
            Repository::parse(text),
            Ok(Repository::Remote(_)) | Err(MirrorError::CredentialsInUrl { .. })
        ) || text.contains("://")
    }
}

impl RemoteUrl {
    /// The URL as written.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// One spelling per repository, for the mirror's name: scheme and host
    /// lower case, no trailing `/` or `.git`.
    pub fn normalised(&self) -> String {
        let path = trim_repo_path(&self.path);
        match self.scheme {
            Scheme::File => format!("file:///{path}"),
            Scheme::Scp => {
                let user = self
                    .url
                    .split_once(':')
                    .and_then(|(before, _)| before.rsplit_once('@'))
                    .map(|(user, _)| format!("{user}@"))
                    .unwrap_or_default();
                format!("scp:{user}{}:{path}", self.host)
            }
            scheme => {
                let name = match scheme {
                    Scheme::Git => "git",
                    Scheme::Http => "http",
                    Scheme::Https => "https",
                    _ => "ssh",
                };
                let user = if scheme == Scheme::Ssh {
                    self.url
                        .split_once("://")
                        .and_then(|(_, rest)| rest.split('/').next())
                        .and_then(|authority| authority.rsplit_once('@'))
                        .map(|(user, _)| format!("{user}@"))
                        .unwrap_or_default()
                } else {
                    String::new()
                };
                let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
                format!("{name}://{user}{}{port}/{path}", self.host)
            }
        }
    }

    /// `https://host[:port]/` for an HTTP(S) URL: what an `Authorization`
    /// header is scoped to, so a redirect elsewhere never receives it.
    fn http_base(&self) -> Option<String> {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
            _ => return None,
        };
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        Some(format!("{scheme}://{}{port}/", self.host))
    }

    fn is_ssh(&self) -> bool {
        matches!(self.scheme, Scheme::Ssh | Scheme::Scp)
    }

    /// The parameter-store prefixes of this repository's credentials, most
    /// specific first (see [`REPOSITORY_CREDENTIALS_PATH`]).
    pub fn credential_prefixes(&self) -> Vec<String> {
        if self.scheme == Scheme::File {
            return Vec::new();
        }
        let host = match self.port {
            Some(port) => format!("{}_{port}", self.host),
            None => self.host.clone(),
        };
        let host = param_segment(host.trim_start_matches('[').trim_end_matches(']'));
        // Room for the host, the key's name and the root's two levels
        // within a parameter name's fifteen.
        let segments: Vec<String> = trim_repo_path(&self.path)
            .split('/')
            .map(|s| s.trim_start_matches('~'))
            .filter(|s| !s.is_empty())
            .map(param_segment)
            .take(11)
            .collect();
        (0..=segments.len())
            .rev()
            .map(|n| {
                let mut prefix = format!("{REPOSITORY_CREDENTIALS_PATH}/{host}");
                for segment in &segments[..n] {
                    prefix.push('/');
                    prefix.push_str(segment);
                }
                prefix
            })
            .collect()
    }

    /// The web page of a commit, for forges whose URLs are known
    /// (GitHub, GitLab, Gitea, Forgejo, Codeberg, Bitbucket): `https://`
    /// and scp-like URLs of a host whose name says so.
    pub fn commit_url(&self, commit: &str) -> Option<String> {
        let forge = [
            "github",
            "gitlab",
            "gitea",
            "forgejo",
            "codeberg",
            "bitbucket",
        ];
        let host = self.host.as_str();
        if !forge.iter().any(|f| host.split('.').any(|part| part == *f)) {
            return None;
        }
        let web = match self.scheme {
            Scheme::Https | Scheme::Http => {
                let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
                let scheme = if self.scheme == Scheme::Https {
                    "https"
                } else {
                    "http"
                };
                format!("{scheme}://{host}{port}")
            }
            Scheme::Ssh | Scheme::Scp => format!("https://{host}"),
            Scheme::Git | Scheme::File => return None,
        };
        let path = trim_repo_path(&self.path);
        let separator = if host.split('.').any(|p| p == "gitlab") {
            "/-/commit/"
        } else if host.split('.').any(|p| p == "bitbucket") {
            "/commits/"
        } else {
            "/commit/"
        };
        Some(format!("{web}/{path}{separator}{commit}"))
    }
}

/// A source action's `repository` made absolute: a relative local path is
/// relative to `base_dir` (the pipeline file's directory); URLs stay.
pub fn resolve_repository(base_dir: &Path, repository: &str) -> String {
    if Repository::is_url(repository) || Path::new(repository).is_absolute() {
        return repository.to_string();
    }
    let joined = base_dir.join(repository);
    joined
        .canonicalize()
        .unwrap_or(joined)
        .display()
        .to_string()
}

fn split_port(host_port: &str) -> Result<(String, Option<u16>), String> {
    if let Some(rest) = host_port.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| "an IPv6 host lacks its `]`".to_string())?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().map_err(|_| format!("bad port {p:?}"))?),
            None if after.is_empty() => None,
            None => return Err(format!("unexpected {after:?} after the host")),
        };
        return Ok((format!("[{}]", host.to_ascii_lowercase()), port));
    }
    match host_port.rsplit_once(':') {
        Some((host, port)) => Ok((
            host.to_ascii_lowercase(),
            Some(port.parse().map_err(|_| format!("bad port {port:?}"))?),
        )),
        None => Ok((host_port.to_ascii_lowercase(), None)),
    }
}

fn check_host(host: &str) -> Result<(), String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.is_empty() {
        return Err("the URL names no host".to_string());
    }
    if bare.starts_with('-') {
        return Err("the host starts with `-`".to_string());
    }
    if !bare
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
    {
        return Err(format!("{host:?} is not a host name"));
    }
    Ok(())
}

/// A repository path without its surrounding `/` and its `.git`.
fn trim_repo_path(path: &str) -> &str {
    let path = path.trim_matches('/');
    path.strip_suffix(".git").unwrap_or(path)
}

/// One level of a parameter name: characters outside `[A-Za-z0-9_.-]`
/// become `_`.
fn param_segment(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A commit id as git calls may be given it: 4 to 64 lower-case hex digits.
pub fn check_commit(commit: &str) -> Result<(), MirrorError> {
    let ok = (4..=64).contains(&commit.len())
        && commit
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(MirrorError::InvalidCommit {
            commit: commit.chars().take(80).collect(),
        })
    }
}

/// Whether `commit` is git's "no commit" (a created or deleted ref's other
/// side): all zeros.
pub fn is_zero_commit(commit: &str) -> bool {
    !commit.is_empty() && commit.bytes().all(|b| b == b'0')
}

/// The credentials of one repository, read from the parameter store.
/// `Debug` shows which are present, never their values.
#[derive(Clone, Default)]
pub struct RepoCredentials {
    token: Option<SecretValue>,
    username: Option<String>,
    ssh_key: Option<SecretValue>,
    /// The parameter prefix they were found under.
    found_at: Option<String>,
}

impl fmt::Debug for RepoCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RepoCredentials")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("username", &self.username)
            .field("ssh_key", &self.ssh_key.as_ref().map(|_| "***"))
            .field("found_at", &self.found_at)
            .finish()
    }
}

impl RepoCredentials {
    /// No credentials: public repositories, local paths, `file://`.
    pub fn none() -> RepoCredentials {
        RepoCredentials::default()
    }

    /// A token sent as the password of `username` (default
    /// [`DEFAULT_TOKEN_USER`]) over HTTP(S).
    pub fn token(token: impl Into<String>, username: Option<String>) -> RepoCredentials {
        RepoCredentials {
            token: Some(SecretValue::new(token)),
            username,
            ..RepoCredentials::default()
        }
    }

    /// A private key for `ssh://` and scp-like URLs.
    pub fn ssh_key(key: impl Into<String>) -> RepoCredentials {
        RepoCredentials {
            ssh_key: Some(SecretValue::new(key)),
            ..RepoCredentials::default()
        }
    }

    /// The credentials the parameter store holds for `url` (none for a
    /// local path or `file://`): at the most specific prefix of
    /// [`RemoteUrl::credential_prefixes`] that has a `token` or an
    /// `ssh_key`. Read in one snapshot, decrypted.
    pub async fn from_params(
        params: &ParamStore,
        url: &str,
    ) -> Result<RepoCredentials, MirrorError> {
        let Repository::Remote(remote) = Repository::parse(url)? else {
            return Ok(RepoCredentials::none());
        };
        let prefixes = remote.credential_prefixes();
        let mut selectors = Vec::new();
        for prefix in &prefixes {
            for key in ["token", "username", "ssh_key"] {
                if let Ok(name) = ParamName::parse(&format!("{prefix}/{key}")) {
                    selectors.push(Selector::latest(name));
                }
            }
        }
        if selectors.is_empty() {
            return Ok(RepoCredentials::none());
        }
        let found =
            params
                .get_many(&selectors, true)
                .await
                .map_err(|e| MirrorError::Credentials {
                    repository: url.to_string(),
                    reason: format!("{} ({})", e.code(), e),
                })?;
        let value = |name: &str| {
            found
                .parameters
                .iter()
                .find(|p| p.name.as_str() == name)
                .and_then(|p| p.value.expose())
                .map(str::to_string)
        };
        for prefix in &prefixes {
            let token = value(&format!("{prefix}/token"));
            let ssh_key = value(&format!("{prefix}/ssh_key"));
            if token.is_none() && ssh_key.is_none() {
                continue;
            }
            return Ok(RepoCredentials {
                token: token.map(SecretValue::new),
                username: value(&format!("{prefix}/username")),
                ssh_key: ssh_key.map(SecretValue::new),
                found_at: Some(prefix.clone()),
            });
        }
        Ok(RepoCredentials::none())
    }

    /// Whether any credential is present.
    pub fn is_empty(&self) -> bool {
        self.token.is_none() && self.ssh_key.is_none()
    }

    /// The parameter prefix the credentials came from, if any.
    pub fn found_at(&self) -> Option<&str> {
        self.found_at.as_deref()
    }

    /// `Basic base64(user:token)`, the header value sent over HTTP(S).
    fn basic_auth(&self) -> Option<String> {
        let token = self.token.as_ref()?;
        let user = self.username.as_deref().unwrap_or(DEFAULT_TOKEN_USER);
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", token.expose()));
        Some(format!("Basic {encoded}"))
    }

    /// Every text a git call's output must not show: the token, the header
    /// carrying it, the key and each of its lines.
    fn masker(&self) -> Masker {
        let mut secrets: Vec<String> = Vec::new();
        if let Some(token) = &self.token {
            secrets.push(token.expose().to_string());
        }
        if let Some(header) = self.basic_auth() {
            secrets.push(header.trim_start_matches("Basic ").to_string());
        }
        if let Some(key) = &self.ssh_key {
            secrets.push(key.expose().to_string());
        }
        Masker::new(secrets)
    }
}

/// The mirrors of one data dir. Cheap to clone. Fetch locks are per mirror
/// directory and shared by every `Mirrors` of the process, so two values
/// made for one data dir (source actions', triggers') never fetch into one
/// mirror at once.
#[derive(Clone)]
pub struct Mirrors {
    inner: Arc<MirrorsInner>,
}

struct MirrorsInner {
    /// `DATA_DIR/mirrors`.
    root: PathBuf,
}

/// One lock per mirror directory, taken for its fetches (one entry per
/// repository this process fetched).
type FetchLocks = std::sync::Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>;
static FETCH_LOCKS: std::sync::LazyLock<FetchLocks> = std::sync::LazyLock::new(Default::default);

impl Mirrors {
    /// The mirrors under `DATA_DIR/mirrors/` (created on first fetch).
    pub fn new(data_dir: &Path) -> Mirrors {
        Mirrors {
            inner: Arc::new(MirrorsInner {
                root: data_dir.join("mirrors"),
            }),
        }
    }

    /// `DATA_DIR/mirrors`.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Where `url`'s repository is read: its mirror's directory (which may
    /// not exist yet), or a local path itself.
    pub fn location(&self, url: &str) -> Result<PathBuf, MirrorError> {
        Ok(match Repository::parse(url)? {
            Repository::Local(path) => path,
            Repository::Remote(remote) => self.mirror_dir(&remote),
        })
    }

    fn mirror_dir(&self, remote: &RemoteUrl) -> PathBuf {
        let digest = Sha256::digest(remote.normalised().as_bytes());
        self.inner
            .root
            .join(format!("{}.git", hex::encode(&digest[..16])))
    }

    fn lock_for(&self, dir: &Path) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = FETCH_LOCKS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.entry(dir.to_path_buf()).or_default().clone()
    }

    /// Every branch and tag of the repository, as `(full ref, commit)`
    /// sorted by ref; an annotated tag gives the commit it points to. A
    /// `git://` or `http(s)://` remote is asked by gantry itself first
    /// ([`ls_refs`]: one request, no process), then by `git ls-remote`.
    pub async fn ls_remote(
        &self,
        url: &str,
        creds: &RepoCredentials,
    ) -> Result<Vec<(String, String)>, MirrorError> {
        let repository = Repository::parse(url)?;
        if let Repository::Remote(remote) = &repository
            && let Some(refs) = ls_refs::list(remote, creds.basic_auth().as_deref()).await
        {
            return Ok(refs);
        }
        let args = vec![
            "--heads".into(),
            "--tags".into(),
            "--".into(),
            repository.git_target(),
        ];
        let out = self
            .remote_git(url, &repository, creds, RemoteOp::LsRemote, None, args)
            .await?;
        Ok(parse_ls_remote(&String::from_utf8_lossy(&out)))
    }

    /// The branch the repository's `HEAD` names: its default branch.
    pub async fn default_branch(
        &self,
        url: &str,
        creds: &RepoCredentials,
    ) -> Result<String, MirrorError> {
        let repository = Repository::parse(url)?;
        let args = vec![
            "--symref".into(),
            "--".into(),
            repository.git_target(),
            "HEAD".into(),
        ];
        let out = self
            .remote_git(url, &repository, creds, RemoteOp::LsRemote, None, args)
            .await?;
        String::from_utf8_lossy(&out)
            .lines()
            .find_map(|line| {
                let (target, name) = line.strip_prefix("ref: ")?.split_once('\t')?;
                (name == "HEAD").then(|| target.strip_prefix("refs/heads/").map(str::to_string))?
            })
            .ok_or_else(|| MirrorError::BranchNotFound {
                repository: url.to_string(),
                branch: "HEAD".to_string(),
            })
    }

    /// Brings the repository's mirror up to date (creating it on first
    /// use) and returns the bare repository to read: every branch and tag
    /// as the remote has them, deleted ones pruned. A local path is
    /// returned as it is, once it is seen to be a repository.
    pub async fn fetch(&self, url: &str, creds: &RepoCredentials) -> Result<PathBuf, MirrorError> {
        let repository = Repository::parse(url)?;
        let remote = match &repository {
            Repository::Local(path) => {
                check_local(path, url).await?;
                return Ok(path.clone());
            }
            Repository::Remote(remote) => remote,
        };
        let (dir, _fetching) = self.lock_mirror(remote).await?;
        let args = vec![
            "--quiet".into(),
            "--prune".into(),
            "--no-tags".into(),
            "--no-write-fetch-head".into(),
            "--".into(),
            remote.as_str().into(),
            "+refs/heads/*:refs/heads/*".into(),
            "+refs/tags/*:refs/tags/*".into(),
        ];
        self.remote_git(url, &repository, creds, RemoteOp::Fetch, Some(&dir), args)
            .await?;
        Ok(dir)
    }

    /// Fetches one commit by id into a mirror, for a pinned commit that no
    /// branch or tag holds any more. Servers that refuse to serve an
    /// unadvertised commit make this fail; the caller then reports the
    /// commit as gone.
    pub async fn fetch_commit(
        &self,
        url: &str,
        creds: &RepoCredentials,
        commit: &str,
    ) -> Result<(), MirrorError> {
        check_commit(commit)?;
        let repository = Repository::parse(url)?;
        let Repository::Remote(remote) = &repository else {
            return Ok(());
        };
        let (dir, _fetching) = self.lock_mirror(remote).await?;
        let args = vec![
            "--quiet".into(),
            "--no-tags".into(),
            "--no-write-fetch-head".into(),
            "--".into(),
            remote.as_str().into(),
            commit.into(),
        ];
        self.remote_git(url, &repository, creds, RemoteOp::Fetch, Some(&dir), args)
            .await
            .map(|_| ())
    }

    /// `remote`'s mirror directory (made on first use), with its fetch
    /// lock held until the guard is dropped.
    async fn lock_mirror(
        &self,
        remote: &RemoteUrl,
    ) -> Result<(PathBuf, tokio::sync::OwnedMutexGuard<()>), MirrorError> {
        let dir = self.mirror_dir(remote);
        let fetching = self.lock_for(&dir).lock_owned().await;
        if !dir.join("HEAD").exists() {
            self.init_mirror(&dir, remote).await?;
        }
        Ok((dir, fetching))
    }

    /// One git call that reads a remote (`git OP ARGS…`): `creds` handed
    /// over through [`Mirrors::auth_env`] for this call only (a key file
    /// is removed when it returns or is cancelled), its output masked, a
    /// failure reported as [`MirrorError::Unreachable`].
    async fn remote_git(
        &self,
        url: &str,
        repository: &Repository,
        creds: &RepoCredentials,
        op: RemoteOp,
        dir: Option<&Path>,
        args: Vec<OsString>,
    ) -> Result<Vec<u8>, MirrorError> {
        let auth = self.auth_env(repository, creds).await?;
        let (operation, timeout) = match op {
            RemoteOp::LsRemote => ("ls-remote", LS_REMOTE_TIMEOUT),
            RemoteOp::Fetch => ("fetch", FETCH_TIMEOUT),
        };
        let call = GitCall {
            repository: url,
            operation,
            dir,
            args: std::iter::once(operation.into()).chain(args).collect(),
            env: auth.env.clone(),
            timeout,
            masker: creds.masker(),
            remote: true,
        };
        let out = call.run().await;
        drop(auth);
        out
    }

    async fn init_mirror(&self, dir: &Path, remote: &RemoteUrl) -> Result<(), MirrorError> {
        let root = &self.inner.root;
        create_private_dir(root).await?;
        // Made beside its final name and renamed, so a half-made mirror is
        // never mistaken for one.
        let tmp = root.join(format!(".init-{}", uuid::Uuid::now_v7()));
        let init = async {
            local_git(
                remote.as_str(),
                "init",
                None,
                &[
                    "init".into(),
                    "--bare".into(),
                    "--quiet".into(),
                    tmp.clone().into_os_string(),
                ],
            )
            .await?;
            for (key, value) in [
                ("core.logAllRefUpdates", "always"),
                ("gantry.repository", remote.normalised().as_str()),
            ] {
                local_git(
                    remote.as_str(),
                    "config",
                    Some(&tmp),
                    &["config".into(), key.into(), value.into()],
                )
                .await?;
            }
            tokio::fs::rename(&tmp, dir)
                .await
                .map_err(|e| MirrorError::io(dir, e))
        };
        let result = init.await;
        if result.is_err() {
            let _ = tokio::fs::remove_dir_all(&tmp).await;
            // Another process may have made it meanwhile.
            if dir.join("HEAD").exists() {
                return Ok(());
            }
        }
        result
    }

    /// Whether `repo` holds `commit` (as a commit).
    pub async fn has_commit(&self, repo: &Path, commit: &str) -> bool {
        if check_commit(commit).is_err() {
            return false;
        }
        local_git(
            &repo.display().to_string(),
            "cat-file",
            Some(repo),
            &[
                "cat-file".into(),
                "-e".into(),
                format!("{commit}^{{commit}}").into(),
            ],
        )
        .await
        .is_ok()
    }

    /// Checks that `commit` is a commit id that `repo` holds; returns the
    /// repository's name for errors.
    async fn existing_commit(&self, repo: &Path, commit: &str) -> Result<String, MirrorError> {
        check_commit(commit)?;
        let name = repo.display().to_string();
        if !self.has_commit(repo, commit).await {
            return Err(MirrorError::CommitNotFound {
                repository: name,
                commit: commit.to_string(),
            });
        }
        Ok(name)
    }

    /// The full id of `commit` (which may be abbreviated) in `repo`.
    pub async fn full_commit(&self, repo: &Path, commit: &str) -> Result<String, MirrorError> {
        check_commit(commit)?;
        let name = repo.display().to_string();
        rev_parse_commit(&name, repo, &format!("{commit}^{{commit}}"))
            .await
            .map_err(|_| MirrorError::CommitNotFound {
                repository: name,
                commit: commit.to_string(),
            })
    }

    /// The commit `branch` points to in `repo`.
    pub async fn branch_head(&self, repo: &Path, branch: &str) -> Result<String, MirrorError> {
        let name = repo.display().to_string();
        if branch.is_empty()
            || branch.starts_with('-')
            || branch.contains("..")
            || branch.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(MirrorError::BranchNotFound {
                repository: name,
                branch: branch.to_string(),
            });
        }
        rev_parse_commit(&name, repo, &format!("refs/heads/{branch}^{{commit}}"))
            .await
            .map_err(|_| MirrorError::BranchNotFound {
                repository: name,
                branch: branch.to_string(),
            })
    }

    /// The files that differ between `before` and `after`, as paths from
    /// the repository's root. A zero `before` (a new branch) gives the files
    /// `after` itself changed (against its first parent; every file of a
    /// root commit).
    pub async fn changed_files(
        &self,
        repo: &Path,
        before: &str,
        after: &str,
    ) -> Result<Vec<String>, MirrorError> {
        check_commit(after)?;
        let name = repo.display().to_string();
        for commit in [before, after] {
            if !is_zero_commit(commit) && !self.has_commit(repo, commit).await {
                check_commit(commit)?;
                return Err(MirrorError::CommitNotFound {
                    repository: name,
                    commit: commit.to_string(),
                });
            }
        }
        let mut args: Vec<OsString> = vec![
            "diff-tree".into(),
            "-r".into(),
            "-z".into(),
            "--name-only".into(),
            "--no-commit-id".into(),
            "--no-renames".into(),
        ];
        if is_zero_commit(before) {
            args.extend(["--root".into(), "-m".into(), "--first-parent".into()]);
        } else {
            args.push(before.into());
        }
        args.push(after.into());
        let out = local_git(&name, "diff-tree", Some(repo), &args).await?;
        let mut files: Vec<String> = out
            .split(|b| *b == 0)
            .filter(|f| !f.is_empty())
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect();
        files.sort();
        files.dedup();
        Ok(files)
    }

    /// A commit's id, message and author.
    pub async fn commit_info(&self, repo: &Path, commit: &str) -> Result<CommitInfo, MirrorError> {
        let name = self.existing_commit(repo, commit).await?;
        let out = local_git(
            &name,
            "log",
            Some(repo),
            &[
                "log".into(),
                "-1".into(),
                "--no-show-signature".into(),
                "--format=%H%x00%an%x00%ae%x00%aI%x00%B".into(),
                format!("{commit}^{{commit}}").into(),
                "--".into(),
            ],
        )
        .await?;
        let text = String::from_utf8_lossy(&out);
        let mut fields = text.splitn(5, '\0');
        let mut next = || fields.next().unwrap_or_default().to_string();
        Ok(CommitInfo {
            id: next(),
            author_name: next(),
            author_email: next(),
            author_date: next(),
            message: next().trim_end().to_string(),
        })
    }

    /// Writes the files of `commit` into `dest` (created if missing):
    /// `git archive` of the commit, so exactly what was committed.
    pub async fn archive(&self, repo: &Path, commit: &str, dest: &Path) -> Result<(), MirrorError> {
        let name = self.existing_commit(repo, commit).await?;
        tokio::fs::create_dir_all(dest)
            .await
            .map_err(|e| MirrorError::io(dest, e))?;
        let mut git = git_command();
        git.arg("-C")
            .arg(repo)
            .args(["archive", "--format=tar"])
            .arg(format!("{commit}^{{commit}}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut git = git.spawn().map_err(MirrorError::Spawn)?;
        let group = ProcessGroup::of(&git);
        let stdout: Stdio = git
            .stdout
            .take()
            .ok_or_else(|| MirrorError::Spawn(std::io::Error::other("git archive has no output")))?
            .try_into()
            .map_err(MirrorError::Spawn)?;
        let mut tar = Command::new("tar");
        tar.env_clear()
            .envs(gantry_build::passed_host_env())
            .args(["-x", "--no-same-owner", "-C"])
            .arg(dest)
            .stdin(stdout)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(pgid) = group.pgid() {
            tar.process_group(pgid);
        }
        let mut tar = tar.spawn().map_err(MirrorError::Spawn)?;
        let (git_stderr, tar_stderr) = (git.stderr.take(), tar.stderr.take());
        let both = async {
            tokio::join!(
                read_bounded(git_stderr, STDERR_LIMIT),
                read_bounded(tar_stderr, STDERR_LIMIT),
                tar.wait(),
                git.wait(),
            )
        };
        let (git_err, tar_err, tar_status, git_status) =
            match tokio::time::timeout(ARCHIVE_TIMEOUT, both).await {
                Ok(done) => done,
                Err(_) => {
                    group.kill();
                    return Err(MirrorError::TimedOut {
                        repository: name,
                        operation: "archive",
                        seconds: ARCHIVE_TIMEOUT.as_secs(),
                    });
                }
            };
        group.disarm();
        let git_status = git_status.map_err(MirrorError::Spawn)?;
        let tar_status = tar_status.map_err(MirrorError::Spawn)?;
        if !git_status.success() {
            return Err(MirrorError::Git {
                repository: name,
                operation: "archive",
                detail: tail(&String::from_utf8_lossy(&git_err.0)),
            });
        }
        if !tar_status.success() {
            return Err(MirrorError::Git {
                repository: name,
                operation: "archive",
                detail: format!("tar failed: {}", tail(&String::from_utf8_lossy(&tar_err.0))),
            });
        }
        Ok(())
    }

    /// The variables that hand `creds` to git for one call, and the key
    /// file they name (removed when the returned value is dropped).
    async fn auth_env(
        &self,
        repository: &Repository,
        creds: &RepoCredentials,
    ) -> Result<AuthEnv, MirrorError> {
        let mut auth = AuthEnv::default();
        let mut config = Vec::new();
        let remote = match repository {
            Repository::Remote(remote) => Some(remote),
            Repository::Local(_) => None,
        };
        if let Some(remote) = remote
            && let (Some(base), Some(header)) = (remote.http_base(), creds.basic_auth())
        {
            // Scoped to the repository's host, and no redirect followed at
            // all (git follows the first by default): wherever a redirect
            // points, the credentials do not go.
            config.push((
                format!("http.{base}.extraHeader"),
                format!("Authorization: {header}"),
            ));
            config.push(("http.followRedirects".into(), "false".into()));
        }
        if let Some(remote) = remote
            && remote.is_ssh()
        {
            let mut ssh = String::from("ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new");
            create_private_dir(&self.inner.root).await?;
            let known_hosts = self.inner.root.join("known_hosts");
            ssh.push_str(" -o ");
            ssh.push_str(&shell_quote(&format!(
                "UserKnownHostsFile=\"{}\" ~/.ssh/known_hosts",
                known_hosts.display()
            )));
            if let Some(key) = &creds.ssh_key {
                let keys = self.inner.root.join(".keys");
                create_private_dir(&keys).await?;
                sweep_stale_keys(&keys).await;
                let file = keys.join(format!("{}.key", uuid::Uuid::now_v7()));
                let mut text = key.expose().to_string();
                if !text.ends_with('\n') {
                    text.push('\n');
                }
                let path = file.clone();
                tokio::task::spawn_blocking(move || crate::write_private(&path, text.as_bytes()))
                    .await
                    .map_err(|e| MirrorError::io(&file, std::io::Error::other(e)))?
                    .map_err(|e| MirrorError::io(&file, std::io::Error::other(e.to_string())))?;
                auth.key_file = Some(file.clone());
                ssh.push_str(" -o IdentitiesOnly=yes -o IdentityAgent=none -i ");
                ssh.push_str(&shell_quote(&file.display().to_string()));
            }
            auth.env.push(("GIT_SSH_COMMAND".into(), ssh));
        }
        // After the settings every call gets (see [`base_config`]).
        auth.env.extend(config_env(&config));
        Ok(auth)
    }
}

/// The environment one git call gets for its credentials.
#[derive(Default)]
struct AuthEnv {
    /// `GIT_SSH_COMMAND` and `GIT_CONFIG_COUNT`/`KEY_n`/`VALUE_n` (values
    /// may be secret).
    env: Vec<(String, String)>,
    /// A private key written for this call.
    key_file: Option<PathBuf>,
}

impl Drop for AuthEnv {
    fn drop(&mut self) {
        if let Some(file) = self.key_file.take() {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// Settings of every git call: no credential helper, no askpass program
/// (so a missing credential fails instead of waiting for a person).
fn base_config() -> Vec<(String, String)> {
    vec![
        ("credential.helper".into(), String::new()),
        ("core.askPass".into(), String::new()),
        // A remote that stalls below 1 KB/s for a minute is given up.
        ("http.lowSpeedLimit".into(), "1000".into()),
        ("http.lowSpeedTime".into(), "60".into()),
    ]
}

/// `GIT_CONFIG_COUNT` and its keys and values: the base settings and
/// `extra` (secrets go through the environment, never the command line).
fn config_env(extra: &[(String, String)]) -> Vec<(String, String)> {
    let all: Vec<(String, String)> = base_config()
        .into_iter()
        .chain(extra.iter().cloned())
        .collect();
    let mut env = vec![("GIT_CONFIG_COUNT".to_string(), all.len().to_string())];
    for (i, (key, value)) in all.into_iter().enumerate() {
        env.push((format!("GIT_CONFIG_KEY_{i}"), key));
        env.push((format!("GIT_CONFIG_VALUE_{i}"), value));
    }
    env
}

/// `text` as one word of a POSIX shell (`GIT_SSH_COMMAND` is read by one).
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Removes the key files a process left in `keys` when it died during a
/// call (a crash, a kill, a power cut: [`AuthEnv`]'s drop never ran), once
/// per process and directory, before this process writes its first key
/// there.
async fn sweep_stale_keys(keys: &Path) {
    type Swept = std::sync::Mutex<std::collections::HashSet<PathBuf>>;
    static SWEPT: std::sync::LazyLock<Swept> = std::sync::LazyLock::new(Default::default);
    let keys = keys.to_path_buf();
    let _ = tokio::task::spawn_blocking(move || {
        // Held while sweeping: no call of this process writes a key before
        // the sweep is over.
        let mut swept = SWEPT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !swept.insert(keys.clone()) {
            return;
        }
        let Ok(entries) = std::fs::read_dir(&keys) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("key" | "tmp")
            ) {
                let _ = std::fs::remove_file(path);
            }
        }
    })
    .await;
}

async fn create_private_dir(dir: &Path) -> Result<(), MirrorError> {
    let path = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&path)
    })
    .await
    .map_err(|e| MirrorError::io(dir, std::io::Error::other(e)))?
    .map_err(|e| MirrorError::io(dir, e))
}

/// Checks that a local path is a git repository (a checkout or bare).
async fn check_local(path: &Path, url: &str) -> Result<(), MirrorError> {
    if !path.exists() {
        return Err(MirrorError::InvalidRepository {
            repository: url.to_string(),
            reason: "it does not exist".to_string(),
        });
    }
    local_git(
        url,
        "rev-parse",
        Some(path),
        &["rev-parse".into(), "--git-dir".into()],
    )
    .await
    .map(|_| ())
    .map_err(|_| MirrorError::InvalidRepository {
        repository: url.to_string(),
        reason: "it is not a git repository".to_string(),
    })
}

/// `ls-remote` output as `(ref, commit)`, peeled tags replacing their tag
/// objects, sorted by ref.
fn parse_ls_remote(text: &str) -> Vec<(String, String)> {
    let mut refs: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
    let mut peeled: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let Some((commit, name)) = line.split_once('\t') else {
            continue;
        };
        if !name.starts_with("refs/heads/") && !name.starts_with("refs/tags/") {
            continue;
        }
        match name.strip_suffix("^{}") {
            Some(tag) => peeled.push((tag.to_string(), commit.to_string())),
            None => {
                refs.insert(name.to_string(), commit.to_string());
            }
        }
    }
    for (name, commit) in peeled {
        refs.insert(name, commit);
    }
    refs.into_iter().collect()
}

/// `git` from a cleared environment (plus the variables every child of
/// gantry's may see), prompts off, only the allowed transports.
fn git_command() -> Command {
    let mut command = Command::new("git");
    command
        .env_clear()
        .envs(gantry_build::passed_host_env())
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GCM_INTERACTIVE", "never")
        .env("GIT_ALLOW_PROTOCOL", ALLOWED_PROTOCOLS);
    command
}

/// A git call that reads a repository on this machine.
async fn local_git(
    repository: &str,
    operation: &'static str,
    dir: Option<&Path>,
    args: &[OsString],
) -> Result<Vec<u8>, MirrorError> {
    GitCall {
        repository,
        operation,
        dir,
        args: args.to_vec(),
        env: config_env(&[]),
        timeout: LOCAL_TIMEOUT,
        masker: Masker::default(),
        remote: false,
    }
    .run()
    .await
}

/// The commit id `rev` names in `repo` (`git rev-parse --verify`).
async fn rev_parse_commit(repository: &str, repo: &Path, rev: &str) -> Result<String, MirrorError> {
    let out = local_git(
        repository,
        "rev-parse",
        Some(repo),
        &[
            "rev-parse".into(),
            "--verify".into(),
            "--quiet".into(),
            rev.into(),
        ],
    )
    .await?;
    Ok(String::from_utf8_lossy(&out).trim().to_string())
}

/// The remote operations of git, each with its time limit.
#[derive(Debug, Clone, Copy)]
enum RemoteOp {
    LsRemote,
    Fetch,
}

/// One run of git, bounded in time and output.
struct GitCall<'a> {
    /// For errors: the repository as written.
    repository: &'a str,
    operation: &'static str,
    dir: Option<&'a Path>,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    timeout: Duration,
    /// Hides the credentials in what git printed.
    masker: Masker,
    /// A failure means the remote could not be read ([`MirrorError::Unreachable`]).
    remote: bool,
}

impl GitCall<'_> {
    async fn run(self) -> Result<Vec<u8>, MirrorError> {
        let mut command = git_command();
        if let Some(dir) = self.dir {
            command.arg("-C").arg(dir);
        }
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(MirrorError::Spawn)?;
        // Declared after the child, so dropped before it: the group dies
        // while its leader is not yet reaped.
        let group = ProcessGroup::of(&child);
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let work = async {
            let (out, err, status) = tokio::join!(
                read_bounded(stdout, STDOUT_LIMIT),
                read_bounded(stderr, STDERR_LIMIT),
                child.wait()
            );
            (out, err, status)
        };
        let ((out, out_cut), (err, _), status) =
            match tokio::time::timeout(self.timeout, work).await {
                Ok(done) => done,
                Err(_) => {
                    group.kill();
                    return Err(MirrorError::TimedOut {
                        repository: self.repository.to_string(),
                        operation: self.operation,
                        seconds: self.timeout.as_secs(),
                    });
                }
            };
        group.disarm();
        let status = status.map_err(MirrorError::Spawn)?;
        if out_cut {
            return Err(MirrorError::OutputTooLarge {
                repository: self.repository.to_string(),
                operation: self.operation,
                limit: STDOUT_LIMIT,
            });
        }
        if !status.success() {
            let detail = tail(&self.masker.mask(&String::from_utf8_lossy(&err)));
            let detail = if detail.is_empty() {
                format!("git exited with {status}")
            } else {
                detail
            };
            let repository = self.repository.to_string();
            let operation = self.operation;
            return Err(if self.remote {
                MirrorError::Unreachable {
                    repository,
                    operation,
                    detail,
                }
            } else {
                MirrorError::Git {
                    repository,
                    operation,
                    detail,
                }
            });
        }
        Ok(out)
    }
}

/// Reads at most `limit` bytes, then drains the rest (so the writer never
/// blocks); says whether anything was cut.
async fn read_bounded<R: AsyncRead + Unpin>(reader: Option<R>, limit: usize) -> (Vec<u8>, bool) {
    let Some(mut reader) = reader else {
        return (Vec::new(), false);
    };
    let mut kept = Vec::new();
    let mut cut = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = limit.saturating_sub(kept.len());
                if n > room {
                    cut = true;
                }
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    (kept, cut)
}

/// The last lines of git's error output, trimmed, for an error message.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(10);
    lines[start..].join("; ").trim().to_string()
}

/// The process group of a git call (git and its helpers: ssh,
/// `git-remote-https`, `index-pack`), killed unless disarmed once git has
/// ended: on timeout and when the call is dropped (a cancelled action).
struct ProcessGroup(std::cell::Cell<Option<i32>>);

impl ProcessGroup {
    fn of(child: &tokio::process::Child) -> ProcessGroup {
        ProcessGroup(std::cell::Cell::new(
            child.id().and_then(|id| i32::try_from(id).ok()),
        ))
    }

    fn pgid(&self) -> Option<i32> {
        self.0.get()
    }

    fn kill(&self) {
        if let Some(pgid) = self.0.take() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    fn disarm(&self) {
        self.0.set(None);
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(text: &str) -> RemoteUrl {
        match Repository::parse(text).unwrap() {
            Repository::Remote(r) => r,
            Repository::Local(p) => panic!("{text} read as the path {}", p.display()),
        }
    }

    #[test]
    fn repository_forms_are_told_apart() {
        assert_eq!(
            Repository::parse("/srv/git/shop.git").unwrap(),
            Repository::Local("/srv/git/shop.git".into())
        );
        for url in [
            "file:///srv/git/shop.git",
            "git://127.0.0.1:9418/shop.git",
            "https://github.com/acme/shop.git",
            "ssh://git@github.com/acme/shop.git",
            "git@github.com:acme/shop.git",
            "github.com:acme/shop",
        ] {
            remote(url);
            assert!(Repository::is_url(url), "{url}");
        }
        assert!(!Repository::is_url("."));
        assert!(!Repository::is_url("../shop"));
        assert!(!Repository::is_url("/srv/a:b"));
        assert!(Repository::parse("relative/path").is_err());
        assert!(Repository::parse("-oProxyCommand=x").is_err());
        assert!(Repository::parse("ext::sh -c x").is_err());
        assert!(Repository::parse("ssh://-oProxyCommand=x/a").is_err());
        assert!(matches!(
            Repository::parse("https://alice:hunter2@github.com/acme/shop.git"),
            Err(MirrorError::CredentialsInUrl { .. })
        ));
        assert!(matches!(
            Repository::parse("https://ghp_secret@github.com/acme/shop.git"),
            Err(MirrorError::CredentialsInUrl { .. })
        ));
    }

    #[test]
    fn one_repository_has_one_normalised_url() {
        assert_eq!(
            remote("HTTPS://GitHub.com/acme/shop.git/").normalised(),
            remote("https://github.com/acme/shop").normalised()
        );
        assert_ne!(
            remote("https://github.com/acme/shop").normalised(),
            remote("https://github.com/acme/shop2").normalised()
        );
        let dir = tempfile::tempdir().unwrap();
        let mirrors = Mirrors::new(dir.path());
        let a = mirrors
            .location("https://github.com/acme/shop.git")
            .unwrap();
        let b = mirrors.location("https://GITHUB.com/acme/shop").unwrap();
        assert_eq!(a, b);
        assert!(a.starts_with(dir.path().join("mirrors")));
    }

    #[test]
    fn credentials_are_looked_up_most_specific_first() {
        assert_eq!(
            remote("https://github.com/acme/shop.git").credential_prefixes(),
            [
                "/gantry/repositories/github.com/acme/shop",
                "/gantry/repositories/github.com/acme",
                "/gantry/repositories/github.com",
            ]
        );
        assert_eq!(
            remote("ssh://git@git.example.com:2222/~alice/my repo.git").credential_prefixes()[0],
            "/gantry/repositories/git.example.com_2222/alice/my_repo"
        );
        assert!(
            remote("file:///srv/shop.git")
                .credential_prefixes()
                .is_empty()
        );
    }

    #[test]
    fn commit_urls_are_given_for_known_forges_only() {
        let c = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            remote("https://github.com/acme/shop.git").commit_url(c),
            Some(format!("https://github.com/acme/shop/commit/{c}"))
        );
        assert_eq!(
            remote("git@gitlab.com:acme/shop.git").commit_url(c),
            Some(format!("https://gitlab.com/acme/shop/-/commit/{c}"))
        );
        assert_eq!(
            remote("https://gitea.example.com:3000/acme/shop").commit_url(c),
            Some(format!(
                "https://gitea.example.com:3000/acme/shop/commit/{c}"
            ))
        );
        assert_eq!(remote("https://git.example.com/shop").commit_url(c), None);
        assert_eq!(remote("git://127.0.0.1/shop").commit_url(c), None);
    }

    #[test]
    fn commit_ids_are_checked_before_git_sees_them() {
        assert!(check_commit("abcd").is_ok());
        assert!(check_commit(&"a".repeat(64)).is_ok());
        for bad in ["", "abc", "--output=x", "HEAD", "ABCD", &"a".repeat(65)] {
            assert!(check_commit(bad).is_err(), "{bad}");
        }
        assert!(is_zero_commit(&"0".repeat(40)));
        assert!(!is_zero_commit(""));
    }

    #[test]
    fn ls_remote_output_gives_peeled_tags() {
        let text = "aaaa\tHEAD\nbbbb\trefs/heads/main\ncccc\trefs/tags/v1\ndddd\trefs/tags/v1^{}\neeee\trefs/tags/v2\nffff\trefs/pull/1/head\n";
        assert_eq!(
            parse_ls_remote(text),
            [
                ("refs/heads/main".to_string(), "bbbb".to_string()),
                ("refs/tags/v1".to_string(), "dddd".to_string()),
                ("refs/tags/v2".to_string(), "eeee".to_string()),
            ]
        );
    }

    #[test]
    fn shell_quoting_survives_quotes_and_spaces() {
        assert_eq!(shell_quote("/a b/it's"), r"'/a b/it'\''s'");
    }

    #[test]
    fn credentials_debug_shows_no_value() {
        let creds = RepoCredentials::token("ghp_very_secret", None);
        let text = format!("{creds:?}");
        assert!(!text.contains("ghp_very_secret"));
        assert!(creds.basic_auth().unwrap().starts_with("Basic "));
        let masked = creds.masker().mask("fatal: token ghp_very_secret refused");
        assert!(!masked.contains("ghp_very_secret"));
    }
}
