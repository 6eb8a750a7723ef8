use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, RwLock, Weak},
    time::Duration,
};

use futures_util::future::{self, Either};
use serde::Serialize;

use crate::{
    ProtocolVersion, SocketError, SocketIoConfig,
    ack::AckInnerStream,
    adapter::Adapter,
    client::SocketData,
    errors::{ConnectFail, Error},
    handler::{BoxedConnectHandler, ConnectHandler, MakeErasedHandler},
    parser::Parser,
    resolver::{ConnectRequest, ConnectResolver, Resolution},
    socket::{DisconnectReason, Socket},
};
use socketioxide_core::{
    Sid, Str, Uid, Value,
    adapter::{BroadcastIter, CoreLocalAdapter, RemoteSocketData, SocketEmitter},
    packet::{Packet, PacketData},
    parser::Parse,
};

/// A [`Namespace`] constructor used for dynamic namespaces
/// A namespace constructor only hold a common handler that will be cloned
/// to the instantiated namespaces.
pub struct NamespaceCtr<A: Adapter> {
    handler: BoxedConnectHandler<A>,
}
pub struct Namespace<A: Adapter> {
    pub path: Str,
    pub(crate) adapter: Arc<A>,
    parser: Parser,
    handler: BoxedConnectHandler<A>,
    /// The sockets of this namespace, by socket id.
    sockets: RwLock<HashMap<Sid, Arc<Socket<A>>>>,
    /// The id of the socket that each engine.io session has in this namespace, to route the
    /// packets and the disconnection of a session to its socket: a socket id is not the id
    /// of its engine.io session. An entry is added with the socket in [`Self::sockets`]
    /// and removed with it.
    engine_sockets: RwLock<HashMap<Sid, Sid>>,
    /// The engine.io sessions that are connecting to this namespace, but whose socket is not
    /// yet in [`Self::sockets`] because its middlewares are still running.
    connecting: Mutex<HashSet<Sid>>,
    /// With a connect resolver, the socket ids that are connecting to this namespace, but are
    /// not yet in [`Self::sockets`]: the resolver may give one id to two connections.
    connecting_ids: Mutex<HashSet<Sid>>,
    resolver: Option<ConnectResolver>,
}

/// Marks an id as connecting to a namespace until dropped.
struct ConnectingGuard<'a> {
    connecting: &'a Mutex<HashSet<Sid>>,
    id: Sid,
}
impl<'a> ConnectingGuard<'a> {
    /// Returns `None` if the engine.io session already has a socket connected or connecting to
    /// this namespace.
    fn session<A: Adapter>(ns: &'a Namespace<A>, engine_id: Sid) -> Option<Self> {
        Self::new(&ns.connecting, engine_id, || {
            ns.engine_sockets.read().unwrap().contains_key(&engine_id)
        })
    }

    /// Returns `None` if a socket with this id is connected or connecting to this namespace.
    fn socket<A: Adapter>(ns: &'a Namespace<A>, sid: Sid) -> Option<Self> {
        Self::new(&ns.connecting_ids, sid, || {
            ns.sockets.read().unwrap().contains_key(&sid)
        })
    }

    fn new(
        connecting: &'a Mutex<HashSet<Sid>>,
        id: Sid,
        connected: impl FnOnce() -> bool,
    ) -> Option<Self> {
        let mut set = connecting.lock().unwrap();
        // A socket is inserted in `sockets` and `engine_sockets` before its guards are dropped,
        // so its ids are always found in one of them when the connection is in progress or done.
        if connected() || !set.insert(id) {
            return None;
        }
        Some(Self { connecting, id })
    }
}
impl Drop for ConnectingGuard<'_> {
    fn drop(&mut self) {
        self.connecting.lock().unwrap().remove(&self.id);
    }
}

/// The payload of a CONNECT reply to a protocol v5 client.
#[derive(Serialize)]
struct ConnectReply<'a> {
    sid: Sid,
    /// The private session id of connection state recovery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<&'a str>,
}

/// The payload of a CONNECT reply: none for protocol v4.
fn connect_reply(
    parser: Parser,
    protocol: ProtocolVersion,
    sid: Sid,
    pid: Option<&str>,
) -> Option<Value> {
    match protocol {
        ProtocolVersion::V5 => Some(parser.encode_default(&ConnectReply { sid, pid }).unwrap()),
        ProtocolVersion::V4 => None,
    }
}

/// ===== impl NamespaceCtr =====
impl<A: Adapter> NamespaceCtr<A> {
    pub fn new<C, T>(handler: C) -> Self
    where
        C: ConnectHandler<A, T> + Send + Sync + 'static,
        T: Send + Sync + 'static,
    {
        Self {
            handler: MakeErasedHandler::new_ns_boxed(handler),
        }
    }
    pub fn get_new_ns(
        &self,
        path: Str,
        adapter_state: &A::State,
        config: &SocketIoConfig,
    ) -> Arc<Namespace<A>> {
        let handler = self.handler.boxed_clone();
        Namespace::new_boxed(path, handler, adapter_state, config)
    }
}

