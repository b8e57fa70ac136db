//! Listing a remote's branches and tags without starting git: `ls-refs` of
//! git's wire protocol version 2, spoken by gantry itself over `git://`
//! (a TCP connection to `git daemon`) and smart HTTP(S).
//!
//! A poll of a hundred remote repositories every 10 s would otherwise cost
//! a thousand `git ls-remote` processes a minute; here each is one request
//! (two over HTTP). It is only a shortcut: anything unexpected (a server
//! speaking only protocol version 0 over HTTP, a redirect, a refusal, an
//! answer that does not parse, a time-out) gives `None`, and the caller
//! runs `git ls-remote`, whose answer and errors are the reference. So a
//! failure here never reaches the user, and the errors they see are git's.
//!
//! The exchange (gitprotocol-v2, gitprotocol-pack, gitprotocol-http): a
//! request of pkt-lines (4 hexadecimal digits of length, the 4 included;
//! `0000` flush, `0001` delimiter), `command=ls-refs`, a delimiter, the
//! arguments `peel`, `ref-prefix refs/heads/`, `ref-prefix refs/tags/`,
//! a flush; the answer is one pkt-line per ref, `OID NAME[ peeled:OID]`,
//! then a flush. `git daemon` answers the first request with the protocol
//! version 2 capabilities when it is asked for version 2 (`version=2` after
//! the host), and a version 0 server with its refs at once, which are read
//! as they are (`OID NAME` lines, a tag's peeled commit as `NAME^{}`).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{RemoteUrl, Scheme};

/// How long the whole listing may take before git is asked instead.
const LIMIT: Duration = Duration::from_secs(10);

/// The most an answer may hold (a repository with a hundred thousand refs
/// fits).
const ANSWER_LIMIT: usize = 16 * 1024 * 1024;

/// The refs under `refs/heads/` and `refs/tags/`, a tag as the commit it
/// points at, sorted by name; `None` when the remote could not be listed
/// this way (git is asked then). `authorization` is the `Authorization`
/// header of an HTTP(S) remote.
pub(super) async fn list(
    remote: &RemoteUrl,
    authorization: Option<&str>,
) -> Option<Vec<(String, String)>> {
    let listing = async {
        match remote.scheme {
            Scheme::Git => over_git(remote).await,
            Scheme::Http | Scheme::Https => over_http(remote, authorization).await,
            _ => None,
        }
    };
    tokio::time::timeout(LIMIT, listing).await.ok().flatten()
}

/// The `ls-refs` command, ended by a flush.
fn ls_refs_request() -> Vec<u8> {
    let mut request = Vec::new();
    pkt(&mut request, b"command=ls-refs\n");
    pkt(
        &mut request,
        concat!("agent=gantry/", env!("CARGO_PKG_VERSION"), "\n").as_bytes(),
    );
    request.extend_from_slice(b"0001");
    pkt(&mut request, b"peel\n");
    pkt(&mut request, b"ref-prefix refs/heads/\n");
    pkt(&mut request, b"ref-prefix refs/tags/\n");
    request.extend_from_slice(b"0000");
    request
}

async fn over_git(remote: &RemoteUrl) -> Option<Vec<(String, String)>> {
    let port = remote.port.unwrap_or(9418);
    let host = if remote.port.is_some() {
        format!("{}:{port}", remote.host)
    } else {
        remote.host.clone()
    };
    let mut stream = tokio::net::TcpStream::connect((remote.host.as_str(), port))
        .await
        .ok()?;
    let mut first = Vec::new();
    pkt(
        &mut first,
        format!(
            "git-upload-pack /{}\0host={host}\0\0version=2\0",
            remote.path
        )
        .as_bytes(),
    );
    stream.write_all(&first).await.ok()?;
    let mut reader = PktReader::new(&mut stream);
    let advertised = reader.section().await?;
    if advertised.first().map(Vec::as_slice) != Some(b"version 2\n") {
        // Protocol version 0: the refs are the advertisement.
        let _ = stream.write_all(b"0000").await;
        return parse_v0(&advertised);
    }
    if !advertised.iter().any(|line| line.starts_with(b"ls-refs")) {
        return None;
    }
    let mut request = ls_refs_request();
    // An empty request after it ends the session.
    request.extend_from_slice(b"0000");
    stream.write_all(&request).await.ok()?;
    let mut reader = PktReader::new(&mut stream);
    parse_v2(&reader.section().await?)
}

