//! The index of this node's sockets that listings and counts read: sockets ordered by id,
//! each state's sockets, each public room's and each user's sockets, all ordered by id.
//! A page costs O(page × log n), a count O(1), whatever the number of sockets.
//!
//! Only the socket state machine (`state.rs`) writes it, in the same step as it changes a
//! socket's state or rooms, so the index never disagrees with what delivery uses.

use std::{
    collections::{BTreeMap, BTreeSet},
    ops::Bound,
    sync::{Arc, Mutex, MutexGuard},
};

use socketioxide::socket::Sid;

use super::{session::Session, state::Shown};

/// Counts of this node's sockets by the state listings show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateCounts {
    /// Connected, not (or no longer) authenticated.
    pub unauthorized: u32,
    /// Authenticator running.
    pub authenticating: u32,
    /// Authenticated.
    pub authenticated: u32,
}

impl StateCounts {
    /// Every socket.
    pub fn total(&self) -> u32 {
        self.unauthorized + self.authenticating + self.authenticated
    }
}

/// Which sockets a listing wants; empty fields do not filter.
#[derive(Debug, Default, Clone, Copy)]
pub struct SocketFilter<'a> {
    /// Members of this public room.
    pub room: Option<&'a str>,
    /// Sockets of this user.
    pub user: Option<&'a str>,
    /// Sockets in this state.
    pub state: Option<Shown>,
}

/// One page of a listing.
#[derive(Debug)]
pub struct Page<T> {
    /// The items, in order.
    pub items: Vec<T>,
    /// How many items match in all.
    pub matched: u32,
    /// Whether more match after the page.
    pub more: bool,
}

#[derive(Default)]
struct Inner {
    sockets: BTreeMap<Sid, Arc<Session>>,
    by_state: [BTreeSet<Sid>; 3],
    rooms: Members,
    users: Members,
}

/// This node's sockets, as listings and counts see them.
#[derive(Default)]
pub struct SocketIndex {
    inner: Mutex<Inner>,
}

impl SocketIndex {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn insert(&self, sid: Sid, session: Arc<Session>, shown: Shown) {
        let mut inner = self.lock();
        inner.sockets.insert(sid, session);
        inner.by_state[shown as usize].insert(sid);
    }