impl<A: Adapter> Namespace<A> {
    pub(crate) fn new<C, T>(
        path: Str,
        handler: C,
        adapter_state: &A::State,
        config: &SocketIoConfig,
    ) -> Arc<Self>
    where
        C: ConnectHandler<A, T> + Send + Sync + 'static,
        T: Send + Sync + 'static,
    {
        let handler = MakeErasedHandler::new_ns_boxed(handler);
        Self::new_boxed(path, handler, adapter_state, config)
    }

    fn new_boxed(
        path: Str,
        handler: BoxedConnectHandler<A>,
        adapter_state: &A::State,
        config: &SocketIoConfig,
    ) -> Arc<Self> {
        let parser = config.parser;
        let ack_timeout = config.ack_timeout;
        let uid = config.server_id;
        Arc::new_cyclic(|ns| Self {
            path: path.clone(),
            handler,
            parser,
            sockets: HashMap::new().into(),
            engine_sockets: HashMap::new().into(),
            connecting: HashSet::new().into(),
            connecting_ids: HashSet::new().into(),
            resolver: config.connect_resolver.clone(),
            adapter: Arc::new(A::new(
                adapter_state,
                CoreLocalAdapter::new(Emitter::new(ns.clone(), parser, path, ack_timeout, uid)),
            )),
        })
    }

    /// Connects an engine.io session to a namespace, with a new socket.
    ///
    /// The socket gets a new id: like in the reference implementation, a socket id is not the
    /// id of its engine.io session (`socket.id != socket.conn.id`). With a connect resolver,
    /// the resolver decides it (and the `pid` of the CONNECT reply) first; an id that is
    /// already connected or connecting is refused with a connect_error packet.
    ///
    /// Middlewares are first called to check if the connection is allowed.
    /// * If the handler returns an error, a connect_error packet is sent to the client.
    /// * If the handler returns Ok, a connect packet is sent to the client and the handler `is` called.
    ///
    /// A connect packet from a session already connected or connecting to this namespace is
    /// ignored. Otherwise it would run the handlers twice and leave the session with two sockets
    /// in this namespace.
    pub(crate) async fn connect(
        self: Arc<Self>,
        esocket: Arc<engineioxide::Socket<SocketData<A>>>,
        auth: Option<Value>,
    ) -> Result<(), ConnectFail> {
        let Some(_guard) = ConnectingGuard::session(&self, esocket.id) else {
            #[cfg(feature = "tracing")]
            tracing::debug!(engine_id = %esocket.id, ?self.path, "ignoring duplicate connect packet");
            return Err(ConnectFail);
        };
        let Some(resolution) = self.resolve(&esocket, &auth).await else {
            #[cfg(feature = "tracing")]
            tracing::debug!(engine_id = %esocket.id, ?self.path, "session closed while resolving");
            return Err(ConnectFail);
        };
        let sid = resolution.sid.unwrap_or_else(Sid::new);
        let _sid_guard = match self.resolver {
            None => None,
            Some(_) => match ConnectingGuard::socket(&self, sid) {
                Some(guard) => Some(guard),
                None => {
                    self.send_connect_error(&esocket, "session already connected");
                    return Err(ConnectFail);
                }
            },
        };
        let protocol: ProtocolVersion = esocket.protocol.into();
        let pid = resolution.pid.filter(|_| protocol == ProtocolVersion::V5);

        let socket: Arc<Socket<A>> =
            Socket::new(sid, self.clone(), esocket.clone(), self.parser, pid).into();

        if let Err(e) = self.handler.call_middleware(socket.clone(), &auth).await {
            #[cfg(feature = "tracing")]
            tracing::trace!(ns = self.path.as_str(), ?socket.id, "emitting connect_error packet");

            // user middleware code might have made the socket join some
            // room in the local/remote adapter. The socket never enters `self.sockets`,
            // so nothing else will ever clean it up.
            self.remove_socket(sid);

            let data = e.to_string();
            if let Err(_e) = socket.send(Packet::connect_error(self.path.clone(), data)) {
                #[cfg(feature = "tracing")]
                tracing::debug!(%sid, "error sending connect_error packet: {_e}, closing conn");

                esocket.close(engineioxide::DisconnectReason::PacketParsingError);
            }
            return Err(ConnectFail);
        }

        self.sockets.write().unwrap().insert(sid, socket.clone());
        self.engine_sockets.write().unwrap().insert(esocket.id, sid);
        #[cfg(feature = "tracing")]
        tracing::trace!(?socket.id, ?self.path, "socket added to namespace");

        let payload = connect_reply(self.parser, protocol, sid, socket.pid());
        if let Err(_e) = socket.send(Packet::connect(self.path.clone(), payload)) {
            #[cfg(feature = "tracing")]
            tracing::debug!(%sid, "error sending connect packet: {_e}, closing conn");

            self.remove_socket(sid);
            esocket.close(engineioxide::DisconnectReason::TransportError);
            return Err(ConnectFail);
        }

        socket.set_connected(true);
        self.handler.call(socket, auth);

        Ok(())
    }

