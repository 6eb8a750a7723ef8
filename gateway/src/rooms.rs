//! Room names: the public ones (`user:{id}`), the internal ones delivery uses (`$sg:...`:
//! a socket's id, its user, and the sockets that have not authenticated), name validation,
//! and the allow patterns clients' joins are checked against. Clients and `Join` can never
//! name a room with the internal prefix.

use socketioxide::socket::Sid;

/// Who put a socket in a public room: the client may leave only its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The gateway (default rooms, the user room, the authenticator's rooms) or a `Join`.
    Server,
    /// The client's own `join`.
    Client,
}

/// Prefix of every internal room.
pub const INTERNAL_PREFIX: &str = "$sg:";
/// Longest room name accepted from a client or a control call.
pub const MAX_ROOM_LEN: usize = 256;

/// Room of every socket that has not (yet) authenticated: joined on connect, left only
/// once `authenticated` has been sent. Application events exclude it, so a socket
/// receives nothing but the auth protocol before it has authenticated, whatever rooms it
/// is in.
pub const UNAUTHENTICATED: &str = "$sg:state:unauthenticated";

/// A room no socket is ever in: asking the cluster for its members is a barrier.
pub const BARRIER: &str = "$sg:barrier";

const SID_PREFIX: &str = "$sg:sid:";
const UID_PREFIX: &str = "$sg:uid:";

/// The room only `sid` is in: targets one socket on whichever node it lives.
pub fn socket_room(sid: impl std::fmt::Display) -> String {
    format!("{SID_PREFIX}{sid}")
}

/// Prefix of the public per-user rooms.
pub const USER_ROOM_PREFIX: &str = "user:";

/// The public room of a user's sockets, kept for Ignis-style clients and backends that
/// send to `rooms: ["user:{id}"]`. `Target.user_ids` never uses it: it reaches the
/// trusted [`user_id_room`].
pub fn user_room(user_id: &str) -> String {
    format!("{USER_ROOM_PREFIX}{user_id}")
}

/// The internal room that names a socket's user. Only the authenticator puts a socket in
/// it (a `Join` could put a socket in someone else's `user:` room); user targeting uses
/// this one.
pub fn user_id_room(user_id: &str) -> String {
    format!("{UID_PREFIX}{user_id}")
}

/// Why a room name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomNameError {
    /// Empty name.
    #[error("room name is empty")]
    Empty,
    /// Too long.
    #[error("room name {0:?}... is longer than {MAX_ROOM_LEN} bytes")]
    TooLong(String),
    /// Internal prefix.
    #[error("room {0:?} uses the reserved prefix {INTERNAL_PREFIX:?}")]
    Reserved(String),
}

/// Checks a room name given by a client or a control call.
pub fn check_name(room: &str) -> Result<(), RoomNameError> {
    if room.is_empty() {
        Err(RoomNameError::Empty)
    } else if room.len() > MAX_ROOM_LEN {
        Err(RoomNameError::TooLong(
            room.chars().take(32).collect::<String>(),
        ))
    } else if room.starts_with(INTERNAL_PREFIX) {
        Err(RoomNameError::Reserved(room.to_owned()))
    } else {
        Ok(())
    }
}

/// Parses a socket id as given to the control plane.
pub fn parse_sid(id: &str) -> Option<Sid> {
    id.parse().ok()
}

/// A room pattern: `*` matches any run of characters (including none) and `{user_id}`
/// stands for the socket's user id, as literal text: a `*` inside a user id matches only a
/// `*`. A pattern with `{user_id}` never matches for a socket without a user.
pub fn pattern_matches(pattern: &str, room: &str, user_id: Option<&str>) -> bool {
    let user = match user_id {
        Some(user) if !user.is_empty() => user,
        _ if pattern.contains(USER_ID_PLACEHOLDER) => return false,
        _ => "",
    };
    // The pattern's own `*` split it first; the user id then only ever lands inside the
    // literal pieces between them.
    let pieces: Vec<std::borrow::Cow<'_, str>> = pattern
        .split('*')
        .map(|piece| {
            if piece.contains(USER_ID_PLACEHOLDER) {
                piece.replace(USER_ID_PLACEHOLDER, user).into()
            } else {
                piece.into()
            }
        })
        .collect();
    glob_matches(&pieces, room)
}

const USER_ID_PLACEHOLDER: &str = "{user_id}";

/// Whether `text` is the literal `pieces` joined by runs of any characters.
fn glob_matches<S: AsRef<str>>(pieces: &[S], text: &str) -> bool {
    let Some((first, rest_pieces)) = pieces.split_first() else {
        return text.is_empty();
    };
    let Some(mut rest) = text.strip_prefix(first.as_ref()) else {
        return false;
    };
    let Some((last, middle)) = rest_pieces.split_last() else {
        return rest.is_empty();
    };
    for piece in middle {
        let piece = piece.as_ref();
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    let last = last.as_ref();
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_patterns() {
        assert!(pattern_matches("chat:*", "chat:general", None));
        assert!(pattern_matches("chat:*", "chat:", None));
        assert!(!pattern_matches("chat:*", "chatter", None));
        assert!(pattern_matches("*", "anything", None));
        assert!(pattern_matches("a*b*c", "a-b-b-c", None));
        assert!(!pattern_matches("a*b*c", "a-c-b", None));
        assert!(pattern_matches("exact", "exact", None));
        assert!(!pattern_matches("exact", "exactly", None));
        assert!(!pattern_matches("ab*ba", "aba", None));
    }

    #[test]
    fn user_id_substitution() {
        assert!(pattern_matches(
            "private:{user_id}",
            "private:u1",
            Some("u1")
        ));
        assert!(!pattern_matches(
            "private:{user_id}",
            "private:u2",
            Some("u1")
        ));
        assert!(!pattern_matches("private:{user_id}", "private:", None));
        assert!(pattern_matches("team:{user_id}:*", "team:u1:x", Some("u1")));
    }

    #[test]
    fn a_user_id_is_literal_text_in_a_pattern() {
        assert!(!pattern_matches(
            "private:{user_id}",
            "private:alice",
            Some("*")
        ));
        assert!(pattern_matches("private:{user_id}", "private:*", Some("*")));
        assert!(!pattern_matches(
            "private:{user_id}:x",
            "private:a:b:x",
            Some("a*")
        ));
        assert!(pattern_matches("{user_id}*", "a*b", Some("a*")));
        assert!(!pattern_matches("{user_id}*", "ab", Some("a*")));
        assert!(pattern_matches(
            "dm:{user_id}:{user_id}",
            "dm:u:u",
            Some("u")
        ));
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(check_name(""), Err(RoomNameError::Empty));
        assert!(matches!(
            check_name("$sg:x"),
            Err(RoomNameError::Reserved(_))
        ));
        assert!(matches!(
            check_name(&"x".repeat(MAX_ROOM_LEN + 1)),
            Err(RoomNameError::TooLong(_))
        ));
        assert!(check_name("chat:general").is_ok());
    }
}