async fn over_http(
    remote: &RemoteUrl,
    authorization: Option<&str>,
) -> Option<Vec<(String, String)>> {
    let base = remote.url.trim_end_matches('/');
    let client = client()?;
    let with_auth = |request: reqwest::RequestBuilder| match authorization {
        Some(value) => request.header(reqwest::header::AUTHORIZATION, value),
        None => request,
    };
    let advertised = with_auth(
        client
            .get(format!("{base}/info/refs?service=git-upload-pack"))
            .header("Git-Protocol", "version=2"),
    )
    .send()
    .await
    .ok()?;
    let smart = advertised.status() == reqwest::StatusCode::OK
        && content_type(&advertised) == Some("application/x-git-upload-pack-advertisement");
    if !smart {
        return None;
    }
    let body = bounded_body(advertised).await?;
    let mut lines = parse_pkts(&body)?.into_iter().peekable();
    // `# service=git-upload-pack` and a flush come first, except in
    // git's own version 2 answers; then the advertisement.
    if lines
        .peek()?
        .as_deref()
        .is_some_and(|l| l.starts_with(b"# service="))
    {
        let service = lines.next()?;
        if service.as_deref() != Some(b"# service=git-upload-pack\n".as_slice())
            || lines.next()?.is_some()
        {
            return None;
        }
    }
    let advertised: Vec<Vec<u8>> = lines.map_while(|line| line).collect();
    if advertised.first().map(Vec::as_slice) != Some(b"version 2\n") {
        return parse_v0(&advertised);
    }
    if !advertised.iter().any(|line| line.starts_with(b"ls-refs")) {
        return None;
    }
    let answer = with_auth(
        client
            .post(format!("{base}/git-upload-pack"))
            .header("Git-Protocol", "version=2")
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-git-upload-pack-request",
            )
            .header(
                reqwest::header::ACCEPT,
                "application/x-git-upload-pack-result",
            )
            .body(ls_refs_request()),
    )
    .send()
    .await
    .ok()?;
    if answer.status() != reqwest::StatusCode::OK {
        return None;
    }
    let body = bounded_body(answer).await?;
    let refs: Vec<Vec<u8>> = parse_pkts(&body)?
        .into_iter()
        .map_while(|line| line)
        .collect();
    parse_v2(&refs)
}

/// One client for every listing: no redirects (git's answer is the
/// reference for where a repository moved), no cookies, no referer.
fn client() -> Option<&'static reqwest::Client> {
    static CLIENT: std::sync::OnceLock<Option<reqwest::Client>> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(LIMIT)
                .timeout(LIMIT)
                .redirect(reqwest::redirect::Policy::none())
                .referer(false)
                .user_agent(concat!("gantry/", env!("CARGO_PKG_VERSION")))
                .build()
                .ok()
        })
        .as_ref()
}

fn content_type(response: &reqwest::Response) -> Option<&str> {
    let value = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)?
        .to_str()
        .ok()?;
    Some(value.split(';').next().unwrap_or(value).trim())
}

async fn bounded_body(mut response: reqwest::Response) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.ok()? {
        if body.len() + chunk.len() > ANSWER_LIMIT {
            return None;
        }
        body.extend_from_slice(&chunk);
    }
    Some(body)
}

/// Appends one pkt-line holding `data`.
fn pkt(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(format!("{:04x}", data.len() + 4).as_bytes());
    out.extend_from_slice(data);
}

/// Splits a whole answer into pkt-lines: `Some(data)`, or `None` for a
/// flush, delimiter or response-end packet. `None` when it does not parse.
fn parse_pkts(mut bytes: &[u8]) -> Option<Vec<Option<Vec<u8>>>> {
    let mut lines = Vec::new();
    while !bytes.is_empty() {
        let length = packet_length(bytes.get(..4)?)?;
        if length < 4 {
            lines.push(None);
            bytes = &bytes[4..];
            continue;
        }
        lines.push(Some(bytes.get(4..length)?.to_vec()));
        bytes = &bytes[length..];
    }
    Some(lines)
}