    /// The socket id and `pid` the connect resolver gives the connection of `esocket`: a fresh
    /// id and no `pid` without a resolver. `None` if the session closes first (the resolver's
    /// future is then dropped).
    async fn resolve(
        &self,
        esocket: &Arc<engineioxide::Socket<SocketData<A>>>,
        auth: &Option<Value>,
    ) -> Option<Resolution> {
        let Some(resolver) = &self.resolver else {
            return Some(Resolution::fresh());
        };
        let req = ConnectRequest::new(
            self.path.clone(),
            auth.clone(),
            self.parser,
            esocket.clone(),
        );
        let closed = std::pin::pin!(esocket.closed());
        match future::select(resolver.resolve(req), closed).await {
            Either::Left((resolution, _)) if !esocket.is_closed() => Some(resolution),
            _ => None,
        }
    }

    /// Sends a connect_error packet for this namespace on an engine.io session that has no
    /// socket in it.
    fn send_connect_error(&self, esocket: &engineioxide::Socket<SocketData<A>>, message: &str) {
        let packet = Packet::connect_error(self.path.clone(), message);
        let sent = match self.parser.encode(packet) {
            Value::Str(packet, _) => esocket.emit(packet).is_ok(),
            Value::Bytes(packet) => esocket.emit_binary(packet).is_ok(),
        };
        if !sent {
            #[cfg(feature = "tracing")]
            tracing::debug!(engine_id = %esocket.id, "could not send a connect_error packet");
        }
    }

    /// Removes a socket from a namespace
    pub fn remove_socket(&self, sid: Sid) {
        #[cfg(feature = "tracing")]
        tracing::trace!(?sid, ?self.path, "removing socket from namespace");

        let socket = self.sockets.write().unwrap().remove(&sid);
        if let Some(socket) = socket {
            let mut engine_sockets = self.engine_sockets.write().unwrap();
            if engine_sockets.get(&socket.engine_id()) == Some(&sid) {
                engine_sockets.remove(&socket.engine_id());
            }
        }
        self.adapter.get_local().del_all(sid);
    }

    pub fn has(&self, sid: Sid) -> bool {
        self.sockets.read().unwrap().values().any(|s| s.id == sid)
    }

    /// Handles a packet received from the engine.io session `engine_id`: it goes to the socket
    /// of that session in this namespace.
    pub fn recv(&self, engine_id: Sid, packet: PacketData) -> Result<(), Error> {
        match packet {
            PacketData::Connect(_) => unreachable!("connect packets should be handled before"),
            PacketData::ConnectError(_) => Err(Error::InvalidPacketType),
            packet => self.get_engine_socket(engine_id)?.recv(packet),
        }
    }

    /// The socket of the engine.io session `engine_id` in this namespace.
    pub fn get_engine_socket(&self, engine_id: Sid) -> Result<Arc<Socket<A>>, Error> {
        let sid = self.engine_sockets.read().unwrap().get(&engine_id).copied();
        sid.ok_or(Error::SocketGone(engine_id))
            .and_then(|sid| self.get_socket(sid))
    }

    pub fn get_socket(&self, sid: Sid) -> Result<Arc<Socket<A>>, Error> {
        self.sockets
            .read()
            .unwrap()
            .get(&sid)
            .cloned()
            .ok_or(Error::SocketGone(sid))
    }

    pub fn get_sockets(&self) -> Vec<Arc<Socket<A>>> {
        self.sockets.read().unwrap().values().cloned().collect()
    }

    /// Closes the entire namespace :
    /// * Closes the adapter
    /// * Closes all the sockets and
    ///   their underlying connections in case of [`DisconnectReason::ClosingServer`]
    /// * Removes all the sockets from the namespace
    ///
    /// This function is using .await points only when called with [`DisconnectReason::ClosingServer`]
    pub async fn close(&self, reason: DisconnectReason) {
        use futures_util::future;
        let sockets = self.sockets.read().unwrap().clone();

        #[cfg(feature = "tracing")]
        tracing::debug!(?self.path, "closing {} sockets in namespace", sockets.len());

        if reason == DisconnectReason::ClosingServer {
            // When closing the underlying transport, this will indirectly close the socket
            // Therefore there is no need to manually call `s.close()`.
            future::join_all(sockets.values().map(|s| s.close_underlying_transport())).await;
        } else {
            for s in sockets.into_values() {
                let _sid = s.id;
                s.close(reason);
            }
        }
        #[cfg(feature = "tracing")]
        tracing::debug!(?self.path, "all sockets in namespace closed");

        let _err = self.adapter.close().await;
        #[cfg(feature = "tracing")]
        if let Err(err) = _err {
            tracing::debug!(?err, ?self.path, "could not close adapter");
        }
    }
}

