//! `[rooms]`: which rooms clients may join themselves.

use serde::{Deserialize, Serialize};

/// Rules for rooms clients ask to join.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomsConfig {
    /// Room patterns any authenticated socket may join: `*` matches any run of characters,
    /// `{user_id}` is the socket's user. Empty (and no JWT room claim): every client join
    /// is rejected.
    pub allow: Vec<String>,
}
