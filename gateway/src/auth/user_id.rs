//! What a user id may look like. User ids name rooms and reach every backend, so the ids
//! the authenticators return are checked before a socket is admitted.

/// Longest user id, in bytes.
pub const MAX_USER_ID_LEN: usize = 128;

/// Characters allowed besides ASCII letters and digits.
pub const USER_ID_PUNCTUATION: &str = "-_.@:|+=/~";

/// Why a user id is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserIdError {
    /// Longer than [`MAX_USER_ID_LEN`].
    #[error("user id is {0} bytes; the limit is {MAX_USER_ID_LEN}")]
    TooLong(usize),
    /// A character outside the allowed set.
    #[error("user id contains {0:?}; allowed are ASCII letters, digits and {USER_ID_PUNCTUATION}")]
    BadCharacter(char),
}

/// Checks a non-empty user id returned by an authenticator.
pub fn check(user_id: &str) -> Result<(), UserIdError> {
    if user_id.len() > MAX_USER_ID_LEN {
        return Err(UserIdError::TooLong(user_id.len()));
    }
    match user_id
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && !USER_ID_PUNCTUATION.contains(*c))
    {
        Some(c) => Err(UserIdError::BadCharacter(c)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_id_shapes_pass() {
        for id in [
            "42",
            "alice",
            "auth0|5f7c8ec7c33c6c004bbafe82",
            "google-oauth2|1234",
            "jane.doe+test@example.com",
            "0b6b0c55-9f4e-4d39-9b3f-2a7c1e0f5b1a",
            "https://issuer.example/users/7",
        ] {
            assert_eq!(check(id), Ok(()), "{id}");
        }
    }

    #[test]
    fn wildcards_braces_spaces_and_long_ids_fail() {
        assert_eq!(check("*"), Err(UserIdError::BadCharacter('*')));
        assert_eq!(check("a{user_id}"), Err(UserIdError::BadCharacter('{')));
        assert_eq!(check("a b"), Err(UserIdError::BadCharacter(' ')));
        assert_eq!(check("é"), Err(UserIdError::BadCharacter('é')));
        assert_eq!(check("a\nb"), Err(UserIdError::BadCharacter('\n')));
        assert_eq!(
            check(&"x".repeat(MAX_USER_ID_LEN + 1)),
            Err(UserIdError::TooLong(MAX_USER_ID_LEN + 1))
        );
        assert_eq!(check(&"x".repeat(MAX_USER_ID_LEN)), Ok(()));
    }
}
