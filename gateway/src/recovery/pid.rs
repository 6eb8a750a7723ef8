//! The private session id (`pid`) a socket's client presents to recover: the socket's id
//! and 256 random bits. It is a bearer secret: only its SHA-256 is kept, it is never
//! logged (its `Debug` hides the secret), and it reaches neither backends nor listings.

use sha2::{Digest, Sha256};
use socketioxide::socket::Sid;

/// The digest kept of a pid's secret.
pub type SecretDigest = [u8; 32];

/// A private session id.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateId {
    /// The socket it recovers.
    pub sid: Sid,
    secret: [u8; 32],
}

impl std::fmt::Debug for PrivateId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateId({}, <secret>)", self.sid)
    }
}

/// A pid that cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PidError {
    /// Not the form sockgate gives.
    #[error("malformed pid")]
    Malformed,
    /// The system's random source failed.
    #[error("no randomness: {0}")]
    Random(getrandom::Error),
}

impl PrivateId {
    /// A new pid for `sid`.
    pub fn generate(sid: Sid) -> Result<Self, PidError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(PidError::Random)?;
        Ok(Self { sid, secret })
    }

    /// Reads a pid a client presented.
    pub fn parse(text: &str) -> Result<Self, PidError> {
        let (sid, secret) = text.split_once('.').ok_or(PidError::Malformed)?;
        let sid = sid.parse::<Sid>().map_err(|_| PidError::Malformed)?;
        let secret = unhex(secret.as_bytes()).ok_or(PidError::Malformed)?;
        Ok(Self { sid, secret })
    }

    /// What is kept to recognize it.
    pub fn digest(&self) -> SecretDigest {
        Sha256::digest(self.secret).into()
    }

    /// The text sent to the client (in the CONNECT reply only).
    pub fn reveal(&self) -> String {
        format!("{}.{}", self.sid, hex(&self.secret))
    }
}

/// 32 bytes (a secret, a digest) as 64 lowercase hex digits.
pub fn hex(bytes: &[u8; 32]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut text, b| {
        let _ = write!(text, "{b:02x}");
        text
    })
}

/// The 32 bytes 64 hex digits write; `None` for anything else.
pub fn unhex(text: &[u8]) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (byte, pair) in bytes.iter_mut().zip(text.chunks(2)) {
        let digits = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(digits, 16).ok()?;
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_reads_back_and_hides_its_secret() {
        let pid = PrivateId::generate(Sid::new()).unwrap();
        let text = pid.reveal();
        let back = PrivateId::parse(&text).unwrap();
        assert_eq!(back, pid);
        assert_eq!(back.digest(), pid.digest());
        assert!(
            !format!("{pid:?}").contains(&text[17..]),
            "Debug hides the secret"
        );
        let other = PrivateId::generate(pid.sid).unwrap();
        assert_ne!(other.digest(), pid.digest(), "random secrets");
    }

    #[test]
    fn malformed_pids_are_refused() {
        let good = PrivateId::generate(Sid::new()).unwrap().reveal();
        let (sid, secret) = good.split_once('.').unwrap();
        for bad in [
            String::new(),
            sid.to_owned(),
            format!("{sid}."),
            format!("{sid}.{}", &secret[1..]),
            format!("{sid}.{}g", &secret[1..]),
            format!("x.{secret}"),
            format!("{sid}.{secret}00"),
            format!("{sid}.{}é", &secret[2..]),
            format!("{sid}.+{}", &secret[1..]),
        ] {
            assert_eq!(PrivateId::parse(&bad), Err(PidError::Malformed), "{bad:?}");
        }
    }
}