/// A type erased emitter to discard the adapter type parameter `A`.
/// Otherwise it creates a cyclic dependency between the namespace, the emitter and the adapter.
trait InnerEmitter: Send + Sync + 'static {
    /// Get the remote socket data from the socket ids.
    fn get_remote_sockets(&self, sids: BroadcastIter<'_>, uid: Uid) -> Vec<RemoteSocketData>;
    /// Get all the socket ids in the namespace.
    fn get_all_sids(&self, filter: &dyn Fn(&Sid) -> bool) -> Vec<Sid>;
    /// Send data to the list of socket ids.
    fn send_many(&self, sids: BroadcastIter<'_>, data: Value) -> Result<(), Vec<SocketError>>;
    /// Send data to the list of socket ids with volatile semantics.
    /// Errors are silently discarded.
    fn send_many_volatile(&self, sids: BroadcastIter<'_>, data: Value);
    /// Send data to the list of socket ids and get a stream of acks.
    fn send_many_with_ack(
        &self,
        sids: BroadcastIter<'_>,
        packet: Packet,
        timeout: Duration,
    ) -> (AckInnerStream, u32);
    /// Disconnect all the sockets in the list.
    fn disconnect_many(&self, sids: Vec<Sid>) -> Result<(), Vec<SocketError>>;
}

impl<A: Adapter> InnerEmitter for Namespace<A> {
    fn get_remote_sockets(&self, sids: BroadcastIter<'_>, uid: Uid) -> Vec<RemoteSocketData> {
        let sockets = self.sockets.read().unwrap();
        sids.filter_map(|sid| sockets.get(&sid))
            .map(|socket| RemoteSocketData {
                id: socket.id,
                ns: self.path.clone(),
                server_id: uid,
            })
            .collect()
    }
    fn get_all_sids(&self, filter: &dyn Fn(&Sid) -> bool) -> Vec<Sid> {
        self.sockets
            .read()
            .unwrap()
            .keys()
            .filter(|id| filter(id))
            .copied()
            .collect()
    }

    fn send_many(&self, sids: BroadcastIter<'_>, data: Value) -> Result<(), Vec<SocketError>> {
        let sockets = self.sockets.read().unwrap();
        let errs: Vec<SocketError> = sids
            .filter_map(|sid| sockets.get(&sid))
            .filter_map(|socket| socket.send_raw(data.clone()).err())
            .collect();
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }

    fn send_many_volatile(&self, sids: BroadcastIter<'_>, data: Value) {
        let sockets = self.sockets.read().unwrap();
        sids.filter_map(|sid| sockets.get(&sid))
            .for_each(|socket| socket.send_raw_volatile(data.clone()));
    }

    fn send_many_with_ack(
        &self,
        sids: BroadcastIter<'_>,
        packet: Packet,
        timeout: Duration,
    ) -> (AckInnerStream, u32) {
        let sockets_map = self.sockets.read().unwrap();
        let sockets = sids.filter_map(|sid| sockets_map.get(&sid));
        AckInnerStream::broadcast(packet, sockets, timeout)
    }

    fn disconnect_many(&self, sids: Vec<Sid>) -> Result<(), Vec<SocketError>> {
        if sids.is_empty() {
            return Ok(());
        }
        // Here we can't take a ref because this would cause a deadlock.
        // Ideally the disconnect / closing process should be refactored to avoid this.
        let sockets = {
            let sock_map = self.sockets.read().unwrap();
            sids.into_iter()
                .filter_map(|sid| sock_map.get(&sid))
                .cloned()
                .collect::<Vec<_>>()
        };

        let errs = sockets
            .into_iter()
            .filter_map(|socket| socket.disconnect().err())
            .collect::<Vec<_>>();
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }
}

/// Internal interface implementor to apply global operations on a namespace.
#[doc(hidden)]
pub struct Emitter {
    /// This `Weak<dyn>` allows to break the cyclic dependency between the namespace and the emitter.
    ns: Weak<dyn InnerEmitter>,
    parser: Parser,
    path: Str,
    ack_timeout: Duration,
    uid: Uid,
}

impl Emitter {
    fn new<A: Adapter>(
        ns: Weak<Namespace<A>>,
        parser: Parser,
        path: Str,
        ack_timeout: Duration,
        uid: Uid,
    ) -> Self {
        Self {
            ns,
            parser,
            path,
            ack_timeout,
            uid,
        }
    }
}

impl SocketEmitter for Emitter {
    type AckError = crate::AckError;
    type AckStream = AckInnerStream;

    fn get_all_sids(&self, filter: impl Fn(&Sid) -> bool) -> Vec<Sid> {
        self.ns
            .upgrade()
            .map(|ns| ns.get_all_sids(&filter))
            .unwrap_or_default()
    }
    fn get_remote_sockets(&self, sids: BroadcastIter<'_>) -> Vec<RemoteSocketData> {
        self.ns
            .upgrade()
            .map(|ns| ns.get_remote_sockets(sids, self.uid))
            .unwrap_or_default()
    }

    fn send_many(&self, sids: BroadcastIter<'_>, data: Value) -> Result<(), Vec<SocketError>> {
        match self.ns.upgrade() {
            Some(ns) => ns.send_many(sids, data),
            None => Ok(()),
        }
    }

    fn send_many_volatile(&self, sids: BroadcastIter<'_>, data: Value) {
        if let Some(ns) = self.ns.upgrade() {
            ns.send_many_volatile(sids, data);
        }
    }

    fn send_many_with_ack(
        &self,
        sids: BroadcastIter<'_>,
        packet: Packet,
        timeout: Option<Duration>,
    ) -> (Self::AckStream, u32) {
        self.ns
            .upgrade()
            .map(|ns| ns.send_many_with_ack(sids, packet, timeout.unwrap_or(self.ack_timeout)))
            .unwrap_or((AckInnerStream::empty(), 0))
    }

    fn disconnect_many(&self, sids: Vec<Sid>) -> Result<(), Vec<SocketError>> {
        match self.ns.upgrade() {
            Some(ns) => ns.disconnect_many(sids),
            None => Ok(()),
        }
    }
    fn parser(&self) -> impl Parse {
        self.parser
    }
    fn server_id(&self) -> Uid {
        self.uid
    }
    fn path(&self) -> &Str {
        &self.path
    }
    fn ack_timeout(&self) -> Duration {
        self.ack_timeout
    }
}

#[doc(hidden)]
#[cfg(feature = "__test_harness")]
impl Namespace<crate::adapter::LocalAdapter> {
    pub fn new_dummy<const S: usize>(sockets: [Sid; S]) -> Arc<Self> {
        let ns = Namespace::new("/".into(), async || (), &(), &SocketIoConfig::default());
        for sid in sockets {
            ns.sockets
                .write()
                .unwrap()
                .insert(sid, Socket::new_dummy(sid, ns.clone()).into());
            ns.engine_sockets.write().unwrap().insert(sid, sid);
        }
        ns
    }

    pub fn clean_dummy_sockets(&self) {
        self.sockets.write().unwrap().clear();
        self.engine_sockets.write().unwrap().clear();
    }
}

impl<A: Adapter> std::fmt::Debug for Namespace<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("path", &self.path)
            .field("sockets", &self.sockets)
            .finish()
    }
}

