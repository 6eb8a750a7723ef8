//! [`ManagedClient`]: the authentication state machine, the subscriptions and the emits
//! (the connection itself is driven by `connection.rs`).

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    panic::AssertUnwindSafe,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::{FutureExt, future::BoxFuture};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};
use tracing::{debug, error, info, warn};

use super::{ClientOptions, connection, packet, recovery::Recovery, sync::Mutex};

/// The authentication state of the client, as the gateway sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientState {
    /// Not authenticated (also while disconnected).
    Unauthorized,
    /// `authenticate` sent, no answer yet.
    Authenticating,
    /// The gateway answered `authenticated`.
    Authenticated,
}

/// Connection and authentication, as one value to wait on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// Whether the Socket.IO connection is up.
    pub connected: bool,
    /// The authentication state.
    pub state: ClientState,
    /// Whether the last connection recovered its session (Socket.IO connection state
    /// recovery, socket.io-client's `socket.recovered`): the same socket id, rooms and
    /// identity at the gateway, and the events sent meanwhile received first. Kept after a
    /// disconnection until the next connection.
    pub recovered: bool,
}

/// Why the connection ended; `to_string()` gives socket.io-client's reason strings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DisconnectReason {
    /// `io client disconnect`: [`ManagedClient::disconnect`] or `shutdown`.
    ClientDisconnect,
    /// `io server disconnect`: the gateway disconnected the socket. `message` is the reason
    /// of the `force_disconnect` event it sent first, if any (`Disconnect` RPC).
    ServerDisconnect {
        /// The `force_disconnect` reason.
        message: Option<String>,
    },
    /// `ping timeout`: no heartbeat from the gateway in time.
    PingTimeout,
    /// `transport close`: the connection was closed.
    TransportClose,
    /// `transport error`: the connection failed.
    TransportError(String),
    /// `parse error`: the gateway sent something this client cannot read.
    ParseError(String),
}

impl DisconnectReason {
    pub(super) fn reconnects(&self) -> bool {
        !matches!(
            self,
            DisconnectReason::ClientDisconnect | DisconnectReason::ServerDisconnect { .. }
        )
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DisconnectReason::ClientDisconnect => "io client disconnect",
            DisconnectReason::ServerDisconnect { .. } => "io server disconnect",
            DisconnectReason::PingTimeout => "ping timeout",
            DisconnectReason::TransportClose => "transport close",
            DisconnectReason::TransportError(_) => "transport error",
            DisconnectReason::ParseError(_) => "parse error",
        })
    }
}

/// A failure reported to the error callback.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ClientError {
    /// The options cannot make a connection URL.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// The WebSocket could not be opened.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The gateway refused the Socket.IO connection (`connect_error`); not retried.
    #[error("connection refused by the gateway: {0}")]
    Refused(String),
    /// The handshake did not go as the protocol says.
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// Why an emit failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// The client is not connected.
    #[error("invalid socket client state to emit: not connected")]
    NotConnected,
    /// The topic is empty.
    #[error("topic is required to emit")]
    EmptyTopic,
    /// The data cannot be encoded as JSON.
    #[error("data cannot be encoded as JSON: {0}")]
    Encode(String),
    /// No ack within the timeout.
    #[error("no acknowledgement within {0:?}")]
    AckTimeout(Duration),
    /// The connection ended before the ack arrived.
    #[error("disconnected before the acknowledgement")]
    Disconnected,
}

/// An event received from the gateway.
#[derive(Clone)]
pub struct Event {
    /// The event name.
    pub name: String,
    /// Its arguments. A binary argument is a placeholder
    /// `{"_placeholder": true, "num": i}` that stands for `attachments[i]`. With
    /// connection state recovery on, an event the gateway can replay ends with its offset
    /// (a string), which stays here as socket.io-client leaves it in the arguments.
    pub args: Vec<Value>,
    /// The binary arguments, in order.
    pub attachments: Vec<bytes::Bytes>,
    ack: Option<Acknowledger>,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("name", &self.name)
            .field("args", &self.args)
            .field("attachments", &self.attachments.len())
            .field("wants_ack", &self.ack.is_some())
            .finish()
    }
}

