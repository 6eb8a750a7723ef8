//! Resolving a request's `Target` into socketioxide broadcast operators, refusing empty
//! targets and socket ids that are connected nowhere. Users are reached through the
//! trusted room the authenticator sets, never a public room; application events reach
//! authenticated sockets only.

use socketioxide::{SocketIo, adapter::Adapter, operators::BroadcastOperators, socket::Sid};
use sockgate_proto::Target;

use super::error::ControlError;
use crate::{
    cluster::{Cluster, Listing},
    edge::Session,
    rooms,
};

/// Who a target may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Any socket it names (membership changes, `Disconnect`).
    Any,
    /// Authenticated sockets only (application events); a socket id that names a socket
    /// that has not authenticated is `FAILED_PRECONDITION`.
    Authenticated,
}

/// Most ids, rooms and users one target may name in all.
const MAX_SELECTORS: usize = 10_000;

/// Validates `target` (the field name is used in messages) and checks that every socket
/// id is connected somewhere, then selects it on every node.
pub async fn resolve<A: Adapter>(
    io: &SocketIo<A>,
    cluster: &Cluster,
    target: Option<&Target>,
    field: &str,
    audience: Audience,
) -> Result<BroadcastOperators<A>, ControlError> {
    let target = check(io, cluster, target, field, audience).await?;
    Ok(select(io.broadcast(), target, audience))
}

/// Validates `target` (the field name is used in messages) and checks that every socket
/// id is connected somewhere. Only ids not on this node cost a Redis round trip.
pub async fn check<'t, A: Adapter>(
    io: &SocketIo<A>,
    cluster: &Cluster,
    target: Option<&'t Target>,
    field: &str,
    audience: Audience,
) -> Result<&'t Target, ControlError> {
    let (target, sids) = validate(target, field)?;
    ensure_connected(io, cluster, &sids, audience).await?;
    Ok(target)
}

/// Validates `target` (the field name is used in messages) without looking for its
/// sockets; returns it with its parsed socket ids.
pub fn validate<'t>(
    target: Option<&'t Target>,
    field: &str,
) -> Result<(&'t Target, Vec<Sid>), ControlError> {
    let Some(target) = target else {
        return Err(ControlError::invalid(format!(
            "{field} is required: set socket_ids, rooms, user_ids, or all"
        )));
    };
    let selectors = target.socket_ids.len() + target.rooms.len() + target.user_ids.len();
    if target.all && selectors > 0 {
        return Err(ControlError::invalid(format!(
            "{field}.all cannot be combined with socket_ids, rooms or user_ids"
        )));
    }
    if !target.all && selectors == 0 {
        return Err(ControlError::invalid(format!(
            "{field} is empty: name socket_ids, rooms or user_ids, or set all to reach every socket"
        )));
    }
    let exceptions = target.except_rooms.len() + target.except_socket_ids.len();
    if selectors + exceptions > MAX_SELECTORS {
        return Err(ControlError::invalid(format!(
            "{field} names more than {MAX_SELECTORS} ids, rooms and users"
        )));
    }
    for room in target.rooms.iter().chain(&target.except_rooms) {
        rooms::check_name(room).map_err(|e| ControlError::invalid(format!("{field}: {e}")))?;
    }
    for user in &target.user_ids {
        if user.is_empty() {
            return Err(ControlError::invalid(format!(
                "{field}.user_ids contains an empty id"
            )));
        }
    }
    let sids = parse_sids(&target.socket_ids, field)?;
    parse_sids(&target.except_socket_ids, field)?;
    Ok((target, sids))
}

/// Narrows `operators` (every node's sockets, or this node's) to a target validated by
/// [`resolve`]: its ids, rooms and users (everyone with `all`), minus its exceptions; for
/// [`Audience::Authenticated`], minus the sockets that have not authenticated.
pub fn select<A: Adapter>(
    operators: BroadcastOperators<A>,
    target: &Target,
    audience: Audience,
) -> BroadcastOperators<A> {
    let sids = target
        .socket_ids
        .iter()
        .filter_map(|id| rooms::parse_sid(id));
    let mut selected: Vec<String> = sids.map(rooms::socket_room).collect();
    selected.extend(target.rooms.iter().cloned());
    selected.extend(target.user_ids.iter().map(|u| rooms::user_id_room(u)));
    let mut except = target.except_rooms.clone();
    except.extend(
        target
            .except_socket_ids
            .iter()
            .filter_map(|id| rooms::parse_sid(id))
            .map(rooms::socket_room),
    );
    if audience == Audience::Authenticated {
        except.push(rooms::UNAUTHENTICATED.to_owned());
    }
    let operators = if target.all {
        operators
    } else {
        operators.to(selected)
    };
    if except.is_empty() {
        operators
    } else {
        operators.except(except)
    }
}

/// Parses socket ids; a malformed id is `INVALID_ARGUMENT`.
pub fn parse_sids(ids: &[String], field: &str) -> Result<Vec<Sid>, ControlError> {
    ids.iter()
        .map(|id| {
            rooms::parse_sid(id).ok_or_else(|| {
                ControlError::invalid(format!(
                    "{field}: {id:?} is not a socket id (16 URL-safe base64 characters)"
                ))
            })
        })
        .collect()
}