#[cfg(feature = "tracing")]
impl<A: Adapter> Drop for Namespace<A> {
    fn drop(&mut self) {
        #[cfg(feature = "tracing")]
        tracing::debug!("dropping namespace {}", self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{adapter::LocalAdapter, extract::SocketRef, handler::ConnectHandler};
    use engineioxide::Socket as EIoSocket;
    use socketioxide_core::adapter::CoreAdapter;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::Notify;

    #[tokio::test]
    async fn rejected_middleware_cleans_up_joined_rooms() {
        let joined = Arc::new(Mutex::new(None));
        let ns = Namespace::<LocalAdapter>::new(
            Str::from("/"),
            { async || () }.with({
                let joined = joined.clone();
                async move |s: SocketRef| {
                    s.join("room1");
                    *joined.lock().unwrap() = Some(s.id);
                    Err::<(), _>(std::io::Error::other("rejected"))
                }
            }),
            &(),
            &SocketIoConfig::default(),
        );
        let esocket = EIoSocket::new_dummy(Sid::new(), Box::new(|_, _| ()));

        assert!(ns.clone().connect(esocket, None).await.is_err());
        let sid = joined.lock().unwrap().expect("the middleware ran");
        assert!(ns.adapter.get_local().socket_rooms(sid).is_empty());
        assert!(ns.engine_sockets.read().unwrap().is_empty());
    }

    /// Create a namespace counting the calls of its middleware.
    /// The middleware joins `room1` on its first call, then rejects the following ones.
    fn counting_ns(calls: Arc<AtomicUsize>) -> Arc<Namespace<LocalAdapter>> {
        Namespace::<LocalAdapter>::new(
            Str::from("/"),
            { async || () }.with(async move |s: SocketRef| {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    s.join("room1");
                    Ok(())
                } else {
                    Err(std::io::Error::other("rejected"))
                }
            }),
            &(),
            &SocketIoConfig::default(),
        )
    }

    #[tokio::test]
    async fn duplicate_connect_keeps_the_first_socket() {
        let engine_id = Sid::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let ns = counting_ns(calls.clone());
        let esocket = EIoSocket::new_dummy(engine_id, Box::new(|_, _| ()));

        assert!(ns.clone().connect(esocket.clone(), None).await.is_ok());
        let socket = ns.get_engine_socket(engine_id).unwrap();

        assert!(ns.clone().connect(esocket, None).await.is_err());

        // The middleware would have rejected the second connection and removed the socket rooms.
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(Arc::ptr_eq(
            &socket,
            &ns.get_engine_socket(engine_id).unwrap()
        ));
        assert!(Arc::ptr_eq(&socket, &ns.get_socket(socket.id).unwrap()));
        assert_eq!(ns.get_sockets().len(), 1);
        assert_eq!(ns.adapter.get_local().socket_rooms(socket.id).len(), 1);
    }

    /// The socket only enters the namespace after its middleware:
    /// a duplicate can be received while the first connection is still pending.
    #[tokio::test]
    async fn duplicate_connect_during_pending_middleware_is_ignored() {
        let engine_id = Sid::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let ns = Namespace::<LocalAdapter>::new(
            Str::from("/"),
            { async || () }.with({
                let (calls, started, release) = (calls.clone(), started.clone(), release.clone());
                async move || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    started.notify_one();
                    release.notified().await;
                    Ok::<_, std::io::Error>(())
                }
            }),
            &(),
            &SocketIoConfig::default(),
        );
        let esocket = EIoSocket::new_dummy(engine_id, Box::new(|_, _| ()));

        let first = tokio::spawn(ns.clone().connect(esocket.clone(), None));
        started.notified().await;

        // Without a timeout, a duplicate waiting on the pending middleware would block this test.
        let duplicate = ns.clone().connect(esocket, None);
        let duplicate = tokio::time::timeout(Duration::from_millis(100), duplicate);
        assert!(duplicate.await.expect("should not wait").is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(ns.get_engine_socket(engine_id).is_err());

        release.notify_one();
        assert!(first.await.unwrap().is_ok());
        assert!(ns.get_engine_socket(engine_id).is_ok());
        assert_eq!(ns.get_sockets().len(), 1);
    }

    #[tokio::test]
    async fn connect_again_after_socket_removal() {
        let engine_id = Sid::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let ns = Namespace::<LocalAdapter>::new(
            Str::from("/"),
            { async || () }.with({
                let calls = calls.clone();
                async move || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, std::io::Error>(())
                }
            }),
            &(),
            &SocketIoConfig::default(),
        );
        let esocket = EIoSocket::new_dummy(engine_id, Box::new(|_, _| ()));

        assert!(ns.clone().connect(esocket.clone(), None).await.is_ok());
        let first = ns.get_engine_socket(engine_id).unwrap();
        ns.remove_socket(first.id);
        assert!(ns.get_engine_socket(engine_id).is_err());

        assert!(ns.clone().connect(esocket, None).await.is_ok());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        let second = ns.get_engine_socket(engine_id).unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
        assert_ne!(first.id, second.id);
    }