impl Event {
    pub(super) fn new(
        name: String,
        args: Vec<Value>,
        attachments: Vec<bytes::Bytes>,
        ack: Option<Acknowledger>,
    ) -> Self {
        Event {
            name,
            args,
            attachments,
            ack,
        }
    }

    /// The first argument (`null` when there is none), what Ignis handlers receive.
    pub fn data(&self) -> &Value {
        self.args.first().unwrap_or(&Value::Null)
    }

    /// Whether the gateway waits for an acknowledgement (a `Send` in ack mode).
    pub fn wants_ack(&self) -> bool {
        self.ack.is_some()
    }

    /// Acknowledges with `args`. Only the first acknowledgement of an event is sent;
    /// returns whether this one was.
    pub fn ack(&self, args: Vec<Value>) -> bool {
        let Some(acknowledger) = &self.ack else {
            return false;
        };
        let Some(id) = acknowledger.id.lock().take() else {
            return false;
        };
        acknowledger.out.send(packet::ack(id, &args)).is_ok()
    }
}

/// Sends the acknowledgement of one received event, once.
#[derive(Clone)]
pub(super) struct Acknowledger {
    id: Arc<Mutex<Option<u64>>>,
    out: mpsc::UnboundedSender<String>,
}

impl Acknowledger {
    /// Acknowledges ack id `id` through the connection's outgoing queue `out`.
    pub(super) fn new(id: u64, out: mpsc::UnboundedSender<String>) -> Self {
        Acknowledger {
            id: Arc::new(Mutex::new(Some(id))),
            out,
        }
    }
}

type HandlerFn = dyn Fn(Event) -> BoxFuture<'static, Result<(), String>> + Send + Sync;

/// An event handler: an async function of the [`Event`] that may fail.
#[derive(Clone)]
pub struct Handler(pub(super) Arc<HandlerFn>);

impl Handler {
    /// Wraps `f`. Its error (any `Display`) is logged, as is a panic.
    pub fn new<F, Fut, E>(f: F) -> Self
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display,
    {
        Handler(Arc::new(move |event| {
            let future = f(event);
            async move { future.await.map_err(|e| e.to_string()) }.boxed()
        }))
    }
}

impl fmt::Debug for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Handler(..)")
    }
}

/// Identifies one subscribed handler, to remove it alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HandlerId(u64);

type Callback<T> = Arc<dyn Fn(T) + Send + Sync>;

#[derive(Default)]
struct Callbacks {
    connected: Option<Callback<()>>,
    disconnected: Option<Callback<DisconnectReason>>,
    error: Option<Callback<ClientError>>,
    authenticated: Option<Callback<Value>>,
    unauthenticated: Option<Callback<String>>,
}

/// Runs a lifecycle callback; a panic is logged, not propagated.
fn call<T>(name: &str, callback: Option<Callback<T>>, value: T) {
    if let Some(callback) = callback
        && std::panic::catch_unwind(AssertUnwindSafe(|| callback(value))).is_err()
    {
        error!(callback = name, "a socket.io client callback panicked");
    }
}

struct Connection {
    out: mpsc::UnboundedSender<String>,
    sid: String,
}

struct Driver {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

pub(super) struct Inner {
    pub(super) options: ClientOptions,
    callbacks: Mutex<Callbacks>,
    status: watch::Sender<Status>,
    connection: Mutex<Option<Connection>>,
    handlers: Mutex<HashMap<String, Vec<(HandlerId, Handler)>>>,
    next_handler: AtomicU64,
    pub(super) pending_acks: Mutex<HashMap<u64, oneshot::Sender<Vec<Value>>>>,
    next_ack: AtomicU64,
    driver: tokio::sync::Mutex<Option<Driver>>,
    recovery: Mutex<Recovery>,
}

/// Builds a [`ManagedClient`] with its lifecycle callbacks.
pub struct ManagedClientBuilder {
    options: ClientOptions,
    callbacks: Callbacks,
}

impl ManagedClientBuilder {
    /// Called when the Socket.IO connection is up (again).
    pub fn on_connected(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.callbacks.connected = Some(Arc::new(move |()| f()));
        self
    }