/// A pkt-line's length prefix: 0 to 2 for the special packets, else at
/// least 4 (the prefix itself) and at most 65520.
fn packet_length(prefix: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(prefix).ok()?;
    let length = usize::from_str_radix(text, 16).ok()?;
    match length {
        0..=2 => Some(length),
        4..=65520 => Some(length),
        _ => None,
    }
}

/// Reads pkt-lines from a stream, a section (up to a flush) at a time,
/// within [`ANSWER_LIMIT`].
struct PktReader<'a, R> {
    stream: &'a mut R,
    read: usize,
}

impl<'a, R: tokio::io::AsyncRead + Unpin> PktReader<'a, R> {
    fn new(stream: &'a mut R) -> Self {
        PktReader { stream, read: 0 }
    }

    /// The data lines up to the next flush.
    async fn section(&mut self) -> Option<Vec<Vec<u8>>> {
        let mut lines = Vec::new();
        loop {
            let mut prefix = [0u8; 4];
            self.stream.read_exact(&mut prefix).await.ok()?;
            let length = packet_length(&prefix)?;
            if length < 4 {
                return Some(lines);
            }
            self.read += length;
            if self.read > ANSWER_LIMIT {
                return None;
            }
            let mut data = vec![0u8; length - 4];
            self.stream.read_exact(&mut data).await.ok()?;
            lines.push(data);
        }
    }
}

/// `ls-refs` lines: `OID NAME[ ATTRIBUTE…]`, with `peeled:OID` for a tag.
fn parse_v2(lines: &[Vec<u8>]) -> Option<Vec<(String, String)>> {
    let mut listed = Vec::new();
    for line in lines {
        let text = std::str::from_utf8(line).ok()?.trim_end_matches('\n');
        let mut parts = text.split(' ');
        let (oid, name) = (parts.next()?, parts.next()?);
        listed.push((oid, name.to_string()));
        if let Some(peeled) = parts.find_map(|p| p.strip_prefix("peeled:")) {
            listed.push((peeled, format!("{name}^{{}}")));
        }
    }
    as_ls_remote(listed)
}

/// A version 0 advertisement: `OID NAME` lines (the first with its
/// capabilities after a NUL), a tag's peeled commit as `NAME^{}`.
fn parse_v0(lines: &[Vec<u8>]) -> Option<Vec<(String, String)>> {
    let mut listed = Vec::new();
    for line in lines {
        let line = line.split(|b| *b == 0).next().unwrap_or(line);
        let text = std::str::from_utf8(line).ok()?.trim_end_matches('\n');
        let (oid, name) = text.split_once(' ')?;
        listed.push((oid, name.to_string()));
    }
    as_ls_remote(listed)
}

