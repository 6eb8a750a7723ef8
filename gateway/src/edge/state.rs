//! A socket's state: one enum, and one transition function that moves it and, in the same
//! step and under the socket's lock, updates everything that depends on it:
//!
//! - delivery: the socket's internal rooms in the adapter. Every socket is in its own id
//!   room; a socket that is not authenticated is in [`rooms::UNAUTHENTICATED`], which every
//!   application event excludes, so it receives nothing but the auth protocol; an
//!   authenticated user's socket is in the user's internal room, which user targeting uses;
//! - listings: this node's [`SocketIndex`] (state, user, public rooms);
//! - the cluster: the socket directory (which node holds the socket, whether it has
//!   authenticated).
//!
//! The public rooms a socket is in, and who put it there (the server or the client), are
//! kept here too: they change under the same lock, through [`Session::join_rooms`] and
//! [`Session::leave_rooms`].

use std::sync::Arc;

use socketioxide::{
    adapter::Adapter,
    socket::{Sid, Socket},
};

use super::{index::SocketIndex, session::Session};
pub use crate::rooms::Owner;
use crate::{
    auth::Identity,
    cluster::Directory,
    recovery::{Recovery, saved::Saved},
    rooms,
};

/// The states of a socket.
#[derive(Debug, Clone, Default)]
pub enum SocketState {
    /// Connected; has not emitted `authenticate`.
    #[default]
    Unauthorized,
    /// The authenticator is deciding.
    Authenticating,
    /// Admitted, as this identity.
    Authenticated(Arc<Identity>),
    /// Refused (denied, authenticator failed, not authenticated in time, cut off and due):
    /// being disconnected.
    Refused,
    /// Cut off for abuse and told why; the auth sweeper disconnects it one to two passes
    /// later (`due` after the first), leaving its client time to read why.
    CutOff {
        /// One sweeper pass has gone by.
        due: bool,
    },
    /// Disconnected: every later transition is refused.
    Closed,
}

/// What listings and counts show of a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// Not (or no longer) authenticated.
    Unauthorized = 0,
    /// Authenticator running.
    Authenticating = 1,
    /// Authenticated.
    Authenticated = 2,
}

impl SocketState {
    /// What listings show.
    pub fn shown(&self) -> Shown {
        match self {
            Self::Authenticating => Shown::Authenticating,
            Self::Authenticated(_) => Shown::Authenticated,
            _ => Shown::Unauthorized,
        }
    }

    /// The identity, while authenticated.
    pub fn identity(&self) -> Option<&Arc<Identity>> {
        match self {
            Self::Authenticated(identity) => Some(identity),
            _ => None,
        }
    }
}

/// What moves a socket from one state to another.
pub enum Transition<'a> {
    /// The socket is connected (socketioxide marked it so): from now on it is listed and in
    /// the cluster's directory. Not a change of state; a socket may have changed state
    /// before (its first events can be handled just before it is marked connected).
    Open,
    /// `authenticate` received: `Unauthorized → Authenticating`.
    BeginAuth,
    /// The authenticator allowed it: `Authenticating → Authenticated`, unless its user
    /// has `most_on_node` sockets on this node already ([`Unapplied::UserFull`], the state
    /// unchanged). The socket joins `rooms` (the server's) and its user's internal room,
    /// `deliver` runs with its public rooms (it sends `authenticated`), and only then can
    /// application events reach it.
    Admit {
        /// Who it is.
        identity: Arc<Identity>,
        /// Public rooms to join.
        rooms: Vec<String>,
        /// Most sockets its user may have on this node, this one included (`None`: no
        /// limit).
        most_on_node: Option<usize>,
        /// Sends `authenticated`.
        deliver: &'a mut dyn FnMut(&[String]),
    },
    /// A recovered session (connection state recovery): `Unauthorized → Authenticated`
    /// as the identity it had, back in its public rooms with their owners and in its
    /// user's internal room; `deliver` replays what it missed, and only then can new
    /// application events reach it.
    Restore {
        /// Who it was.
        identity: Arc<Identity>,
        /// Its public rooms and who put it in each.
        rooms: Vec<(String, Owner)>,
        /// Replays the missed events.
        deliver: &'a mut dyn FnMut(),
    },
    /// Denied, failed, or not authenticated in time: `Unauthorized | Authenticating →
    /// Refused`.
    Refuse,
    /// Cut off for abuse: any live state but `Refused` → `CutOff`.
    CutOff,
    /// A sweeper pass over a cut-off socket: `CutOff → CutOff (due) → Refused`.
    MarkCutOffDue,
    /// Disconnected: any state → `Closed`.
    Close,
}