    /// Called when the connection ends, with the reason.
    pub fn on_disconnected(mut self, f: impl Fn(DisconnectReason) + Send + Sync + 'static) -> Self {
        self.callbacks.disconnected = Some(Arc::new(f));
        self
    }

    /// Called when a connection attempt fails.
    pub fn on_error(mut self, f: impl Fn(ClientError) + Send + Sync + 'static) -> Self {
        self.callbacks.error = Some(Arc::new(f));
        self
    }

    /// Called on `authenticated`, with its payload (`{id, time}`).
    pub fn on_authenticated(mut self, f: impl Fn(Value) + Send + Sync + 'static) -> Self {
        self.callbacks.authenticated = Some(Arc::new(f));
        self
    }

    /// Called on `unauthenticated`, with the gateway's message.
    pub fn on_unauthenticated(mut self, f: impl Fn(String) + Send + Sync + 'static) -> Self {
        self.callbacks.unauthenticated = Some(Arc::new(f));
        self
    }

    /// The client, not connected yet (see [`ManagedClient::connect`]).
    pub fn build(self) -> ManagedClient {
        let (status, _) = watch::channel(Status {
            connected: false,
            state: ClientState::Unauthorized,
            recovered: false,
        });
        ManagedClient {
            inner: Arc::new(Inner {
                options: self.options,
                callbacks: Mutex::new(self.callbacks),
                status,
                connection: Mutex::new(None),
                handlers: Mutex::new(HashMap::new()),
                next_handler: AtomicU64::new(1),
                pending_acks: Mutex::new(HashMap::new()),
                next_ack: AtomicU64::new(0),
                driver: tokio::sync::Mutex::new(None),
                recovery: Mutex::new(Recovery::default()),
            }),
        }
    }
}

/// A Socket.IO client that keeps its connection, authentication state and subscriptions
/// (see the [module documentation](super)). Clones share one connection. The connection
/// runs on its own task: dropping the handles does not end it, `disconnect` or `shutdown`
/// does.
#[derive(Clone)]
pub struct ManagedClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for ManagedClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedClient")
            .field("url", &self.inner.options.url)
            .field("status", &*self.inner.status.borrow())
            .finish()
    }
}

impl ManagedClient {
    /// Starts building a client with `options`.
    pub fn builder(options: ClientOptions) -> ManagedClientBuilder {
        ManagedClientBuilder {
            options,
            callbacks: Callbacks::default(),
        }
    }

    /// Replaces the connected callback (handy when it needs the client itself).
    pub fn set_on_connected(&self, f: impl Fn() + Send + Sync + 'static) {
        self.inner.callbacks.lock().connected = Some(Arc::new(move |()| f()));
    }

    /// The authentication state.
    pub fn state(&self) -> ClientState {
        self.inner.status.borrow().state
    }

    /// Whether the Socket.IO connection is up.
    pub fn is_connected(&self) -> bool {
        self.inner.status.borrow().connected
    }

    /// The socket id the gateway gave this connection.
    pub fn socket_id(&self) -> Option<String> {
        self.inner.connection.lock().as_ref().map(|c| c.sid.clone())
    }

    /// Whether the last connection recovered its session ([`Status::recovered`]).
    pub fn recovered(&self) -> bool {
        self.inner.status.borrow().recovered
    }

    /// Connection and state changes, to wait on.
    pub fn watch_status(&self) -> watch::Receiver<Status> {
        self.inner.status.subscribe()
    }