/// The refs as `git ls-remote` would have printed them, read by the same
/// parser ([`super::parse_ls_remote`]: branches and tags, a tag as its
/// peeled commit, sorted). What a server sent is checked first: an object
/// id is hexadecimal, a name has no space or control character, or the
/// whole answer is refused (and git is asked).
fn as_ls_remote(listed: Vec<(&str, String)>) -> Option<Vec<(String, String)>> {
    let mut text = String::new();
    for (oid, name) in listed {
        let oid_ok = oid.len() >= 40 && oid.bytes().all(|b| b.is_ascii_hexdigit());
        let name_ok =
            !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c.is_control());
        if !oid_ok || !name_ok {
            return None;
        }
        text.push_str(&format!("{oid}\t{name}\n"));
    }
    Some(super::parse_ls_remote(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "cccccccccccccccccccccccccccccccccccccccc";

    /// A bare repository under `dir` with `main`, a second branch and an
    /// annotated tag; returns (name, main's commit, the other branch's).
    fn repository(dir: &std::path::Path) -> (String, String, String) {
        use gantry_testkit::git;
        let work = dir.join("work");
        std::fs::create_dir_all(&work).unwrap();
        git(&work, &["init", "-q", "-b", "main"]);
        std::fs::write(work.join("a.txt"), "a\n").unwrap();
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", "first"]);
        let head = |work: &std::path::Path| {
            let out = std::process::Command::new("git")
                .arg("-C")
                .arg(work)
                .args(["rev-parse", "HEAD"])
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        };
        let main = head(&work);
        git(&work, &["tag", "-a", "v1", "-m", "release"]);
        git(&work, &["checkout", "-q", "-b", "feature"]);
        std::fs::write(work.join("b.txt"), "b\n").unwrap();
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", "second"]);
        let feature = head(&work);
        let bare = dir.join("app.git");
        git(
            dir,
            &[
                "clone",
                "-q",
                "--bare",
                work.to_str().unwrap(),
                bare.to_str().unwrap(),
            ],
        );
        ("app.git".to_string(), main, feature)
    }

    fn expected(main: &str, feature: &str) -> Vec<(String, String)> {
        vec![
            ("refs/heads/feature".to_string(), feature.to_string()),
            ("refs/heads/main".to_string(), main.to_string()),
            ("refs/tags/v1".to_string(), main.to_string()),
        ]
    }

    /// `git daemon` (real, protocol version 2) answers gantry's own
    /// `ls-refs`: the listing is gantry's, not a fallback to git.
    #[tokio::test]
    async fn a_git_daemon_is_listed_without_git() {
        let dir = tempfile::tempdir().unwrap();
        let (name, main, feature) = repository(dir.path());
        let port = gantry_testkit::free_port();
        let mut daemon = std::process::Command::new("git")
            .args([
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--listen=127.0.0.1",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", dir.path().display()))
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let ready =
            gantry_clock::blocking_poll(Duration::from_secs(20), Duration::from_millis(20), || {
                std::net::TcpStream::connect(("127.0.0.1", port)).ok()
            });
        assert!(ready.is_some(), "git daemon did not listen");
        let url = format!("git://127.0.0.1:{port}/{name}");
        let remote = match super::super::Repository::parse(&url).unwrap() {
            super::super::Repository::Remote(r) => r,
            other => panic!("{other:?}"),
        };
        let listed = list(&remote, None).await;
        let _ = daemon.kill();
        let _ = daemon.wait();
        assert_eq!(listed, Some(expected(&main, &feature)));
    }

    /// Smart HTTP: the real `git http-backend` behind a small CGI bridge,
    /// which records each request's user agent: both requests are
    /// gantry's, with `Git-Protocol: version=2`.
    #[tokio::test]
    async fn git_http_backend_is_listed_without_git() {
        let dir = tempfile::tempdir().unwrap();
        let (name, main, feature) = repository(dir.path());
        let root = dir.path().to_path_buf();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let record = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                cgi_bridge(stream, &root, &record);
            }
        });
        let url = format!("http://127.0.0.1:{port}/{name}");
        let remote = match super::super::Repository::parse(&url).unwrap() {
            super::super::Repository::Remote(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(list(&remote, None).await, Some(expected(&main, &feature)));
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2, "{seen:?}");
        for request in &seen {
            assert!(request.contains("user-agent: gantry/"), "{request}");
            assert!(request.contains("git-protocol: version=2"), "{request}");
        }
    }

    /// Serves one HTTP/1.1 request by running `git http-backend` as CGI.
    fn cgi_bridge(
        stream: std::net::TcpStream,
        root: &std::path::Path,
        seen: &std::sync::Mutex<Vec<String>>,
    ) {
        use std::io::{BufRead, Read, Write};
        let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            head.push_str(&line.to_ascii_lowercase());
        }
        let first = head.lines().next().unwrap_or("").to_string();
        let mut parts = first.split(' ');
        let method = parts.next().unwrap_or("").to_ascii_uppercase();
        let target = parts.next().unwrap_or("").to_string();
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                .map(|v| v.trim().to_string())
        };
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).unwrap();
        seen.lock().unwrap().push(head.clone());
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let mut cgi = std::process::Command::new("git")
            .arg("http-backend")
            .env_clear()
            .env("GIT_PROJECT_ROOT", root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("REQUEST_METHOD", &method)
            .env("PATH_INFO", path)
            .env("QUERY_STRING", query)
            .env("CONTENT_TYPE", header("content-type").unwrap_or_default())
            .env("CONTENT_LENGTH", length.to_string())
            .env("GIT_PROTOCOL", header("git-protocol").unwrap_or_default())
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        cgi.stdin.take().unwrap().write_all(&body).unwrap();
        let out = cgi.wait_with_output().unwrap();
        let split = out
            .stdout
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| (i, 4))
            .or_else(|| {
                out.stdout
                    .windows(2)
                    .position(|w| w == b"\n\n")
                    .map(|i| (i, 2))
            })
            .unwrap();
        let cgi_head = String::from_utf8_lossy(&out.stdout[..split.0]).to_string();
        let cgi_body = &out.stdout[split.0 + split.1..];
        let status = cgi_head
            .lines()
            .find_map(|l| l.strip_prefix("Status: "))
            .unwrap_or("200 OK")
            .to_string();
        let mut response = format!("HTTP/1.1 {status}\r\n");
        for line in cgi_head.lines().filter(|l| !l.starts_with("Status: ")) {
            response.push_str(line.trim_end());
            response.push_str("\r\n");
        }
        response.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            cgi_body.len()
        ));
        let mut stream = stream;
        let _ = stream.write_all(response.as_bytes());
        let _ = stream.write_all(cgi_body);
    }

    #[test]
    fn the_request_is_the_documented_pkt_lines() {
        let request = String::from_utf8(ls_refs_request()).unwrap();
        assert!(request.starts_with("0014command=ls-refs\n"), "{request}");
        assert!(request.ends_with(
            "00010009peel\n001bref-prefix refs/heads/\n001aref-prefix refs/tags/\n0000"
        ));
    }

    #[test]
    fn pkt_lines_split_and_bad_lengths_are_refused() {
        let lines = parse_pkts(b"000ahello\n00000001000bworld!\n").unwrap();
        assert_eq!(
            lines,
            [
                Some(b"hello\n".to_vec()),
                None,
                None,
                Some(b"world!\n".to_vec())
            ]
        );
        assert!(parse_pkts(b"0003").is_none(), "length 3 is no packet");
        assert!(parse_pkts(b"00zz").is_none());
        assert!(parse_pkts(b"0010short").is_none(), "cut short");
    }

    #[test]
    fn version_2_refs_take_a_tags_peeled_commit() {
        let lines = [
            format!("{A} HEAD symref-target:refs/heads/main\n"),
            format!("{A} refs/heads/main\n"),
            format!("{B} refs/tags/v1 peeled:{C}\n"),
            format!("{B} refs/tags/light\n"),
            format!("{C} refs/pull/1/head\n"),
        ]
        .map(String::into_bytes);
        assert_eq!(
            parse_v2(&lines).unwrap(),
            [
                ("refs/heads/main".to_string(), A.to_string()),
                ("refs/tags/light".to_string(), B.to_string()),
                ("refs/tags/v1".to_string(), C.to_string()),
            ]
        );
    }

    #[test]
    fn an_answer_with_a_bad_id_or_name_is_refused_whole() {
        let tab = [format!("{A} refs/heads/a\tb\n")].map(String::into_bytes);
        assert_eq!(parse_v0(&tab), None, "a tab would make another line");
        let short = [b"abc refs/heads/main\n".to_vec()];
        assert_eq!(parse_v2(&short), None);
    }

    #[test]
    fn version_0_refs_drop_capabilities_and_peel_tags() {
        let lines = [
            format!("{A} HEAD\0multi_ack side-band-64k\n"),
            format!("{A} refs/heads/main\n"),
            format!("{B} refs/tags/v1\n"),
            format!("{C} refs/tags/v1^{{}}\n"),
        ]
        .map(String::into_bytes);
        assert_eq!(
            parse_v0(&lines).unwrap(),
            [
                ("refs/heads/main".to_string(), A.to_string()),
                ("refs/tags/v1".to_string(), C.to_string()),
            ]
        );
    }
}