/// Why a transition was not applied (the state is unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unapplied {
    /// It does not apply to the socket's state, or the socket is disconnecting.
    NotApplicable,
    /// `Admit`: the user has as many sockets as it may have.
    UserFull,
}

/// The mutable part of a socket's session.
#[derive(Debug, Default)]
pub struct Life {
    state: SocketState,
    /// Listed and in the directory (see [`Transition::Open`]).
    open: bool,
    /// The user the socket was admitted as (kept when it is cut off).
    user: Option<Arc<str>>,
    /// The public rooms, sorted by name.
    rooms: Vec<(Arc<str>, Owner)>,
}

impl Life {
    /// The state.
    pub fn state(&self) -> &SocketState {
        &self.state
    }

    /// Whether the socket is listed (see [`Transition::Open`]).
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// The user the socket was admitted as, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The public rooms, sorted.
    pub fn rooms(&self) -> impl Iterator<Item = &str> {
        self.rooms.iter().map(|(room, _)| &**room)
    }

    /// The public rooms, sorted, and who put the socket in each.
    pub fn owned_rooms(&self) -> impl Iterator<Item = (&str, Owner)> {
        self.rooms.iter().map(|(room, owner)| (&**room, *owner))
    }

    fn owner(&self, room: &str) -> Option<Owner> {
        self.position(room).ok().map(|at| self.rooms[at].1)
    }

    fn position(&self, room: &str) -> Result<usize, usize> {
        self.rooms.binary_search_by(|(r, _)| (**r).cmp(room))
    }

    fn client_rooms(&self) -> usize {
        self.rooms
            .iter()
            .filter(|(_, o)| *o == Owner::Client)
            .count()
    }
}

/// The state a transition leads to from `life`, or `None` when it does not apply.
fn next(life: &Life, transition: &Transition<'_>) -> Option<SocketState> {
    use SocketState::*;
    Some(match (&life.state, transition) {
        (Closed, _) => return None,
        (_, Transition::Close) => Closed,
        (state, Transition::Open) if !life.open => state.clone(),
        (Unauthorized, Transition::BeginAuth) => Authenticating,
        (Authenticating, Transition::Admit { identity, .. })
        | (Unauthorized, Transition::Restore { identity, .. }) => Authenticated(identity.clone()),
        (Unauthorized | Authenticating, Transition::Refuse) => Refused,
        (Unauthorized | Authenticating | Authenticated(_), Transition::CutOff) => {
            CutOff { due: false }
        }
        (CutOff { due: false }, Transition::MarkCutOffDue) => CutOff { due: true },
        (CutOff { due: true }, Transition::MarkCutOffDue) => Refused,
        _ => return None,
    })
}

/// What a socket's state is mirrored in besides the adapter: this node's index (listings)
/// and the cluster's socket directory.
#[derive(Default)]
pub struct Mirrors {
    /// This node's sockets.
    pub index: SocketIndex,
    /// Which node holds which socket (a no-op on a single node).
    pub directory: Arc<Directory>,
    /// Connection state recovery, when it is on: in a cluster, an authenticated socket's
    /// session is kept in Redis while it lives, so that it survives a crash of this node.
    pub recovery: Option<Arc<Recovery>>,
}

