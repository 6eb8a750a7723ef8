//! The Admin UI's login, as socket.io's `instrument()` does it: the UI connects to `/admin`
//! with `auth: {username, password}` (checked against the bcrypt hash) and gets a
//! `session` id, with which it reconnects (`auth: {sessionId}`) without asking again.
//! Any other connection is refused with `invalid credentials`, the message the UI's form
//! shows as such.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde::Deserialize;
use socketioxide::{
    adapter::LocalAdapter,
    extract::{SocketRef, TryData},
};
use tokio::sync::Semaphore;
use tracing::{info, warn};

/// How long a session id lets the UI reconnect without the password.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Most sessions kept; past it the oldest is forgotten (its UI asks for the password).
const MAX_SESSIONS: usize = 256;

/// Who is connected to `/admin`: stored in the socket's extensions at login.
#[derive(Debug, Clone)]
pub struct Operator {
    /// The operator's name, in every log line of its actions.
    pub name: Arc<str>,
    /// The session id to give the UI, on a login by password.
    pub new_session: Option<String>,
}

/// Why a connection to `/admin` is refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid credentials")]
pub struct InvalidCredentials;

/// The `auth` of a connection to `/admin`: a login, or a session id.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    username: Option<String>,
    password: Option<String>,
    session_id: Option<String>,
}

/// The configured operator and its sessions.
pub struct Login {
    username: Arc<str>,
    /// Empty: no login (the admin port is on loopback).
    password_hash: String,
    sessions: Mutex<HashMap<String, Instant>>,
    /// bcrypt costs tens of milliseconds of CPU: one check at a time.
    checks: Semaphore,
}

impl Login {
    /// The login of `username` with `password_hash` (none if empty).
    pub fn new(username: &str, password_hash: &str) -> Self {
        Self {
            username: username.into(),
            password_hash: password_hash.to_owned(),
            sessions: Mutex::new(HashMap::new()),
            checks: Semaphore::new(1),
        }
    }

    /// The connect middleware of `/admin`.
    pub async fn check(
        self: Arc<Self>,
        socket: SocketRef<LocalAdapter>,
        TryData(auth): TryData<Credentials>,
    ) -> Result<(), InvalidCredentials> {
        let credentials = auth.unwrap_or_default();
        let operator = self.operator(credentials).await.inspect_err(|_| {
            warn!(sid = %socket.id, "admin ui: login refused (invalid credentials)");
        })?;
        if operator.new_session.is_some() {
            info!(operator = %operator.name, "admin ui: operator logged in");
        }
        socket.extensions.insert(operator);
        Ok(())
    }

    async fn operator(&self, credentials: Credentials) -> Result<Operator, InvalidCredentials> {
        let known = |name: Arc<str>| Operator {
            name,
            new_session: None,
        };
        if self.password_hash.is_empty() {
            return Ok(known(self.username.clone()));
        }
        if let Some(session) = credentials.session_id
            && self.session_is_valid(&session)
        {
            return Ok(known(self.username.clone()));
        }
        let (Some(username), Some(password)) = (credentials.username, credentials.password) else {
            return Err(InvalidCredentials);
        };
        if *username != *self.username || !self.password_matches(password).await {
            return Err(InvalidCredentials);
        }
        Ok(Operator {
            name: self.username.clone(),
            new_session: Some(self.open_session()?),
        })
    }

    async fn password_matches(&self, password: String) -> bool {
        let Ok(_turn) = self.checks.acquire().await else {
            return false;
        };
        let hash = self.password_hash.clone();
        tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
            .await
            .unwrap_or(false)
    }

    fn session_is_valid(&self, id: &str) -> bool {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions
            .get(id)
            .is_some_and(|opened| opened.elapsed() < SESSION_TTL)
    }

    fn open_session(&self) -> Result<String, InvalidCredentials> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|_| InvalidCredentials)?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, opened| opened.elapsed() < SESSION_TTL);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(id.clone(), Instant::now());
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials(username: &str, password: &str) -> Credentials {
        Credentials {
            username: Some(username.into()),
            password: Some(password.into()),
            session_id: None,
        }
    }

    #[tokio::test]
    async fn a_password_opens_a_session_that_lets_the_ui_back_in() {
        let login = Login::new("ops", &bcrypt::hash("s3cret", 4).unwrap());
        assert!(login.operator(credentials("ops", "wrong")).await.is_err());
        assert!(
            login
                .operator(credentials("other", "s3cret"))
                .await
                .is_err()
        );
        assert!(login.operator(Credentials::default()).await.is_err());
        let operator = login.operator(credentials("ops", "s3cret")).await.unwrap();
        assert_eq!(&*operator.name, "ops");
        let session = operator.new_session.unwrap();
        let back = Credentials {
            session_id: Some(session),
            ..Credentials::default()
        };
        assert!(login.operator(back).await.unwrap().new_session.is_none());
        let forged = Credentials {
            session_id: Some("00".repeat(16)),
            ..Credentials::default()
        };
        assert!(login.operator(forged).await.is_err());
    }

    #[tokio::test]
    async fn without_a_password_hash_anyone_is_the_operator() {
        let login = Login::new("admin", "");
        let operator = login.operator(Credentials::default()).await.unwrap();
        assert_eq!(&*operator.name, "admin");
    }
}