    /// Waits until the state is `state` (and, for a state other than `Unauthorized`,
    /// connected); false if `timeout` passed first.
    pub async fn wait_for_state(&self, state: ClientState, timeout: Duration) -> bool {
        self.wait_until(
            |s| s.state == state && (s.connected || state == ClientState::Unauthorized),
            timeout,
        )
        .await
    }

    /// Waits until `condition` holds for the status; false if `timeout` passed first.
    pub async fn wait_until(&self, condition: impl Fn(&Status) -> bool, timeout: Duration) -> bool {
        let mut status = self.inner.status.subscribe();
        tokio::time::timeout(timeout, status.wait_for(|s| condition(s)))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Starts connecting (and reconnecting, per the options) in the background; does
    /// nothing if the client is already connected or connecting. Needs a Tokio runtime.
    pub async fn connect(&self) {
        let mut driver = self.inner.driver.lock().await;
        if driver.as_ref().is_some_and(|d| !d.task.is_finished()) {
            debug!(url = %self.inner.options.url, "socket.io client already connecting or connected");
            return;
        }
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(connection::drive(self.inner.clone(), stopped));
        *driver = Some(Driver { stop, task });
    }

    /// Disconnects (`io client disconnect`) and stops reconnecting; returns once the
    /// disconnected callback has run. Does nothing when not connected.
    pub async fn disconnect(&self) {
        let driver = self.inner.driver.lock().await.take();
        if let Some(driver) = driver {
            let _ = driver.stop.send(());
            let _ = driver.task.await;
        }
    }

    /// Disconnects, removes every handler and callback, resets the state to
    /// `Unauthorized` and forgets the session to recover.
    pub async fn shutdown(&self) {
        self.inner.handlers.lock().clear();
        self.disconnect().await;
        *self.inner.callbacks.lock() = Callbacks::default();
        *self.inner.recovery.lock() = Recovery::default();
        self.inner.status.send_modify(|s| s.recovered = false);
        self.inner.set_state(ClientState::Unauthorized);
        info!(url = %self.inner.options.url, "socket.io client shut down");
    }

    /// Emits `authenticate` when connected and `Unauthorized` (state becomes
    /// `Authenticating`); otherwise logs a warning and does nothing. Returns whether it
    /// emitted.
    pub fn authenticate(&self) -> bool {
        let Some(out) = self.inner.out() else {
            warn!("cannot authenticate: not connected");
            return false;
        };
        let mut sent = false;
        self.inner.status.send_if_modified(|status| {
            if status.state != ClientState::Unauthorized {
                return false;
            }
            status.state = ClientState::Authenticating;
            sent = out.send(packet::event("authenticate", &[], None)).is_ok();
            true
        });
        if sent {
            info!("authentication requested");
        } else {
            warn!(state = ?self.state(), "cannot authenticate in this state");
        }
        sent
    }

    /// Subscribes `handler` to `event`, unless `event` already has a handler (duplicate
    /// detection, as in Ignis). Returns the handler's id, `None` when it was ignored.
    pub fn subscribe(&self, event: &str, handler: Handler) -> Option<HandlerId> {
        self.subscribe_with(event, handler, true)
    }

    /// Subscribes `handler` to `event`; with `ignore_duplicate` false, next to the
    /// handlers it already has.
    pub fn subscribe_with(
        &self,
        event: &str,
        handler: Handler,
        ignore_duplicate: bool,
    ) -> Option<HandlerId> {
        if event.is_empty() {
            warn!("cannot subscribe to an empty event name");
            return None;
        }
        let mut handlers = self.inner.handlers.lock();
        let list = handlers.entry(event.to_owned()).or_default();
        if ignore_duplicate && !list.is_empty() {
            info!(event, "handler already exists, ignoring the new one");
            return None;
        }
        let id = HandlerId(self.inner.next_handler.fetch_add(1, Ordering::Relaxed));
        list.push((id, handler));
        debug!(event, "subscribed");
        Some(id)
    }

    /// Subscribes several handlers (see [`ManagedClient::subscribe_with`]).
    pub fn subscribe_many(
        &self,
        handlers: impl IntoIterator<Item = (String, Handler)>,
        ignore_duplicate: bool,
    ) -> Vec<Option<HandlerId>> {
        handlers
            .into_iter()
            .map(|(event, handler)| self.subscribe_with(&event, handler, ignore_duplicate))
            .collect()
    }

    /// Removes handler `id` of `event`, or all of its handlers for `None`; returns how
    /// many were removed.
    pub fn unsubscribe(&self, event: &str, id: Option<HandlerId>) -> usize {
        let mut handlers = self.inner.handlers.lock();
        let Some(list) = handlers.get_mut(event) else {
            info!(event, "no handlers to remove");
            return 0;
        };
        let before = list.len();
        match id {
            Some(id) => list.retain(|(h, _)| *h != id),
            None => list.clear(),
        }
        let removed = before - list.len();
        if list.is_empty() {
            handlers.remove(event);
        }
        removed
    }

    /// Removes every handler of each event.
    pub fn unsubscribe_many<S: AsRef<str>>(&self, events: impl IntoIterator<Item = S>) -> usize {
        events
            .into_iter()
            .map(|event| self.unsubscribe(event.as_ref(), None))
            .sum()
    }

    /// How many handlers `event` has.
    pub fn handler_count(&self, event: &str) -> usize {
        self.inner.handlers.lock().get(event).map_or(0, Vec::len)
    }

    /// Emits `topic` with `data` as its argument.
    pub fn emit(&self, topic: &str, data: &(impl Serialize + ?Sized)) -> Result<(), EmitError> {
        let (out, data) = self.prepare(topic, data)?;
        out.send(packet::event(topic, &[data], None))
            .map_err(|_| EmitError::NotConnected)
    }

    /// Emits `topic` with `data` and waits up to `timeout` for the gateway's ack; returns
    /// its arguments.
    pub async fn emit_with_ack(
        &self,
        topic: &str,
        data: &(impl Serialize + ?Sized),
        timeout: Duration,
    ) -> Result<Vec<Value>, EmitError> {
        let (out, data) = self.prepare(topic, data)?;
        let id = self.inner.next_ack.fetch_add(1, Ordering::Relaxed);
        let (reply, replied) = oneshot::channel();
        self.inner.pending_acks.lock().insert(id, reply);
        if out.send(packet::event(topic, &[data], Some(id))).is_err() {
            self.inner.pending_acks.lock().remove(&id);
            return Err(EmitError::NotConnected);
        }
        match tokio::time::timeout(timeout, replied).await {
            Ok(Ok(args)) => Ok(args),
            Ok(Err(_)) => Err(EmitError::Disconnected),
            Err(_) => {
                self.inner.pending_acks.lock().remove(&id);
                Err(EmitError::AckTimeout(timeout))
            }
        }
    }

    fn prepare(
        &self,
        topic: &str,
        data: &(impl Serialize + ?Sized),
    ) -> Result<(mpsc::UnboundedSender<String>, Value), EmitError> {
        let out = self.inner.out().ok_or(EmitError::NotConnected)?;
        if topic.is_empty() {
            return Err(EmitError::EmptyTopic);
        }
        let data = serde_json::to_value(data).map_err(|e| EmitError::Encode(e.to_string()))?;
        Ok((out, data))
    }

    /// Asks the gateway to join `rooms` (it keeps those its room rules allow); a warning
    /// and nothing else when not connected. Returns whether the request was sent.
    pub fn join_rooms<S: AsRef<str>>(&self, rooms: impl IntoIterator<Item = S>) -> bool {
        self.rooms_request("join", rooms)
    }

    /// Asks the gateway to leave `rooms`; a warning and nothing else when not connected.
    pub fn leave_rooms<S: AsRef<str>>(&self, rooms: impl IntoIterator<Item = S>) -> bool {
        self.rooms_request("leave", rooms)
    }

    fn rooms_request<S: AsRef<str>>(
        &self,
        event: &str,
        rooms: impl IntoIterator<Item = S>,
    ) -> bool {
        let rooms: Vec<String> = rooms.into_iter().map(|r| r.as_ref().to_owned()).collect();
        let Some(out) = self.inner.out() else {
            warn!(?rooms, "cannot {event} rooms: not connected");
            return false;
        };
        let sent = out
            .send(packet::event(event, &[json!({ "rooms": rooms })], None))
            .is_ok();
        if sent {
            info!(?rooms, "{event} rooms requested");
        }
        sent
    }
}

impl Inner {
    fn out(&self) -> Option<mpsc::UnboundedSender<String>> {
        self.connection.lock().as_ref().map(|c| c.out.clone())
    }

