//! [`Client`]: the `SocketControl` calls as methods, with deadlines, the token interceptor
//! and retries of the read-only calls.

use std::time::Duration;

use futures_util::{Stream, TryStreamExt, stream};
use serde::Serialize;
use tonic::{Request, service::interceptor::InterceptedService, transport::Channel};

use crate::{
    ClientBuilder, Error,
    proto::{
        AckOptions, BatchCommand, BatchRequest, DisconnectRequest, EventKind, GetInfoRequest,
        GetInfoResponse, GetSocketRequest, JoinRequest, LeaveRequest, ListRoomsRequest,
        ListSocketsRequest, RoomInfo, SendRequest, SocketInfo, SocketState, Target,
        WatchEventsRequest, WatchEventsResponse, batch_command::Command, batch_result::Reply,
        socket_control_client::SocketControlClient,
    },
    retry::RetryPolicy,
    token::BearerToken,
};

/// The generated stub with the token interceptor, for calls the methods do not cover.
pub type RawClient = SocketControlClient<InterceptedService<Channel, BearerToken>>;

/// A `SocketControl` client. Cheap to clone: clones share one HTTP/2 connection.
///
/// ```no_run
/// # async fn demo() -> Result<(), sockgate_client::Error> {
/// use sockgate_client::{Client, TokenSource};
/// use serde_json::json;
///
/// let client = Client::builder("http://127.0.0.1:50051")
///     .token(TokenSource::fixed("eyJ…"))
///     .connect()
///     .await?;
/// client.send_to_room("chat:lobby", "message", &json!({"text": "hi"})).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Client {
    raw: RawClient,
    deadline: Duration,
    retry: RetryPolicy,
}

/// What a `Send` did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SendReport {
    /// How many sockets the event was sent to, when the gateway counted them (ack mode, or
    /// [`SendOptions::count_recipients`]).
    pub recipients: Option<u32>,
    /// Ack mode: each acknowledging socket and its reply (`null` for an ack without data).
    pub acks: Vec<(String, serde_json::Value)>,
    /// Ack mode: the sockets that did not acknowledge in time.
    pub timed_out: Vec<String>,
}

/// Options of [`Client::send`].
#[derive(Clone, Debug, Default)]
pub struct SendOptions {
    /// Wait up to this long for each recipient's ack (1 ms to 60 s).
    pub ack_timeout: Option<Duration>,
    /// Ask the gateway to count the recipients (a cluster round trip).
    pub count_recipients: bool,
    /// Binary arguments sent after the data.
    pub attachments: Vec<bytes::Bytes>,
}

/// Filters of [`Client::list_sockets`], combined with AND.
#[derive(Clone, Debug, Default)]
pub struct SocketFilter {
    /// Only sockets in this room.
    pub room: Option<String>,
    /// Only sockets of this user.
    pub user_id: Option<String>,
    /// Only sockets in this state.
    pub state: Option<SocketState>,
    /// Sockets fetched per call (0: the gateway's default, 100).
    pub page_size: u32,
}

/// Filters of [`Client::watch_events`], combined with AND; empty matches everything.
#[derive(Clone, Debug, Default)]
pub struct WatchFilter {
    /// Only these kinds.
    pub kinds: Vec<EventKind>,
    /// Only client events whose name matches one of these (`*` is a wildcard).
    pub event_names: Vec<String>,
    /// Only events of sockets in this room.
    pub room: Option<String>,
}

fn to_json(data: &(impl Serialize + ?Sized)) -> Result<String, Error> {
    serde_json::to_string(data)
        .map_err(|e| Error::InvalidArgument(format!("data cannot be encoded as JSON: {e}")))
}

impl Client {
    /// Options for a client of the control plane at `endpoint` (`http://host:port`,
    /// `https://host:port` or `host:port`).
    pub fn builder(endpoint: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(endpoint)
    }

    pub(crate) fn new(
        channel: Channel,
        token: BearerToken,
        deadline: Duration,
        retry: RetryPolicy,
    ) -> Self {
        Client {
            raw: SocketControlClient::with_interceptor(channel, token),
            deadline,
            retry,
        }
    }