impl Mirrors {
    /// Mirrors reporting to `directory`, and to `recovery`'s store when it is on.
    pub fn new(directory: Arc<Directory>, recovery: Option<Arc<Recovery>>) -> Self {
        Self {
            index: SocketIndex::default(),
            directory,
            recovery,
        }
    }
}

/// The rooms every new socket is in for delivery: its id room, and the room of sockets
/// that must receive nothing but the auth protocol.
pub fn initial_rooms(sid: Sid) -> [String; 2] {
    [rooms::socket_room(sid), rooms::UNAUTHENTICATED.to_owned()]
}

impl Session {
    /// Applies `transition` to the socket's state and mirrors it. Returns the previous
    /// state, or why the transition was not applied (the state is unchanged).
    pub fn apply<A: Adapter>(
        self: &Arc<Self>,
        socket: &Socket<A>,
        transition: Transition<'_>,
    ) -> Result<SocketState, Unapplied> {
        let mut life = self.life();
        let next = next(&life, &transition).ok_or(Unapplied::NotApplicable)?;
        let admitted = match &transition {
            Transition::Admit {
                identity,
                rooms,
                most_on_node,
                ..
            } => Some((
                identity,
                rooms.iter().map(|r| (r.clone(), Owner::Server)).collect(),
                *most_on_node,
            )),
            // The same socket coming back: not refused for its user's limit.
            Transition::Restore {
                identity, rooms, ..
            } => Some((identity, rooms.clone(), None)),
            _ => None,
        };
        if let Some((identity, rooms, most_on_node)) = admitted {
            self.admit(socket, &mut life, identity, rooms, most_on_node)?;
        }
        let previous = std::mem::replace(&mut life.state, next);
        match transition {
            Transition::Open => self.open(&mut life),
            Transition::Close => self.close(&mut life, &previous),
            Transition::Admit { deliver, .. } => {
                self.mirror_state(&life, &previous);
                let public: Vec<String> = life.rooms().map(str::to_owned).collect();
                deliver(&public);
                // Only now, after `authenticated` is on the socket's ordered channel, can
                // application events reach it.
                socket.leave(rooms::UNAUTHENTICATED);
                self.report(&life);
                self.keep_live(&life);
            }
            Transition::Restore { deliver, .. } => {
                self.mirror_state(&life, &previous);
                deliver();
                socket.leave(rooms::UNAUTHENTICATED);
                self.report(&life);
                self.keep_live(&life);
            }
            Transition::CutOff if matches!(previous, SocketState::Authenticated(_)) => {
                self.mirror_state(&life, &previous);
                socket.join(rooms::UNAUTHENTICATED);
                self.report(&life);
            }
            _ => self.mirror_state(&life, &previous),
        }
        Ok(previous)
    }

    /// What `Admit` and `Restore` do before the state changes: count the socket among its
    /// user's sockets (refused past `most_on_node`), then join its rooms; a socket that is
    /// closing is not admitted.
    fn admit<A: Adapter>(
        &self,
        socket: &Socket<A>,
        life: &mut Life,
        identity: &Identity,
        rooms: Vec<(String, Owner)>,
        most_on_node: Option<usize>,
    ) -> Result<(), Unapplied> {
        let (index, user) = (&self.mirrors.index, identity.user_id.as_deref());
        if let (true, Some(user)) = (life.open, user)
            && !index.admit_user(self.sid, user, most_on_node)
        {
            return Err(Unapplied::UserFull);
        }
        let mut joined: Vec<String> = rooms.iter().map(|(r, _)| r.clone()).collect();
        joined.extend(user.map(rooms::user_id_room));
        if !join_while_connected(socket, joined) {
            if let (true, Some(user)) = (life.open, user) {
                index.forget_user(self.sid, user);
            }
            return Err(Unapplied::NotApplicable);
        }
        for (room, owner) in rooms {
            self.add_rooms(life, std::slice::from_ref(&room), owner);
        }
        life.user = user.map(Arc::from);
        Ok(())
    }