    #[tokio::test]
    async fn connect_again_after_rejected_middleware() {
        let calls = Arc::new(AtomicUsize::new(0));
        let ns = Namespace::<LocalAdapter>::new(
            Str::from("/"),
            { async || () }.with({
                let calls = calls.clone();
                async move || {
                    if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                        Err(std::io::Error::other("rejected"))
                    } else {
                        Ok(())
                    }
                }
            }),
            &(),
            &SocketIoConfig::default(),
        );
        let esocket = EIoSocket::new_dummy(Sid::new(), Box::new(|_, _| ()));

        assert!(ns.clone().connect(esocket.clone(), None).await.is_err());
        assert!(ns.clone().connect(esocket, None).await.is_ok());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    /// A namespace whose sockets send the id of the socket that received an `echo` event.
    fn echo_ns(tx: tokio::sync::mpsc::UnboundedSender<Sid>) -> Arc<Namespace<LocalAdapter>> {
        Namespace::<LocalAdapter>::new(
            Str::from("/"),
            // In a middleware: the connect handler runs in a task of its own.
            { async || () }.with(async move |s: SocketRef| {
                let tx = tx.clone();
                s.on("echo", async move |s: SocketRef| tx.send(s.id).unwrap());
                Ok::<_, std::io::Error>(())
            }),
            &(),
            &SocketIoConfig::default(),
        )
    }

    fn echo_packet() -> PacketData {
        let value = Parser::default().encode_value(&(), Some("echo")).unwrap();
        PacketData::Event(value, None)
    }

    #[tokio::test]
    async fn a_socket_id_is_not_its_engine_id() {
        let ns = counting_ns(Arc::new(AtomicUsize::new(0)));
        let engine_id = Sid::new();
        let esocket = EIoSocket::new_dummy(engine_id, Box::new(|_, _| ()));

        assert!(ns.clone().connect(esocket, None).await.is_ok());
        let socket = ns.get_engine_socket(engine_id).unwrap();
        assert_ne!(socket.id, engine_id);
        assert_eq!(socket.engine_id(), engine_id);
        assert!(Arc::ptr_eq(&socket, &ns.get_socket(socket.id).unwrap()));
        assert!(ns.get_socket(engine_id).is_err());
        // Rooms are kept by socket id.
        assert_eq!(ns.adapter.get_local().socket_rooms(socket.id).len(), 1);
        assert!(ns.adapter.get_local().socket_rooms(engine_id).is_empty());
    }

    #[tokio::test]
    async fn packets_are_routed_from_the_engine_session_to_its_socket() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let ns = echo_ns(tx);
        let engine_ids = [Sid::new(), Sid::new()];
        for engine_id in engine_ids {
            let esocket = EIoSocket::new_dummy(engine_id, Box::new(|_, _| ()));
            assert!(ns.clone().connect(esocket, None).await.is_ok());
        }