    fn set_state(&self, state: ClientState) {
        self.status.send_if_modified(|s| {
            let changed = s.state != state;
            s.state = state;
            changed
        });
    }

    fn callbacks<T>(&self, pick: impl Fn(&Callbacks) -> Option<T>) -> Option<T> {
        pick(&self.callbacks.lock())
    }

    /// The `auth` of the next CONNECT: the options' `auth`, with the session to recover.
    pub(super) fn connect_auth(&self) -> Option<Value> {
        self.recovery
            .lock()
            .connect_auth(self.options.auth.as_ref())
    }

    /// The connection is up (its socket id, and its pid when recovery is on): emits
    /// become possible, the state starts `Unauthorized`, recovered session or not.
    pub(super) fn connected(
        &self,
        sid: String,
        pid: Option<String>,
        out: mpsc::UnboundedSender<String>,
    ) {
        let recovered = self.recovery.lock().connected(pid);
        info!(sid, recovered, url = %self.options.url, "socket.io client connected");
        *self.connection.lock() = Some(Connection { out, sid });
        self.status.send_replace(Status {
            connected: true,
            state: ClientState::Unauthorized,
            recovered,
        });
        call("connected", self.callbacks(|c| c.connected.clone()), ());
    }

    /// The connection ended: emits fail, pending acks fail, the state is `Unauthorized`.
    pub(super) fn disconnected(&self, reason: DisconnectReason) {
        info!(%reason, detail = ?reason, url = %self.options.url, "socket.io client disconnected");
        *self.connection.lock() = None;
        self.pending_acks.lock().clear();
        self.status.send_modify(|status| {
            status.connected = false;
            status.state = ClientState::Unauthorized;
        });
        call(
            "disconnected",
            self.callbacks(|c| c.disconnected.clone()),
            reason,
        );
    }