    /// Lists the socket, with whatever state and rooms it has, and reports it to the
    /// directory.
    fn open(self: &Arc<Self>, life: &mut Life) {
        let (sid, index) = (self.sid, &self.mirrors.index);
        life.open = true;
        index.insert(sid, self.clone(), life.state.shown());
        if let Some(user) = &life.user {
            index.set_user(sid, user);
        }
        for (room, _) in &mut life.rooms {
            *room = index.join(sid, room);
        }
        self.report(life);
        self.opened_or_closed();
    }

    /// Forgets the socket in the index and the directory.
    fn close(&self, life: &mut Life, previous: &SocketState) {
        if life.open {
            let rooms = life.rooms.iter().map(|(room, _)| room);
            self.mirrors
                .index
                .remove(self.sid, previous.shown(), life.user.as_deref(), rooms);
            self.mirrors.directory.gone(self.sid);
        }
        life.open = false;
        self.opened_or_closed();
    }

    /// The index follows a change of state.
    fn mirror_state(&self, life: &Life, previous: &SocketState) {
        if life.open {
            let index = &self.mirrors.index;
            index.set_state(self.sid, previous.shown(), life.state.shown());
        }
    }

    /// Keeps an authenticated socket's session in the recovery store, where the store
    /// keeps live sessions (a cluster).
    fn keep_live(&self, life: &Life) {
        let Some(recovery) = &self.mirrors.recovery else {
            return;
        };
        let store = recovery.store();
        let (true, Some(identity)) = (store.keeps_live(), life.state.identity()) else {
            return;
        };
        if let Some(saved) = self.saved(life, identity) {
            store.live(self.sid, &saved);
        }
    }

    /// What recovery keeps of the socket as `identity`, as of now: `None` when it has no
    /// pid.
    pub fn saved(&self, life: &Life, identity: &Arc<Identity>) -> Option<Saved> {
        let resumable = self.resumable()?;
        Some(Saved {
            digest: resumable.digest,
            identity: identity.clone(),
            rooms: life
                .owned_rooms()
                .map(|(room, owner)| (room.to_owned(), owner))
                .collect(),
            since: resumable.since,
            away_since: std::time::SystemTime::now(),
        })
    }

    /// Tells the directory whether the socket is authenticated.
    fn report(&self, life: &Life) {
        if life.open {
            let authenticated = life.state.shown() == Shown::Authenticated;
            self.mirrors.directory.present(self.sid, authenticated);
        }
    }

    /// Puts the socket in public `rooms` for `owner`. A room the socket is already in keeps
    /// its owner unless the server claims it (a client can no longer leave a room the
    /// server put it in). The client's new rooms are refused past `max_client_rooms` of
    /// its own, and only an authenticated socket joins for itself.
    pub fn join_rooms<A: Adapter>(
        &self,
        socket: &Socket<A>,
        rooms: Vec<String>,
        owner: Owner,
        max_client_rooms: usize,
    ) -> RoomsJoined {
        let mut life = self.life();
        let mut result = RoomsJoined::default();
        let allowed = match owner {
            Owner::Server => !matches!(life.state, SocketState::Closed),
            Owner::Client => matches!(life.state, SocketState::Authenticated(_)),
        };
        if !allowed {
            result.gone = true;
            return result;
        }
        let plan = plan_join(&life, rooms, owner, max_client_rooms);
        result.joined = plan.already;
        result.over = plan.over;
        let (claimed, fresh) = (plan.claimed, plan.fresh);
        for room in &claimed {
            if let Ok(at) = life.position(room) {
                life.rooms[at].1 = Owner::Server;
            }
        }
        if !fresh.is_empty() {
            if !join_while_connected(socket, fresh.clone()) {
                result.gone = true;
                return result;
            }
            self.add_rooms(&mut life, &fresh, owner);
        }
        let changed = !claimed.is_empty() || !fresh.is_empty();
        result.joined.extend(claimed);
        result.joined.extend(fresh);
        if changed {
            self.keep_live(&life);
        }
        result
    }

