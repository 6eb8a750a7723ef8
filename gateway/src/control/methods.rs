//! The one table of the gRPC methods served on the control port: which scope each
//! `SocketControl` method needs, and which services are not `SocketControl` (health and
//! reflection). Every layer classifies a request through [`classify`].

use crate::auth::Scope;

/// A `SocketControl` method.
#[derive(Debug, PartialEq, Eq)]
pub struct ControlMethod {
    /// The method name, also the metrics label.
    pub name: &'static str,
    /// The scope a caller needs (or `admin`); `None`: any valid token, the handler checks
    /// the scope of each command (`Batch`).
    pub scope: Option<Scope>,
}

const fn method(name: &'static str, scope: Scope) -> ControlMethod {
    ControlMethod {
        name,
        scope: Some(scope),
    }
}

/// Every `SocketControl` method and the scope it needs.
pub const METHODS: &[ControlMethod] = &[
    method("Send", Scope::Send),
    method("Join", Scope::Membership),
    method("Leave", Scope::Membership),
    method("GetInfo", Scope::Read),
    method("GetSocket", Scope::Read),
    method("ListSockets", Scope::Read),
    method("ListRooms", Scope::Read),
    method("Disconnect", Scope::Disconnect),
    method("WatchEvents", Scope::Events),
    ControlMethod {
        name: "Batch",
        scope: None,
    },
];

/// The scope the method `name` of the table needs, if it needs one.
pub fn scope_of(name: &str) -> Option<Scope> {
    METHODS
        .iter()
        .find(|m| m.name == name)
        .and_then(|m| m.scope)
}

/// Methods of `SocketControl` that this table does not know (a newer client) need this.
pub const UNKNOWN_METHOD_SCOPE: Scope = Scope::Admin;

const CONTROL_PREFIX: &str = "/sockgate.v1.SocketControl/";
const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";
const REFLECTION_PREFIXES: [&str; 2] = [
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// What a request path is.
#[derive(Debug, PartialEq, Eq)]
pub enum Rpc {
    /// A `SocketControl` method of the table.
    Control(&'static ControlMethod),
    /// `grpc.health.v1.Health`: always open, not counted.
    Health,
    /// Server reflection (v1 or v1alpha).
    Reflection,
    /// Anything else (tonic answers `UNIMPLEMENTED` once the caller is let through).
    Other,
}

/// Classifies the request path `/package.Service/Method`.
pub fn classify(path: &str) -> Rpc {
    if let Some(name) = path.strip_prefix(CONTROL_PREFIX) {
        return METHODS
            .iter()
            .find(|m| m.name == name)
            .map_or(Rpc::Other, Rpc::Control);
    }
    if path.starts_with(HEALTH_PREFIX) {
        Rpc::Health
    } else if REFLECTION_PREFIXES.iter().any(|p| path.starts_with(p)) {
        Rpc::Reflection
    } else {
        Rpc::Other
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn the_table_covers_every_method_of_the_proto() {
        let set = prost_types::FileDescriptorSet::decode(sockgate_proto::FILE_DESCRIPTOR_SET)
            .expect("descriptor set");
        let service = set
            .file
            .iter()
            .flat_map(|f| f.service.iter().map(move |s| (f.package(), s)))
            .find(|(package, s)| *package == "sockgate.v1" && s.name() == "SocketControl")
            .map(|(_, s)| s)
            .expect("SocketControl in the descriptors");
        let mut in_proto: Vec<&str> = service.method.iter().map(|m| m.name()).collect();
        let mut in_table: Vec<&str> = METHODS.iter().map(|m| m.name).collect();
        in_proto.sort_unstable();
        in_table.sort_unstable();
        assert_eq!(in_proto, in_table);
    }

    #[test]
    fn paths_are_classified() {
        assert_eq!(
            classify("/sockgate.v1.SocketControl/Send"),
            Rpc::Control(&METHODS[0])
        );
        assert_eq!(classify("/sockgate.v1.SocketControl/Nope"), Rpc::Other);
        assert_eq!(classify("/grpc.health.v1.Health/Watch"), Rpc::Health);
        assert_eq!(
            classify("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"),
            Rpc::Reflection
        );
        assert_eq!(classify("/other.Service/Send"), Rpc::Other);
    }
}