/// `NOT_FOUND` unless every id is connected on some node (the cluster's answers are boxed
/// futures: ids of this node, the common case, need neither); for [`Audience::Authenticated`],
/// `FAILED_PRECONDITION` for one that has not authenticated. Ids on this node are checked
/// here; the others in the socket directory (one Redis round trip). Only an id the
/// directory does not confirm (unknown, not authenticated, or not written yet) is asked to
/// every node, which is authoritative, so the status is the same as without a directory.
pub async fn ensure_connected<A: Adapter>(
    io: &SocketIo<A>,
    cluster: &Cluster,
    sids: &[Sid],
    audience: Audience,
) -> Result<(), ControlError> {
    let Here {
        mut elsewhere,
        mut unauthenticated,
    } = here(io, sids, audience);
    if !elsewhere.is_empty()
        && let Some(listed) = Box::pin(cluster.locate(&elsewhere)).await?
    {
        let confirmed = |entry: &Option<Listing>| match audience {
            Audience::Any => entry.is_some(),
            Audience::Authenticated => entry.as_ref().is_some_and(|l| l.authenticated),
        };
        elsewhere = elsewhere
            .into_iter()
            .zip(listed)
            .filter(|(_, entry)| !confirmed(entry))
            .map(|(sid, _)| sid)
            .collect();
    }
    // A socket away but inside its recovery window receives application events when it
    // comes back: they are in the history it is replayed from.
    if let (Audience::Authenticated, Some(recovery)) = (audience, cluster.recovery()) {
        let mut connected = Vec::with_capacity(elsewhere.len());
        for sid in elsewhere {
            if !recovery.is_away(sid).await {
                connected.push(sid);
            }
        }
        elsewhere = connected;
    }
    if !elsewhere.is_empty() {
        Box::pin(ask_nodes(io, &elsewhere, audience, &mut unauthenticated)).await?;
    }
    authenticated(&unauthenticated)
}

/// What this node knows of some socket ids.
pub struct Here {
    /// Those not connected to this node.
    pub elsewhere: Vec<Sid>,
    /// Those connected here that have not authenticated (for [`Audience::Authenticated`]).
    pub unauthenticated: Vec<Sid>,
}

/// Sorts `sids` by what this node knows of them.
pub fn here<A: Adapter>(io: &SocketIo<A>, sids: &[Sid], audience: Audience) -> Here {
    let mut found = Here {
        elsewhere: Vec::new(),
        unauthenticated: Vec::new(),
    };
    for sid in sids {
        match io.get_socket(*sid).as_ref().and_then(Session::of) {
            None => found.elsewhere.push(*sid),
            Some(session) => {
                if audience == Audience::Authenticated && !session.is_authenticated() {
                    found.unauthenticated.push(*sid);
                }
            }
        }
    }
    found
}

/// As [`ensure_connected`] for ids that must all be on this node (which is authoritative
/// for its own sockets): no other node is asked.
pub fn ensure_here<A: Adapter>(
    io: &SocketIo<A>,
    sids: &[Sid],
    audience: Audience,
) -> Result<(), ControlError> {
    let Here {
        elsewhere,
        unauthenticated,
    } = here(io, sids, audience);
    if !elsewhere.is_empty() {
        return Err(not_found(elsewhere.iter()));
    }
    authenticated(&unauthenticated)
}

fn not_found<'a>(missing: impl Iterator<Item = &'a Sid>) -> ControlError {
    ControlError::NotFound(format!(
        "no connected socket with id {}",
        missing
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// `FAILED_PRECONDITION` naming `unauthenticated`, if there are any.
fn authenticated(unauthenticated: &[Sid]) -> Result<(), ControlError> {
    if unauthenticated.is_empty() {
        return Ok(());
    }
    Err(ControlError::FailedPrecondition(format!(
        "socket {} has not authenticated: it receives application events only once \
         authenticated",
        unauthenticated
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// Asks every node about `elsewhere`: `NOT_FOUND` for an id connected nowhere; the ids
/// that have not authenticated (when that is asked) are added to `unauthenticated`.
async fn ask_nodes<A: Adapter>(
    io: &SocketIo<A>,
    elsewhere: &[Sid],
    audience: Audience,
    unauthenticated: &mut Vec<Sid>,
) -> Result<(), ControlError> {
    let remote_rooms = || elsewhere.iter().map(rooms::socket_room).collect::<Vec<_>>();
    // One round trip in the common case: every id found (and authenticated, when
    // that is asked); a second one only tells a missing id from an unauthenticated one.
    let first = if audience == Audience::Authenticated {
        io.to(remote_rooms()).except(rooms::UNAUTHENTICATED)
    } else {
        io.to(remote_rooms())
    };
    let found = first.fetch_sockets().await.map_err(ControlError::adapter)?;
    let absent: Vec<Sid> = elsewhere
        .iter()
        .copied()
        .filter(|sid| !found.iter().any(|s| s.data().id == *sid))
        .collect();
    if absent.is_empty() {
        return Ok(());
    }
    let connected = if audience == Audience::Authenticated {
        io.to(absent.iter().map(rooms::socket_room).collect::<Vec<_>>())
            .fetch_sockets()
            .await
            .map_err(ControlError::adapter)?
    } else {
        Vec::new()
    };
    let mut missing = absent
        .iter()
        .filter(|sid| !connected.iter().any(|s| s.data().id == **sid))
        .peekable();
    if missing.peek().is_some() {
        return Err(not_found(missing));
    }
    unauthenticated.extend(absent);
    Ok(())
}