    /// Takes the socket out of public `rooms` for `owner` (the client: only rooms it joined
    /// itself): (the rooms left, the rest).
    pub fn leave_rooms<A: Adapter>(
        &self,
        socket: &Socket<A>,
        rooms: Vec<String>,
        owner: Owner,
    ) -> (Vec<String>, Vec<String>) {
        let mut life = self.life();
        if matches!(life.state, SocketState::Closed) {
            return (Vec::new(), rooms);
        }
        let (left, kept) = plan_leave(&life, rooms, owner);
        if left.is_empty() {
            return (left, kept);
        }
        socket.leave(left.clone());
        for room in &left {
            if let Ok(at) = life.position(room) {
                life.rooms.remove(at);
                if life.open {
                    self.mirrors.index.leave(self.sid, room);
                }
            }
        }
        self.keep_live(&life);
        (left, kept)
    }

    fn add_rooms(&self, life: &mut Life, rooms: &[String], owner: Owner) {
        for room in rooms {
            if let Err(at) = life.position(room) {
                let name = if life.open {
                    self.mirrors.index.join(self.sid, room)
                } else {
                    Arc::from(room.as_str())
                };
                life.rooms.insert(at, (name, owner));
            }
        }
    }
}

/// How a join of `rooms` for `owner` splits.
#[derive(Debug, Default, PartialEq)]
struct JoinPlan {
    /// Already in, owner unchanged.
    already: Vec<String>,
    /// The client's rooms the server claims.
    claimed: Vec<String>,
    /// To join.
    fresh: Vec<String>,
    /// Past the client's limit.
    over: Vec<String>,
}

fn plan_join(life: &Life, rooms: Vec<String>, owner: Owner, max_client_rooms: usize) -> JoinPlan {
    let mut plan = JoinPlan::default();
    let mut own = life.client_rooms();
    for room in rooms {
        match (life.owner(&room), owner) {
            (Some(Owner::Client), Owner::Server) => plan.claimed.push(room),
            (Some(_), _) => plan.already.push(room),
            (None, Owner::Client) if own >= max_client_rooms => plan.over.push(room),
            (None, _) => {
                own += usize::from(owner == Owner::Client);
                plan.fresh.push(room);
            }
        }
    }
    plan
}

/// (the rooms `owner` may leave, the rest): the client leaves only its own rooms.
fn plan_leave(life: &Life, rooms: Vec<String>, owner: Owner) -> (Vec<String>, Vec<String>) {
    rooms.into_iter().partition(|room| match life.owner(room) {
        Some(Owner::Client) => true,
        Some(Owner::Server) => owner == Owner::Server,
        None => false,
    })
}

/// What [`Session::join_rooms`] did.
#[derive(Debug, Default)]
pub struct RoomsJoined {
    /// Rooms the socket is in now (joined now or already).
    pub joined: Vec<String>,
    /// Rooms refused: past the socket's limit.
    pub over: Vec<String>,
    /// The socket is disconnecting (or, for a client join, no longer authenticated):
    /// nothing was joined.
    pub gone: bool,
}

