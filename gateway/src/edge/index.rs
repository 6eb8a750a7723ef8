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

    /// Counts the socket among `user`'s unless the user has `most` sockets on this node
    /// already (`None`: no limit); false when it has. The count and the insertion are one
    /// step under the index's lock, so two sockets of one user admitted at once cannot
    /// both take the last place.
    pub(super) fn admit_user(&self, sid: Sid, user: &str, most: Option<usize>) -> bool {
        let mut inner = self.lock();
        if !inner.sockets.contains_key(&sid) {
            return true;
        }
        if let Some(most) = most {
            let held = inner
                .users
                .get(user)
                .map_or(0, |sids| sids.len() - usize::from(sids.contains(&sid)));
            if held >= most {
                return false;
            }
        }
        inner.users.entry(user.into()).or_default().insert(sid);
        true
    }

    /// Takes the socket out of `user`'s sockets.
    pub(super) fn forget_user(&self, sid: Sid, user: &str) {
        remove_member(&mut self.lock().users, user, sid);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ConnectionMeta;

    fn session(sid: Sid) -> Arc<Session> {
        Arc::new(Session::new(
            sid,
            None,
            ConnectionMeta::now("websocket", None),
            None,
            Arc::default(),
        ))
    }

    /// Six sockets, ids sorted: every one in `all`, the first three in `first`, the even
    /// ones authenticated as `even-user` and in `even`.
    fn index() -> (SocketIndex, Vec<Sid>) {
        let index = SocketIndex::default();
        let mut sids: Vec<Sid> = (0..6).map(|_| Sid::new()).collect();
        sids.sort();
        for (i, sid) in sids.iter().enumerate() {
            index.insert(*sid, session(*sid), Shown::Unauthorized);
            index.join(*sid, "all");
            if i < 3 {
                index.join(*sid, "first");
            }
            if i % 2 == 0 {
                index.set_state(*sid, Shown::Unauthorized, Shown::Authenticated);
                index.set_user(*sid, "even-user");
                index.join(*sid, "even");
            }
        }
        (index, sids)
    }

    fn ids(page: &Page<Arc<Session>>) -> Vec<Sid> {
        page.items.iter().map(|s| s.sid).collect()
    }

    #[test]
    fn sockets_are_paged_in_id_order_with_exact_totals() {
        let (index, sids) = index();
        let first = index.sockets(SocketFilter::default(), None, 4);
        assert_eq!(ids(&first), sids[..4]);
        assert!(first.more);
        assert_eq!(first.matched, 6);
        let rest = index.sockets(SocketFilter::default(), Some(sids[3]), 4);
        assert_eq!(ids(&rest), sids[4..]);
        assert!(!rest.more);
    }

    #[test]
    fn filters_combine() {
        let (index, sids) = index();
        let filter = |room, user, state| SocketFilter { room, user, state };
        let even = index.sockets(filter(Some("even"), None, None), None, 10);
        assert_eq!(ids(&even), [sids[0], sids[2], sids[4]]);
        let first_and_authenticated = index.sockets(
            filter(Some("first"), None, Some(Shown::Authenticated)),
            None,
            1,
        );
        assert_eq!(ids(&first_and_authenticated), [sids[0]]);
        assert_eq!(first_and_authenticated.matched, 2);
        assert!(first_and_authenticated.more);
        let by_user = index.sockets(filter(None, Some("even-user"), None), Some(sids[0]), 10);
        assert_eq!(ids(&by_user), [sids[2], sids[4]]);
        let nobody = index.sockets(filter(Some("nowhere"), None, None), None, 10);
        assert!(nobody.items.is_empty() && nobody.matched == 0 && !nobody.more);
        let unauthorized = index.sockets(filter(None, None, Some(Shown::Unauthorized)), None, 10);
        assert_eq!(ids(&unauthorized), [sids[1], sids[3], sids[5]]);
    }

    #[test]
    fn a_user_gets_at_most_its_places_even_when_admitted_at_once() {
        let index = Arc::new(SocketIndex::default());
        let sids: Vec<Sid> = (0..8).map(|_| Sid::new()).collect();
        for sid in &sids {
            index.insert(*sid, session(*sid), Shown::Authenticating);
        }
        let admitted: usize = std::thread::scope(|scope| {
            let racers: Vec<_> = sids
                .iter()
                .map(|sid| {
                    let index = index.clone();
                    scope.spawn(move || index.admit_user(*sid, "u", Some(3)))
                })
                .collect();
            racers
                .into_iter()
                .map(|r| usize::from(r.join().unwrap()))
                .sum()
        });
        assert_eq!(admitted, 3);
        let held: Vec<Sid> = sids
            .iter()
            .copied()
            .filter(|sid| index.lock().users["u"].contains(sid))
            .collect();
        assert!(index.admit_user(held[0], "u", Some(3)), "counted once");
        let refused = sids.iter().find(|sid| !held.contains(sid)).unwrap();
        assert!(!index.admit_user(*refused, "u", Some(3)));
        assert!(index.admit_user(*refused, "other", Some(3)), "per user");
        index.forget_user(held[0], "u");
        assert!(
            index.admit_user(*refused, "u", Some(3)),
            "a place given back"
        );
        assert!(index.admit_user(sids[7], "u", None), "no limit");
    }

    #[test]
    fn counts_and_rooms_follow_changes() {
        let (index, sids) = index();
        let counts = index.counts();
        assert_eq!(
            (counts.unauthorized, counts.authenticated, counts.total()),
            (3, 3, 6)
        );
        let rooms = index.rooms("", "", 10);
        let names: Vec<_> = rooms.items.iter().map(|(n, m)| (n.as_str(), *m)).collect();
        assert_eq!(names, [("all", 6), ("even", 3), ("first", 3)]);
        let after = index.rooms("", "all", 1);
        assert_eq!(after.items[0].0, "even");
        assert!(after.more);
        assert_eq!(after.matched, 3);
        let prefixed = index.rooms("fi", "", 10);
        assert_eq!((prefixed.items.len(), prefixed.matched), (1, 1));

        let (even, first, all) = (Arc::from("even"), Arc::from("first"), Arc::from("all"));
        index.remove(
            sids[0],
            Shown::Authenticated,
            Some("even-user"),
            [&even, &first, &all],
        );
        index.leave(sids[2], "even");
        index.leave(sids[4], "even");
        assert_eq!(index.room_count(), 2, "a room goes with its last member");
        assert!(index.get(sids[0]).is_none());
        assert_eq!(index.counts().authenticated, 2);
        let user = SocketFilter {
            user: Some("even-user"),
            ..SocketFilter::default()
        };
        assert_eq!(ids(&index.sockets(user, None, 10)), [sids[2], sids[4]]);
        assert_eq!(index.not_authenticated().len(), 3);
    }
}