    /// The generated stub (with the token interceptor), for anything the methods lack.
    pub fn raw(&self) -> RawClient {
        self.raw.clone()
    }

    fn request<T>(&self, message: T, deadline: Duration) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(deadline);
        request
    }

    /// Emits `event` with `data` (any `Serialize` value, sent as its JSON) to `target`.
    pub async fn send(
        &self,
        target: Target,
        event: &str,
        data: &(impl Serialize + ?Sized),
        options: SendOptions,
    ) -> Result<SendReport, Error> {
        let ack = options
            .ack_timeout
            .map(|t| {
                u32::try_from(t.as_millis())
                    .ok()
                    .filter(|ms| *ms > 0)
                    .map(|timeout_ms| AckOptions { timeout_ms })
                    .ok_or_else(|| {
                        Error::InvalidArgument(format!(
                            "ack timeout {t:?} is out of range (1 ms to 60 s)"
                        ))
                    })
            })
            .transpose()?;
        let deadline = self.deadline + options.ack_timeout.unwrap_or_default();
        let message = SendRequest {
            event: event.to_owned(),
            data_json: to_json(data)?,
            attachments: options.attachments,
            target: Some(target),
            ack,
            count_recipients: options.count_recipients,
        };
        let response = self
            .raw
            .clone()
            .send(self.request(message, deadline))
            .await?
            .into_inner();
        let acks = response
            .acks
            .into_iter()
            .map(|reply| {
                let value = serde_json::from_str(&reply.data_json).map_err(|e| {
                    Error::UnexpectedResponse(format!(
                        "ack of {} is not JSON: {e}",
                        reply.socket_id
                    ))
                })?;
                Ok((reply.socket_id, value))
            })
            .collect::<Result<_, Error>>()?;
        Ok(SendReport {
            recipients: response.recipients,
            acks,
            timed_out: response.timed_out_socket_ids,
        })
    }

    /// Runs `commands` in one `Batch` call, one after the other (or all at once with
    /// `parallel`). The call fails as a whole only when the batch is refused (too many
    /// commands or bytes, no valid token, ...); otherwise each command has its own result,
    /// in the order of the commands: the unary method's reply, or its status as
    /// [`Error::Status`]. The deadline is the client's plus every ack timeout asked.
    pub async fn batch(
        &self,
        commands: Vec<BatchCommand>,
        parallel: bool,
    ) -> Result<Vec<Result<Reply, Error>>, Error> {
        let acks: u64 = commands
            .iter()
            .filter_map(|c| match &c.command {
                Some(Command::Send(send)) => send.ack.as_ref(),
                _ => None,
            })
            .map(|ack| u64::from(ack.timeout_ms))
            .sum();
        let deadline = self.deadline + Duration::from_millis(acks);
        let expected = commands.len();
        let message = BatchRequest { commands, parallel };
        let response = self
            .raw
            .clone()
            .batch(self.request(message, deadline))
            .await?
            .into_inner();
        if response.results.len() != expected {
            return Err(Error::UnexpectedResponse(format!(
                "{} results for {expected} commands",
                response.results.len()
            )));
        }
        Ok(response
            .results
            .into_iter()
            .map(|result| match result.reply {
                Some(reply) if result.code == 0 => Ok(reply),
                _ => Err(Error::Status(Box::new(tonic::Status::new(
                    tonic::Code::from(result.code as i32),
                    result.message,
                )))),
            })
            .collect())
    }

    /// Emits `event` to one socket; `NOT_FOUND` if it is connected nowhere.
    pub async fn send_to_socket(
        &self,
        socket_id: &str,
        event: &str,
        data: &(impl Serialize + ?Sized),
    ) -> Result<SendReport, Error> {
        self.send(
            Target::sockets([socket_id]),
            event,
            data,
            SendOptions::default(),
        )
        .await
    }

    /// Emits `event` to the sockets in `room`.
    pub async fn send_to_room(
        &self,
        room: &str,
        event: &str,
        data: &(impl Serialize + ?Sized),
    ) -> Result<SendReport, Error> {
        self.send(Target::rooms([room]), event, data, SendOptions::default())
            .await
    }

    /// Emits `event` to the authenticated sockets of `user_id`.
    pub async fn send_to_user(
        &self,
        user_id: &str,
        event: &str,
        data: &(impl Serialize + ?Sized),
    ) -> Result<SendReport, Error> {
        self.send(
            Target::users([user_id]),
            event,
            data,
            SendOptions::default(),
        )
        .await
    }

    /// Emits `event` to every socket of the cluster.
    pub async fn broadcast(
        &self,
        event: &str,
        data: &(impl Serialize + ?Sized),
    ) -> Result<SendReport, Error> {
        self.send(Target::all(), event, data, SendOptions::default())
            .await
    }

    /// Emits `event` to `target` and waits up to `timeout` for each recipient's ack.
    pub async fn send_with_ack(
        &self,
        target: Target,
        event: &str,
        data: &(impl Serialize + ?Sized),
        timeout: Duration,
    ) -> Result<SendReport, Error> {
        let options = SendOptions {
            ack_timeout: Some(timeout),
            ..SendOptions::default()
        };
        self.send(target, event, data, options).await
    }

    /// Makes the `target` sockets join `rooms` (trusted: no room validator runs).
    pub async fn join<S: Into<String>>(
        &self,
        target: Target,
        rooms: impl IntoIterator<Item = S>,
    ) -> Result<(), Error> {
        let message = JoinRequest {
            target: Some(target),
            rooms: rooms.into_iter().map(Into::into).collect(),
        };
        self.raw
            .clone()
            .join(self.request(message, self.deadline))
            .await?;
        Ok(())
    }

    /// Makes the `target` sockets leave `rooms`.
    pub async fn leave<S: Into<String>>(
        &self,
        target: Target,
        rooms: impl IntoIterator<Item = S>,
    ) -> Result<(), Error> {
        let message = LeaveRequest {
            target: Some(target),
            rooms: rooms.into_iter().map(Into::into).collect(),
        };
        self.raw
            .clone()
            .leave(self.request(message, self.deadline))
            .await?;
        Ok(())
    }

    /// Sends `force_disconnect {reason}` to the `target` sockets, then disconnects them.
    pub async fn disconnect(&self, target: Target, reason: &str) -> Result<(), Error> {
        let message = DisconnectRequest {
            target: Some(target),
            reason: reason.to_owned(),
        };
        self.raw
            .clone()
            .disconnect(self.request(message, self.deadline))
            .await?;
        Ok(())
    }

    /// The gateway's version, node, uptime and counts. Retried when unavailable.
    pub async fn info(&self) -> Result<GetInfoResponse, Error> {
        self.retry
            .run(|| async {
                let request = self.request(GetInfoRequest {}, self.deadline);
                Ok(self.raw.clone().get_info(request).await?.into_inner())
            })
            .await
    }

    /// One socket; an error of kind `NotFound` if it is connected nowhere. Retried when
    /// unavailable.
    pub async fn get_socket(&self, socket_id: &str) -> Result<SocketInfo, Error> {
        self.retry
            .run(|| async {
                let message = GetSocketRequest {
                    socket_id: socket_id.to_owned(),
                };
                let request = self.request(message, self.deadline);
                self.raw
                    .clone()
                    .get_socket(request)
                    .await?
                    .into_inner()
                    .socket
                    .ok_or_else(|| Error::UnexpectedResponse("GetSocket without a socket".into()))
            })
            .await
    }

    /// Every socket matching `filter`, fetched page by page as the stream is read (each
    /// page retried when unavailable).
    ///
    /// ```no_run
    /// # async fn demo(client: sockgate_client::Client) -> Result<(), sockgate_client::Error> {
    /// use futures_util::TryStreamExt;
    /// use sockgate_client::SocketFilter;
    ///
    /// let filter = SocketFilter { room: Some("chat:lobby".into()), ..Default::default() };
    /// let sockets: Vec<_> = client.list_sockets(filter).try_collect().await?;
    /// # Ok(()) }
    /// ```
    pub fn list_sockets(
        &self,
        filter: SocketFilter,
    ) -> impl Stream<Item = Result<SocketInfo, Error>> + Send + 'static {
        let client = self.clone();
        paginate(move |page_token| {
            let client = client.clone();
            let filter = filter.clone();
            async move {
                client
                    .retry
                    .run(|| async {
                        let message = ListSocketsRequest {
                            room: filter.room.clone().unwrap_or_default(),
                            user_id: filter.user_id.clone().unwrap_or_default(),
                            state: filter.state.unwrap_or(SocketState::Unspecified).into(),
                            page_size: filter.page_size,
                            page_token: page_token.clone(),
                        };
                        let request = client.request(message, client.deadline);
                        let page = client.raw.clone().list_sockets(request).await?.into_inner();
                        Ok((page.sockets, page.next_page_token))
                    })
                    .await
            }
        })
    }

    /// Every room whose name starts with `prefix` (all rooms for `""`) with its member
    /// count, fetched page by page as the stream is read.
    pub fn list_rooms(
        &self,
        prefix: &str,
    ) -> impl Stream<Item = Result<RoomInfo, Error>> + Send + 'static {
        let client = self.clone();
        let prefix = prefix.to_owned();
        paginate(move |page_token| {
            let client = client.clone();
            let prefix = prefix.clone();
            async move {
                client
                    .retry
                    .run(|| async {
                        let message = ListRoomsRequest {
                            prefix: prefix.clone(),
                            page_size: 0,
                            page_token: page_token.clone(),
                        };
                        let request = client.request(message, client.deadline);
                        let page = client.raw.clone().list_rooms(request).await?.into_inner();
                        Ok((page.rooms, page.next_page_token))
                    })
                    .await
            }
        })
    }

    /// Lifecycle and client events as they happen, until the stream is dropped or the
    /// gateway ends it (no deadline; not retried: a watcher that reconnects may have
    /// missed events, so it decides itself).
    ///
    /// ```no_run
    /// # async fn demo(client: sockgate_client::Client) -> Result<(), sockgate_client::Error> {
    /// use futures_util::StreamExt;
    /// use sockgate_client::{WatchFilter, proto::EventKind};
    ///
    /// let filter = WatchFilter { kinds: vec![EventKind::ClientEvent], ..Default::default() };
    /// let mut events = client.watch_events(filter).await?;
    /// while let Some(event) = events.next().await {
    ///     let event = event?;
    ///     println!("{} sent {}: {}", event.socket_id, event.event, event.data_json);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn watch_events(
        &self,
        filter: WatchFilter,
    ) -> Result<impl Stream<Item = Result<WatchEventsResponse, Error>> + Send + 'static, Error>
    {
        let message = WatchEventsRequest {
            kinds: filter.kinds.into_iter().map(Into::into).collect(),
            event_names: filter.event_names,
            room: filter.room.unwrap_or_default(),
        };
        let stream = self
            .raw
            .clone()
            .watch_events(Request::new(message))
            .await?
            .into_inner();
        Ok(stream.map_err(Error::from))
    }
}

/// Turns a page-fetching call into a stream of items: `fetch(page_token)` returns a page
/// and the next token, empty on the last page.
fn paginate<T, F, Fut>(fetch: F) -> impl Stream<Item = Result<T, Error>> + Send + 'static
where
    T: Send + 'static,
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(Vec<T>, String), Error>> + Send + 'static,
{
    stream::try_unfold(Some(String::new()), move |token| {
        let page = token.map(&fetch);
        async move {
            match page {
                None => Ok::<_, Error>(None),
                Some(page) => {
                    let (items, next) = page.await?;
                    let next = (!next.is_empty()).then_some(next);
                    Ok(Some((stream::iter(items.into_iter().map(Ok)), next)))
                }
            }
        }
    })
    .try_flatten()
}