        for engine_id in engine_ids.into_iter().rev() {
            let socket = ns.get_engine_socket(engine_id).unwrap();
            ns.recv(engine_id, echo_packet()).unwrap();
            assert_eq!(rx.recv().await, Some(socket.id));
        }
        // A session without a socket in the namespace: as when its socket is gone.
        let unknown = Sid::new();
        let err = ns.recv(unknown, echo_packet()).unwrap_err();
        assert!(matches!(err, Error::SocketGone(sid) if sid == unknown));
    }

    #[tokio::test]
    async fn a_removed_socket_leaves_no_route() {
        let ns = counting_ns(Arc::new(AtomicUsize::new(0)));
        let engine_id = Sid::new();
        let esocket = EIoSocket::new_dummy(engine_id, Box::new(|_, _| ()));
        assert!(ns.clone().connect(esocket, None).await.is_ok());
        let socket = ns.get_engine_socket(engine_id).unwrap();

        socket.close(DisconnectReason::ClientNSDisconnect);
        assert!(ns.get_engine_socket(engine_id).is_err());
        assert!(ns.engine_sockets.read().unwrap().is_empty());
        assert!(ns.get_sockets().is_empty());
    }

    /// A namespace whose resolver gives `resolution` to every connection, with the middleware
    /// of [`counting_ns`].
    fn resolving_ns(
        resolution: Resolution,
        calls: Arc<AtomicUsize>,
    ) -> Arc<Namespace<LocalAdapter>> {
        let config = SocketIoConfig {
            connect_resolver: Some(ConnectResolver::new(move |_| {
                let resolution = resolution.clone();
                async move { resolution }
            })),
            ..Default::default()
        };
        Namespace::<LocalAdapter>::new(
            Str::from("/"),
            { async || () }.with(async move |s: SocketRef| {
                calls.fetch_add(1, Ordering::SeqCst);
                s.join("room1");
                Ok::<_, std::io::Error>(())
            }),
            &(),
            &config,
        )
    }

    /// An engine.io session, and the text packets it sends to its client.
    fn piped_session() -> (
        Arc<EIoSocket<SocketData<LocalAdapter>>>,
        tokio::sync::mpsc::Receiver<engineioxide::Packet>,
    ) {
        EIoSocket::new_dummy_piped(Sid::new(), Box::new(|_, _| ()), 16)
    }

    async fn next_message(rx: &mut tokio::sync::mpsc::Receiver<engineioxide::Packet>) -> String {
        match rx.recv().await {
            Some(engineioxide::Packet::Message(msg)) => msg.as_str().to_owned(),
            other => panic!("expected a message, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_resolver_gives_a_fresh_id_and_no_pid() {
        let ns = resolving_ns(Resolution::fresh(), Arc::new(AtomicUsize::new(0)));
        let (esocket, mut rx) = piped_session();

        assert!(ns.clone().connect(esocket.clone(), None).await.is_ok());
        let socket = ns.get_engine_socket(esocket.id).unwrap();
        assert_ne!(socket.id, esocket.id);
        assert_eq!(socket.pid(), None);
        assert_eq!(
            next_message(&mut rx).await,
            format!(r#"0{{"sid":"{}"}}"#, socket.id)
        );
    }

    #[tokio::test]
    async fn a_resolver_restores_an_id_and_gives_a_pid() {
        let sid = Sid::new();
        let resolution = Resolution::restored(sid).with_pid("private");
        let calls = Arc::new(AtomicUsize::new(0));
        let ns = resolving_ns(resolution, calls.clone());
        let (esocket, mut rx) = piped_session();

        assert!(ns.clone().connect(esocket.clone(), None).await.is_ok());
        let socket = ns.get_socket(sid).unwrap();
        assert!(Arc::ptr_eq(
            &socket,
            &ns.get_engine_socket(esocket.id).unwrap()
        ));
        assert_eq!(socket.engine_id(), esocket.id);
        assert_eq!(socket.pid(), Some("private"));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(ns.adapter.get_local().socket_rooms(sid).len(), 1);
        let reply = next_message(&mut rx).await;
        assert_eq!(reply, format!(r#"0{{"sid":"{sid}","pid":"private"}}"#));
    }

    #[tokio::test]
    async fn a_restored_id_already_connected_is_refused_before_the_middlewares() {
        let sid = Sid::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let ns = resolving_ns(Resolution::restored(sid), calls.clone());
        let (first, _first_rx) = piped_session();
        assert!(ns.clone().connect(first.clone(), None).await.is_ok());
        let socket = ns.get_socket(sid).unwrap();

        let (second, mut rx) = piped_session();
        assert!(ns.clone().connect(second.clone(), None).await.is_err());
        assert_eq!(
            next_message(&mut rx).await,
            r#"4{"message":"session already connected"}"#
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // The connected socket is untouched, the refused session has none.
        assert!(Arc::ptr_eq(&socket, &ns.get_socket(sid).unwrap()));
        assert_eq!(ns.adapter.get_local().socket_rooms(sid).len(), 1);
        assert!(ns.get_engine_socket(second.id).is_err());
        assert!(ns.connecting_ids.lock().unwrap().is_empty());

        // Once the first socket is gone, the id can be restored again.
        socket.close(DisconnectReason::TransportClose);
        assert!(ns.clone().connect(second.clone(), None).await.is_ok());
        assert_eq!(ns.get_socket(sid).unwrap().engine_id(), second.id);
    }

    /// The resolver gives the same id to two sessions: the second one is refused while the
    /// middlewares of the first are still running.
    #[tokio::test]
    async fn a_restored_id_still_connecting_is_refused() {
        let sid = Sid::new();
        let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let config = SocketIoConfig {
            connect_resolver: Some(ConnectResolver::new(move |_| async move {
                Resolution::restored(sid)
            })),
            ..Default::default()
        };
        let ns = Namespace::<LocalAdapter>::new(
            Str::from("/"),
            { async || () }.with({
                let (started, release) = (started.clone(), release.clone());
                async move || {
                    started.notify_one();
                    release.notified().await;
                    Ok::<_, std::io::Error>(())
                }
            }),
            &(),
            &config,
        );
        let (first, _first_rx) = piped_session();
        let pending = tokio::spawn(ns.clone().connect(first.clone(), None));
        started.notified().await;

        let (second, _second_rx) = piped_session();
        let refused =
            tokio::time::timeout(Duration::from_millis(100), ns.clone().connect(second, None));
        assert!(refused.await.expect("should not wait").is_err());

        release.notify_one();
        assert!(pending.await.unwrap().is_ok());
        assert_eq!(ns.get_socket(sid).unwrap().engine_id(), first.id);
    }

    #[derive(Debug, serde::Deserialize, serde::Serialize, PartialEq)]
    struct Auth {
        pid: String,
    }

    #[tokio::test]
    async fn the_resolver_reads_the_connect_request() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let config = SocketIoConfig {
            connect_resolver: Some(ConnectResolver::new(move |req: ConnectRequest| {
                let seen = (
                    req.ns().to_owned(),
                    req.engine_id(),
                    req.protocol(),
                    req.auth::<Auth>(),
                );
                tx.send(seen).unwrap();
                async { Resolution::fresh() }
            })),
            ..Default::default()
        };
        let ns = Namespace::<LocalAdapter>::new(Str::from("/chat"), async || (), &(), &config);
        let parser = Parser::default();

        let (esocket, _rx) = piped_session();
        let auth = parser.encode_default(&Auth { pid: "abc".into() });
        assert!(
            ns.clone()
                .connect(esocket.clone(), Some(auth.unwrap()))
                .await
                .is_ok()
        );
        let (path, engine_id, protocol, auth) = rx.recv().await.unwrap();
        assert_eq!((path.as_str(), engine_id), ("/chat", esocket.id));
        assert_eq!(protocol, ProtocolVersion::V5);
        assert_eq!(auth.unwrap().unwrap(), Auth { pid: "abc".into() });

        let (esocket, _rx) = piped_session();
        assert!(ns.clone().connect(esocket, None).await.is_ok());
        assert!(rx.recv().await.unwrap().3.is_none(), "no auth payload");

        let (esocket, _rx) = piped_session();
        let auth = parser.encode_default(&[1, 2]);
        assert!(
            ns.clone()
                .connect(esocket, Some(auth.unwrap()))
                .await
                .is_ok()
        );
        assert!(
            rx.recv().await.unwrap().3.unwrap().is_err(),
            "auth of another shape"
        );
    }

    /// A resolver waiting for one session does not hold the connection of another one back.
    #[tokio::test]
    async fn a_pending_resolver_blocks_no_other_session() {
        let (slow, _slow_rx) = piped_session();
        let release = Arc::new(Notify::new());
        let config = SocketIoConfig {
            connect_resolver: Some(ConnectResolver::new({
                let (slow, release) = (slow.id, release.clone());
                move |req: ConnectRequest| {
                    let release = release.clone();
                    async move {
                        if req.engine_id() == slow {
                            release.notified().await;
                        }
                        Resolution::fresh()
                    }
                }
            })),
            ..Default::default()
        };
        let ns = Namespace::<LocalAdapter>::new(Str::from("/"), async || (), &(), &config);
        let pending = tokio::spawn(ns.clone().connect(slow.clone(), None));

        let (fast, _fast_rx) = piped_session();
        assert!(ns.clone().connect(fast.clone(), None).await.is_ok());
        assert!(ns.get_engine_socket(fast.id).is_ok());
        assert!(ns.get_engine_socket(slow.id).is_err());

        release.notify_one();
        assert!(pending.await.unwrap().is_ok());
        assert!(ns.get_engine_socket(slow.id).is_ok());
    }

    #[test]
    fn the_connect_reply_has_a_pid_for_v5_only() {
        let (parser, sid) = (Parser::default(), Sid::new());
        let reply = |protocol, pid| match connect_reply(parser, protocol, sid, pid) {
            Some(Value::Str(s, None)) => Some(s.as_str().to_owned()),
            None => None,
            other => panic!("unexpected reply {other:?}"),
        };
        let with_pid = format!(r#"{{"sid":"{sid}","pid":"p"}}"#);
        assert_eq!(reply(ProtocolVersion::V5, Some("p")), Some(with_pid));
        let without = format!(r#"{{"sid":"{sid}"}}"#);
        assert_eq!(reply(ProtocolVersion::V5, None), Some(without));
        assert_eq!(reply(ProtocolVersion::V4, Some("p")), None);
        assert_eq!(reply(ProtocolVersion::V4, None), None);
    }
}
