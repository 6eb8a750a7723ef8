//! Which rooms a client may join itself: the static allow patterns of the configuration
//! united with the patterns of the socket's JWT room claim. No pattern: nothing is allowed.
//! Whatever the patterns, internal rooms and other users' `user:` rooms are never allowed.

use super::Identity;
use crate::rooms::{self, pattern_matches};

/// Checks client join requests.
#[derive(Debug, Clone, Default)]
pub struct RoomValidator {
    allow: Vec<String>,
}

impl RoomValidator {
    /// A validator with these static patterns.
    pub fn new(allow: Vec<String>) -> Self {
        Self { allow }
    }

    /// Splits `requested` into (allowed, rejected). Invalid and internal names are rejected.
    pub fn split(&self, identity: &Identity, requested: Vec<String>) -> (Vec<String>, Vec<String>) {
        requested
            .into_iter()
            .partition(|room| self.may_be_allowed(identity, room) && self.allows(identity, room))
    }

    /// Whether any rule, or the backend, may allow `room` at all: never an invalid or
    /// internal name, nor another user's `user:` room.
    pub fn may_be_allowed(&self, identity: &Identity, room: &str) -> bool {
        let foreign_user_room = room.starts_with(rooms::USER_ROOM_PREFIX)
            && identity
                .user_id
                .as_deref()
                .is_none_or(|user| room != rooms::user_room(user));
        rooms::check_name(room).is_ok() && !foreign_user_room
    }

    fn allows(&self, identity: &Identity, room: &str) -> bool {
        let user = identity.user_id.as_deref();
        self.allow
            .iter()
            .chain(&identity.room_patterns)
            .any(|pattern| pattern_matches(pattern, room, user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(user: &str, patterns: &[&str]) -> Identity {
        Identity {
            user_id: Some(user.into()),
            room_patterns: patterns.iter().map(|p| p.to_string()).collect(),
            ..Identity::default()
        }
    }

    #[test]
    fn no_rules_rejects_everything() {
        let (ok, no) = RoomValidator::default().split(&id("u", &[]), vec!["a".into()]);
        assert!(ok.is_empty());
        assert_eq!(no, vec!["a"]);
    }

    #[test]
    fn static_and_claim_patterns_unite() {
        let validator = RoomValidator::new(vec!["chat:*".into(), "dm:{user_id}".into()]);
        let (ok, no) = validator.split(
            &id("u1", &["vip"]),
            vec![
                "chat:x".into(),
                "dm:u1".into(),
                "dm:u2".into(),
                "vip".into(),
                "$sg:state:authenticated".into(),
                String::new(),
            ],
        );
        assert_eq!(ok, vec!["chat:x", "dm:u1", "vip"]);
        assert_eq!(no, vec!["dm:u2", "$sg:state:authenticated", ""]);
    }

    #[test]
    fn a_wildcard_never_reaches_another_users_room() {
        let validator = RoomValidator::new(vec!["*".into(), "user:*".into()]);
        let (ok, no) = validator.split(
            &id("bob", &["user:*"]),
            vec!["user:alice".into(), "user:bob".into(), "user:".into()],
        );
        assert_eq!(ok, vec!["user:bob"]);
        assert_eq!(no, vec!["user:alice", "user:"]);
        let anonymous = Identity::default();
        let (ok, _) = validator.split(&anonymous, vec!["user:bob".into()]);
        assert!(ok.is_empty());
    }

    #[test]
    fn a_wildcard_never_reaches_internal_rooms() {
        let validator = RoomValidator::new(vec!["*".into()]);
        let (ok, _) = validator.split(&id("u", &[]), vec!["$sg:sid:abc".into()]);
        assert!(ok.is_empty());
    }
}