/// Joins `rooms` unless the socket is disconnecting; false if it is. socketioxide marks a
/// closing socket disconnected before it removes it from every room, so a join that still
/// sees it connected is cleaned up by that removal, and one that does not is undone here:
/// no membership outlives its socket, however a join races the disconnect.
fn join_while_connected<A: Adapter>(socket: &Socket<A>, rooms: Vec<String>) -> bool {
    socket.join(rooms.clone());
    if socket.connected() {
        return true;
    }
    socket.leave(rooms);
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn life(state: SocketState) -> Life {
        Life {
            state,
            open: true,
            user: None,
            rooms: Vec::new(),
        }
    }

    fn admit(deliver: &mut dyn FnMut(&[String])) -> Transition<'_> {
        Transition::Admit {
            identity: Arc::default(),
            rooms: Vec::new(),
            most_on_node: None,
            deliver,
        }
    }

    #[test]
    fn authentication_starts_once_and_ends_once() {
        use SocketState::*;
        let mut deliver = |_: &[String]| {};
        assert!(matches!(
            next(&life(Unauthorized), &Transition::BeginAuth),
            Some(Authenticating)
        ));
        assert!(next(&life(Authenticating), &Transition::BeginAuth).is_none());
        assert!(next(&life(Authenticated(Arc::default())), &Transition::BeginAuth).is_none());
        assert!(matches!(
            next(&life(Authenticating), &admit(&mut deliver)),
            Some(Authenticated(_))
        ));
        assert!(next(&life(Unauthorized), &admit(&mut deliver)).is_none());
        assert!(next(&life(CutOff { due: false }), &admit(&mut deliver)).is_none());
        assert!(next(&life(Authenticated(Arc::default())), &Transition::Refuse).is_none());
    }

    #[test]
    fn a_cut_off_socket_is_refused_after_two_sweeps() {
        use SocketState::*;
        let cut = next(&life(Authenticated(Arc::default())), &Transition::CutOff).unwrap();
        assert!(matches!(cut, CutOff { due: false }));
        assert!(
            next(&life(cut.clone()), &Transition::CutOff).is_none(),
            "cut off once"
        );
        let due = next(&life(cut), &Transition::MarkCutOffDue).unwrap();
        assert!(matches!(due, CutOff { due: true }));
        assert!(matches!(
            next(&life(due), &Transition::MarkCutOffDue),
            Some(Refused)
        ));
        assert!(next(&life(Refused), &Transition::CutOff).is_none());
    }

    #[test]
    fn a_closed_socket_stays_closed_and_opens_once() {
        use SocketState::*;
        for transition in [
            Transition::Open,
            Transition::BeginAuth,
            Transition::Refuse,
            Transition::CutOff,
            Transition::Close,
        ] {
            assert!(next(&life(Closed), &transition).is_none());
        }
        assert!(
            next(&life(Unauthorized), &Transition::Open).is_none(),
            "open already"
        );
        let mut closed = life(Authenticating);
        closed.open = false;
        assert!(matches!(
            next(&closed, &Transition::Open),
            Some(Authenticating)
        ));
        assert_eq!(Refused.shown(), Shown::Unauthorized);
        assert_eq!(CutOff { due: true }.shown(), Shown::Unauthorized);
    }

    #[test]
    fn only_client_joined_rooms_can_be_left() {
        let names = |names: &[&str]| names.iter().map(|r| r.to_string()).collect::<Vec<_>>();
        let mut life = life(SocketState::Authenticated(Arc::default()));
        life.rooms = vec![
            ("a".into(), Owner::Client),
            ("server".into(), Owner::Server),
        ];
        let plan = plan_join(&life, names(&["a", "b", "c", "server"]), Owner::Client, 2);
        assert_eq!(
            plan,
            JoinPlan {
                already: names(&["a", "server"]),
                claimed: vec![],
                fresh: names(&["b"]),
                over: names(&["c"]),
            }
        );
        let plan = plan_join(&life, names(&["a", "x"]), Owner::Server, 0);
        assert_eq!(
            plan.claimed,
            names(&["a"]),
            "the server claims the client's room"
        );
        assert_eq!(plan.fresh, names(&["x"]), "no limit for the server");
        assert_eq!(
            plan_leave(&life, names(&["a", "server", "none"]), Owner::Client),
            (names(&["a"]), names(&["server", "none"]))
        );
        assert_eq!(
            plan_leave(&life, names(&["a", "server"]), Owner::Server),
            (names(&["a", "server"]), vec![])
        );
    }
}
