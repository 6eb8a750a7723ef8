//! Constructors of [`Target`], the recipients of `Send`, `Join`, `Leave` and `Disconnect`.

use crate::Target;

impl Target {
    /// The sockets with these ids.
    pub fn sockets<S: Into<String>>(ids: impl IntoIterator<Item = S>) -> Self {
        Target {
            socket_ids: ids.into_iter().map(Into::into).collect(),
            ..Target::default()
        }
    }

    /// The sockets in any of these rooms.
    pub fn rooms<S: Into<String>>(rooms: impl IntoIterator<Item = S>) -> Self {
        Target {
            rooms: rooms.into_iter().map(Into::into).collect(),
            ..Target::default()
        }
    }

    /// The authenticated sockets of these users.
    pub fn users<S: Into<String>>(users: impl IntoIterator<Item = S>) -> Self {
        Target {
            user_ids: users.into_iter().map(Into::into).collect(),
            ..Target::default()
        }
    }

    /// Every socket of the cluster.
    pub fn all() -> Self {
        Target {
            all: true,
            ..Target::default()
        }
    }

    /// Leaves out the sockets in any of these rooms.
    pub fn except<S: Into<String>>(mut self, rooms: impl IntoIterator<Item = S>) -> Self {
        self.except_rooms.extend(rooms.into_iter().map(Into::into));
        self
    }

    /// Leaves out the sockets with these ids.
    pub fn except_sockets<S: Into<String>>(mut self, ids: impl IntoIterator<Item = S>) -> Self {
        self.except_socket_ids
            .extend(ids.into_iter().map(Into::into));
        self
    }
}
