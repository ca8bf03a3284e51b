//! Dashboard logins: a random session id in an `HttpOnly`, `SameSite=Strict` cookie, held in
//! memory (a restart logs everyone out), each with its own CSRF token that every form carries.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use base64::Engine;
use sha2::{Digest, Sha256};

/// Name of the session cookie.
pub const COOKIE_NAME: &str = "loch_session";
/// Logins kept at once; the oldest goes first past it.
const MAX_SESSIONS: usize = 1024;

/// One login.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who logged in.
    pub user: String,
    /// The token every form of this session must send back.
    pub csrf: String,
    last_used: Instant,
}

/// The logins of this server.
#[derive(Debug)]
pub struct Sessions {
    timeout: Duration,
    by_id: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Sessions that end after `timeout` without a request.
    pub fn new(timeout: Duration) -> Self {
        Self { timeout, by_id: Mutex::new(HashMap::new()) }
    }

    /// Starts a session for `user`; its id (for the cookie).
    pub fn start(&self, user: &str) -> String {
        let id = random_token();
        let session = Session { user: user.to_string(), csrf: random_token(), last_used: Instant::now() };
        let mut sessions = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        let timeout = self.timeout;
        sessions.retain(|_, s| s.last_used.elapsed() < timeout);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.last_used).map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(id.clone(), session);
        id
    }

    /// The live session a request's cookie names, touched.
    pub fn of_request(&self, headers: &HeaderMap) -> Option<(String, Session)> {
        let id = cookie(headers, COOKIE_NAME)?;
        let mut sessions = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        let session = sessions.get_mut(&id)?;
        if session.last_used.elapsed() >= self.timeout {
            sessions.remove(&id);
            return None;
        }
        session.last_used = Instant::now();
        Some((id, session.clone()))
    }

    /// Ends a session.
    pub fn end(&self, id: &str) {
        self.by_id.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
}

/// The `Set-Cookie` value that carries session `id` (empty: the one that clears it).
pub fn set_cookie(id: &str) -> String {
    if id.is_empty() {
        format!("{COOKIE_NAME}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
    } else {
        format!("{COOKIE_NAME}={id}; Path=/; HttpOnly; SameSite=Strict")
    }
}

/// Whether `given` equals `expected`, compared as digests so the time taken does not tell how
/// much of a guess was right.
pub fn same_secret(given: &str, expected: &str) -> bool {
    Sha256::digest(given.as_bytes()) == Sha256::digest(expected.as_bytes())
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The value of cookie `name` in a request's `Cookie` headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_cookie_until_it_ends() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let id = sessions.start("admin");
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, format!("other=1; {COOKIE_NAME}={id}").parse().unwrap());
        let (found, session) = sessions.of_request(&headers).expect("the session");
        assert_eq!((found.as_str(), session.user.as_str()), (id.as_str(), "admin"));
        assert_ne!(session.csrf, id);
        sessions.end(&id);
        assert!(sessions.of_request(&headers).is_none());
        headers.insert(COOKIE, format!("{COOKIE_NAME}=forged").parse().unwrap());
        assert!(sessions.of_request(&headers).is_none());
    }

    #[test]
    fn an_idle_session_expires() {
        let sessions = Sessions::new(Duration::from_millis(1));
        let id = sessions.start("admin");
        std::thread::sleep(Duration::from_millis(5));
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, format!("{COOKIE_NAME}={id}").parse().unwrap());
        assert!(sessions.of_request(&headers).is_none());
    }
}
