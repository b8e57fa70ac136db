//! Console sessions: who a browser is, kept on the server.
//!
//! A session is created when someone pastes a gantry token on the sign-in
//! page (or follows a one-time sign-in link, which carries a token the
//! server holds for a few minutes). The browser gets only a random session
//! id in an HttpOnly, SameSite=Strict cookie; the server keeps the token in
//! memory and authenticates it again on every request, so a session has
//! exactly the grants of its token, and ends when the token is revoked or
//! expires. A session also ends after [`SessionLimits::idle`] without a
//! request, after [`SessionLimits::absolute`] in any case, and at sign-out.
//! Each session has its own CSRF token, which every form carries.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use gantry_auth::Secret;
use gantry_clock::Instant;

/// How long sessions and sign-in links live.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// A session without a request for this long ends.
    pub idle: Duration,
    /// A session ends this long after sign-in, however busy.
    pub absolute: Duration,
    /// A one-time sign-in link works this long.
    pub link: Duration,
    /// At most this many sessions live at once (the oldest goes first).
    pub max_sessions: usize,
}

impl Default for SessionLimits {
    fn default() -> SessionLimits {
        SessionLimits {
            idle: Duration::from_secs(60 * 60),
            absolute: Duration::from_secs(12 * 60 * 60),
            link: Duration::from_secs(5 * 60),
            max_sessions: 10_000,
        }
    }
}

/// A signed-in browser, as a request sees it.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    /// The token every form of this session must carry.
    pub csrf: String,
    pub(super) token: Secret,
}

struct Entry {
    session: Session,
    created: Instant,
    last_seen: Instant,
}

struct Link {
    token: Secret,
    expires: Instant,
}

/// The server's sessions and unused sign-in links, in memory: a restart
/// signs everyone out, which is what a restart of the control plane should do.
pub struct Sessions {
    limits: SessionLimits,
    sessions: Mutex<HashMap<String, Entry>>,
    links: Mutex<HashMap<String, Link>>,
}

/// 32 random bytes as hex.
pub(super) fn random_id() -> String {
    let mut bytes = [0u8; 32];
    // The OS's randomness failing is not something a browser can fix; an
    // id that is all zeros must never be handed out, so this panics.
    getrandom::fill(&mut bytes).expect("the OS's random number generator failed");
    hex::encode(bytes)
}

/// Compares two secrets in time independent of where they differ.
pub(super) fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Sessions {
    pub fn new(limits: SessionLimits) -> Sessions {
        Sessions {
            limits,
            sessions: Mutex::new(HashMap::new()),
            links: Mutex::new(HashMap::new()),
        }
    }

    pub fn limits(&self) -> SessionLimits {
        self.limits
    }

    /// A new session for `token` (already authenticated by the caller).
    pub fn create(&self, token: Secret) -> Session {
        let now = Instant::now();
        let session = Session {
            id: random_id(),
            csrf: random_id(),
            token,
        };
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, e| self.alive(e, now));
        if sessions.len() >= self.limits.max_sessions
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, e)| e.created)
                .map(|(id, _)| id.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            session.id.clone(),
            Entry {
                session: session.clone(),
                created: now,
                last_seen: now,
            },
        );
        session
    }

    fn alive(&self, entry: &Entry, now: Instant) -> bool {
        now.duration_since(entry.last_seen) < self.limits.idle
            && now.duration_since(entry.created) < self.limits.absolute
    }

    /// The live session `id`, which now counts as used; an expired one is
    /// forgotten.
    pub fn get(&self, id: &str) -> Option<Session> {
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let entry = sessions.get_mut(id)?;
        if !self.alive(entry, now) {
            sessions.remove(id);
            return None;
        }
        entry.last_seen = now;
        Some(entry.session.clone())
    }

    /// Ends a session (sign-out, or its token stopped working).
    pub fn end(&self, id: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// A one-time sign-in link's code, for `token`.
    pub fn create_link(&self, token: Secret) -> String {
        let now = Instant::now();
        let code = random_id();
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        links.retain(|_, l| l.expires > now);
        // Links are made by authenticated callers only; this bounds memory
        // all the same.
        if links.len() < 1000 {
            links.insert(
                code.clone(),
                Link {
                    token,
                    expires: now + self.limits.link,
                },
            );
        }
        code
    }

    /// The token of a sign-in link, once: the link is used up.
    pub fn take_link(&self, code: &str) -> Option<Secret> {
        let link = self
            .links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(code)?;
        (link.expires > Instant::now()).then_some(link.token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sessions_end_when_idle_and_at_their_absolute_limit() {
        let sessions = Sessions::new(SessionLimits {
            idle: Duration::from_secs(10),
            absolute: Duration::from_secs(25),
            ..SessionLimits::default()
        });
        let s = sessions.create(Secret::new("t"));
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(sessions.get(&s.id).is_some());
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(
            sessions.get(&s.id).is_some(),
            "each use restarts the idle clock"
        );
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(sessions.get(&s.id).is_none(), "25 s after sign-in it ends");
        let s = sessions.create(Secret::new("t"));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(sessions.get(&s.id).is_none(), "idle for 11 s");
    }

    #[tokio::test(start_paused = true)]
    async fn a_sign_in_link_works_once_and_not_after_it_expires() {
        let sessions = Sessions::new(SessionLimits::default());
        let code = sessions.create_link(Secret::new("t"));
        assert_eq!(sessions.take_link(&code).unwrap().expose(), "t");
        assert!(sessions.take_link(&code).is_none());
        let code = sessions.create_link(Secret::new("t"));
        tokio::time::advance(Duration::from_secs(301)).await;
        assert!(sessions.take_link(&code).is_none());
    }

    #[test]
    fn secrets_compare_equal_only_when_equal() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