    pub(super) fn failed(&self, error: ClientError) {
        warn!(%error, url = %self.options.url, "socket.io client connection failed");
        call("error", self.callbacks(|c| c.error.clone()), error);
    }

    /// An event from the gateway: the authentication events move the state, then the
    /// subscribed handlers get it (in order, on the dispatcher task).
    pub(super) fn received(
        &self,
        event: Event,
        dispatch: &mpsc::UnboundedSender<(Vec<Handler>, Event)>,
    ) {
        self.recovery
            .lock()
            .received(&event.args, event.wants_ack());
        match event.name.as_str() {
            "authenticated" => {
                self.set_state(ClientState::Authenticated);
                info!("authenticated");
                call(
                    "authenticated",
                    self.callbacks(|c| c.authenticated.clone()),
                    event.data().clone(),
                );
            }
            "unauthenticated" => {
                self.set_state(ClientState::Unauthorized);
                let message = event.data()["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                warn!(message, "unauthenticated");
                call(
                    "unauthenticated",
                    self.callbacks(|c| c.unauthenticated.clone()),
                    message,
                );
            }
            "ping" => debug!("application ping"),
            _ => {}
        }
        let handlers: Vec<Handler> = self
            .handlers
            .lock()
            .get(&event.name)
            .map(|list| list.iter().map(|(_, h)| h.clone()).collect())
            .unwrap_or_default();
        if !handlers.is_empty() {
            let _ = dispatch.send((handlers, event));
        }
    }
}