    /// Takes the socket out, with its user and rooms.
    pub(super) fn remove<'a>(
        &self,
        sid: Sid,
        shown: Shown,
        user: Option<&str>,
        rooms: impl IntoIterator<Item = &'a Arc<str>>,
    ) {
        let mut inner = self.lock();
        inner.sockets.remove(&sid);
        inner.by_state[shown as usize].remove(&sid);
        if let Some(user) = user {
            remove_member(&mut inner.users, user, sid);
        }
        for room in rooms {
            remove_member(&mut inner.rooms, room, sid);
        }
    }

    pub(super) fn set_state(&self, sid: Sid, from: Shown, to: Shown) {
        if from == to {
            return;
        }
        let mut inner = self.lock();
        if inner.by_state[from as usize].remove(&sid) {
            inner.by_state[to as usize].insert(sid);
        }
    }

    pub(super) fn set_user(&self, sid: Sid, user: &str) {
        let mut inner = self.lock();
        if inner.sockets.contains_key(&sid) {
            inner.users.entry(user.into()).or_default().insert(sid);
        }
    }

    /// Adds the socket to `room`; the name is shared with every other member's entry.
    pub(super) fn join(&self, sid: Sid, room: &str) -> Arc<str> {
        let mut inner = self.lock();
        if let Some(name) = inner
            .rooms
            .get_key_value(room)
            .map(|(name, _)| name.clone())
        {
            inner.rooms.entry(name.clone()).or_default().insert(sid);
            return name;
        }
        let name: Arc<str> = room.into();
        inner.rooms.insert(name.clone(), BTreeSet::from([sid]));
        name
    }

    pub(super) fn leave(&self, sid: Sid, room: &str) {
        remove_member(&mut self.lock().rooms, room, sid);
    }

    /// The socket's session, if it is on this node.
    pub fn get(&self, sid: Sid) -> Option<Arc<Session>> {
        self.lock().sockets.get(&sid).cloned()
    }

    /// Counts by state.
    pub fn counts(&self) -> StateCounts {
        let inner = self.lock();
        let count = |shown: Shown| inner.by_state[shown as usize].len() as u32;
        StateCounts {
            unauthorized: count(Shown::Unauthorized),
            authenticating: count(Shown::Authenticating),
            authenticated: count(Shown::Authenticated),
        }
    }

    /// How many public rooms have members on this node.
    pub fn room_count(&self) -> usize {
        self.lock().rooms.len()
    }

    /// Every socket and whether it has authenticated (for a rewrite of the cluster's
    /// socket directory: O(n), rare).
    pub fn authenticated_flags(&self) -> Vec<(Sid, bool)> {
        let inner = self.lock();
        let authenticated = &inner.by_state[Shown::Authenticated as usize];
        inner
            .sockets
            .keys()
            .map(|sid| (*sid, authenticated.contains(sid)))
            .collect()
    }

    /// The sockets that have not authenticated (for the auth sweeper).
    pub fn not_authenticated(&self) -> Vec<Arc<Session>> {
        let inner = self.lock();
        [Shown::Unauthorized, Shown::Authenticating]
            .iter()
            .flat_map(|shown| inner.by_state[*shown as usize].iter())
            .filter_map(|sid| inner.sockets.get(sid).cloned())
            .collect()
    }

    /// The first `limit` sockets matching `filter` with an id after `after`.
    pub fn sockets(
        &self,
        filter: SocketFilter<'_>,
        after: Option<Sid>,
        limit: usize,
    ) -> Page<Arc<Session>> {
        let inner = self.lock();
        let empty = BTreeSet::new();
        let room = filter
            .room
            .map(|room| inner.rooms.get(room).unwrap_or(&empty));
        let user = filter
            .user
            .map(|user| inner.users.get(user).unwrap_or(&empty));
        let state = filter.state.map(|shown| &inner.by_state[shown as usize]);
        let all_ids = AllIds(&inner.sockets);
        let mut sets: Vec<&dyn IdSet> = [room, user, state]
            .into_iter()
            .flatten()
            .map(|set| set as &dyn IdSet)
            .collect();
        if sets.is_empty() {
            sets.push(&all_ids);
        }
        sets.sort_by_key(|set| set.len());
        let (driver, others) = sets.split_first().expect("at least one set");
        let matches = |sid: &Sid| others.iter().all(|set| set.contains(sid));
        let matched = if others.is_empty() {
            driver.len()
        } else {
            driver.after(None).filter(|sid| matches(sid)).count()
        };
        let mut hits = driver.after(after).filter(|sid| matches(sid));
        let items: Vec<Arc<Session>> = hits
            .by_ref()
            .take(limit)
            .filter_map(|sid| inner.sockets.get(&sid).cloned())
            .collect();
        Page {
            more: hits.next().is_some(),
            items,
            matched: matched as u32,
        }
    }

    /// The first `limit` public rooms starting with `prefix` named after `after`, with
    /// their members on this node.
    pub fn rooms(&self, prefix: &str, after: &str, limit: usize) -> Page<(String, u32)> {
        let inner = self.lock();
        let in_prefix = |name: &&Arc<str>| name.starts_with(prefix);
        let matched = if prefix.is_empty() {
            inner.rooms.len()
        } else {
            range_from(&inner.rooms, prefix, false)
                .take_while(|(name, _)| in_prefix(name))
                .count()
        };
        let start = if after > prefix { after } else { prefix };
        let mut hits = range_from(&inner.rooms, start, start == after && !after.is_empty())
            .take_while(|(name, _)| in_prefix(name));
        let items = hits
            .by_ref()
            .take(limit)
            .map(|(name, members)| (name.to_string(), members.len() as u32))
            .collect();
        Page {
            more: hits.next().is_some(),
            items,
            matched: matched as u32,
        }
    }
}

fn range_from<'a, V>(
    map: &'a BTreeMap<Arc<str>, V>,
    start: &str,
    exclusive: bool,
) -> impl Iterator<Item = (&'a Arc<str>, &'a V)> {
    let bound = if exclusive {
        Bound::Excluded(start)
    } else {
        Bound::Included(start)
    };
    map.range::<str, _>((bound, Bound::Unbounded))
}

/// Names (rooms, users) and their sockets.
type Members = BTreeMap<Arc<str>, BTreeSet<Sid>>;

/// Takes `sid` out of `key`'s members, and `key` out of the map with its last member.
fn remove_member(map: &mut Members, key: &str, sid: Sid) {
    if let Some(members) = map.get_mut(key) {
        members.remove(&sid);
        if members.is_empty() {
            map.remove(key);
        }
    }
}

/// An ordered set of socket ids a listing can walk.
trait IdSet {
    fn len(&self) -> usize;
    fn contains(&self, sid: &Sid) -> bool;
    fn after(&self, after: Option<Sid>) -> Box<dyn Iterator<Item = Sid> + '_>;
}

fn bound(after: Option<Sid>) -> (Bound<Sid>, Bound<Sid>) {
    (
        after.map_or(Bound::Unbounded, Bound::Excluded),
        Bound::Unbounded,
    )
}

impl IdSet for BTreeSet<Sid> {
    fn len(&self) -> usize {
        BTreeSet::len(self)
    }
    fn contains(&self, sid: &Sid) -> bool {
        BTreeSet::contains(self, sid)
    }
    fn after(&self, after: Option<Sid>) -> Box<dyn Iterator<Item = Sid> + '_> {
        Box::new(self.range(bound(after)).copied())
    }
}

struct AllIds<'a>(&'a BTreeMap<Sid, Arc<Session>>);

impl IdSet for AllIds<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn contains(&self, sid: &Sid) -> bool {
        self.0.contains_key(sid)
    }
    fn after(&self, after: Option<Sid>) -> Box<dyn Iterator<Item = Sid> + '_> {
        Box::new(self.0.range(bound(after)).map(|(sid, _)| *sid))
    }
}
