//! bus-rpc mode's transport: the sync call graph carried over core NATS request/reply
//! (no JetStream), with the same protobuf messages, deadlines and status codes as gRPC.
//!
//! Wire format:
//! - each internal RPC is a subject, `cascade.rpc.<service>.<Method>` ([`subject`]);
//!   every instance of a service subscribes in the queue group named after the service,
//!   so instances share a subject and each request goes to one of them;
//! - a request's body is the protobuf request; its `Cascade-Timeout` header is the
//!   time left of the caller's deadline, in `grpc-timeout` syntax (`1980000u`); the
//!   answering side counts it from receipt and refuses a request whose time is up;
//! - a reply is the protobuf response, or an empty body with a `Cascade-Status` header
//!   (the gRPC code as a number) and `Cascade-Message` (its message).
//!
//! The client side ([`call`]) goes through [`Resilience::call`], so the per-hop
//! deadline, the `Admin.Stats` count of the hop, the blame rules and the policy
//! (retries, budget, breaker) are sync mode's. The answering side sheds like the gRPC
//! server under the hardened policy (see [`Bus::answer`]).

use std::{future::Future, sync::Arc, time::Duration};

use async_nats::{header::HeaderMap, RequestErrorKind};
use bytes::Bytes;
use futures::StreamExt;
use prost::Message;
use tokio::{sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};

use crate::{
    config::{MissingNatsUrl, ServiceArgs},
    deadline::{parse_grpc_timeout, Deadline, Hop},
    error::ApiError,
    resilience::Resilience,
    shards::Sharded,
};

pub use async_nats::Client;

/// First tokens of every bus-rpc subject.
pub const SUBJECT_PREFIX: &str = "cascade.rpc";
/// The gRPC status code of a failed call, as a decimal number.
pub const STATUS_HEADER: &str = "Cascade-Status";
/// The status message of a failed call.
pub const MESSAGE_HEADER: &str = "Cascade-Message";
/// What is left of the caller's deadline, in `grpc-timeout` syntax.
pub const TIMEOUT_HEADER: &str = "Cascade-Timeout";
/// Requests one subscription serves at once; past it, the next waits for a slot.
pub const MAX_IN_FLIGHT: usize = 256;

/// The subject on which `service` answers `method`.
pub fn subject(service: &str, method: &str) -> String {
    format!("{SUBJECT_PREFIX}.{service}.{method}")
}

/// The subject on which shard `index` of `service` answers `method`: the service's own
/// for the first shard (so an unsharded owner's subjects are unchanged), and for shard
/// K > 1 its component's name, `cascade.rpc.users-2.GetUser`.
pub fn shard_subject(service: &str, index: usize, method: &str) -> String {
    match index {
        0 => subject(service, method),
        i => subject(&format!("{service}-{}", i + 1), method),
    }
}

/// The shards of `service` a bus-rpc caller addresses (`--owner-shards`): an id naming
/// one past them is `NOT_FOUND`, as in sync mode.
pub fn shards(service: &'static str, args: &ServiceArgs) -> Sharded<usize> {
    Sharded::new(service, (0..args.owner_shards as usize).collect(), args.policy)
}

/// [`call`] for the entity `id`, on the subject of the shard holding it, under that
/// shard's own policy state.
pub async fn call_shard<Req, Resp>(
    client: &Client,
    shards: &Sharded<usize>,
    id: &str,
    hop: Hop,
    deadline: Deadline,
    message: Req,
) -> Result<Resp, Status>
where
    Req: Message + Clone,
    Resp: Message + Default,
{
    let (index, _, resilience) = shards.of(id)?;
    let subject = shard_subject(hop.dependency, index, hop.method);
    resilience.call(hop, deadline, message, |request| send(client, &subject, request)).await
}

/// Makes the call of `hop` over the bus within what is left of `deadline`, under
/// `resilience`'s policy: sync mode's [`crate::deadline::call`] with NATS underneath. No
/// connection to the broker or no responders is `UNAVAILABLE`, no reply in time
/// `DEADLINE_EXCEEDED`, a status reply that status; then the same blame.
pub async fn call<Req, Resp>(
    client: &Client,
    resilience: &Resilience,
    hop: Hop,
    deadline: Deadline,
    message: Req,
) -> Result<Resp, Status>
where
    Req: Message + Clone,
    Resp: Message + Default,
{
    let subject = subject(hop.dependency, hop.method);
    resilience.call(hop, deadline, message, |request| send(client, &subject, request)).await
}

/// One attempt of a call over the bus.
async fn send<Req: Message, Resp: Message + Default>(
    client: &Client,
    subject: &str,
    request: tonic::Request<Req>,
) -> Result<tonic::Response<Resp>, Status> {
    // With the broker gone a request would sit in the client's buffer until its
    // deadline; like a refused TCP connection in sync mode, this fails at once.
    if client.connection_state() != async_nats::connection::State::Connected {
        return Err(Status::unavailable(format!("no connection to the NATS broker to send on {subject}")));
    }
    let timeout = request.metadata().get("grpc-timeout").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut headers = HeaderMap::new();
    if let Some(timeout) = &timeout {
        headers.insert(TIMEOUT_HEADER, timeout.as_str());
    }
    let body = Bytes::from(request.into_inner().encode_to_vec());
    let wait = timeout.as_deref().and_then(parse_grpc_timeout);
    let request = async_nats::Request::new().payload(body).headers(headers).timeout(wait);
    let reply = client.send_request(subject.to_owned(), request).await.map_err(|error| match error.kind() {
        RequestErrorKind::NoResponders => Status::unavailable(format!("nothing answers on {subject}")),
        RequestErrorKind::TimedOut => Status::deadline_exceeded(format!("no reply on {subject} in time")),
        _ => Status::unavailable(format!("request on {subject} failed: {error}")),
    })?;
    decode_reply(subject, reply).map(tonic::Response::new)
}

/// The response in `reply`, or the status it carries.
fn decode_reply<Resp: Message + Default>(subject: &str, reply: async_nats::Message) -> Result<Resp, Status> {
    if let Some(status) = reply.headers.as_ref().and_then(|h| h.get(STATUS_HEADER)) {
        let code = status.as_str().parse::<i32>().map_err(|_| {
            Status::internal(format!("reply on {subject} has a malformed {STATUS_HEADER}: {:?}", status.as_str()))
        })?;
        let message = reply.headers.as_ref().and_then(|h| h.get(MESSAGE_HEADER)).map_or("", |m| m.as_str());
        return Err(Status::new(Code::from_i32(code), message));
    }
    Resp::decode(reply.payload)
        .map_err(|e| Status::internal(format!("reply on {subject} is not a valid response: {e}")))
}

/// Returns once the broker has processed everything `client` sent before: a request
/// on a subject nobody listens to, which the broker answers "no responders" in order.
/// (`Client::flush` only writes the socket.) At most [`ROUND_TRIP_TIMEOUT`].
pub async fn round_trip(client: &Client) -> Result<(), async_nats::RequestError> {
    let probe = async_nats::Request::new().timeout(Some(ROUND_TRIP_TIMEOUT));
    match client.send_request(client.new_inbox(), probe).await {
        Err(error) if error.kind() == RequestErrorKind::NoResponders => Ok(()),
        Err(error) => Err(error),
        Ok(_) => Ok(()),
    }
}

/// How long [`round_trip`] waits for the broker.
pub const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(1);

/// Headers carrying `status` (a header value cannot hold a line break: they become spaces).
fn status_headers(status: &Status) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(STATUS_HEADER, (status.code() as i32).to_string());
    let message: String = status.message().chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    headers.insert(MESSAGE_HEADER, message);
    headers
}

/// The deadline a request carries, counted from now; `default` if it carries none.
fn deadline_of(message: &async_nats::Message, default: Duration) -> Deadline {
    let budget = message
        .headers
        .as_ref()
        .and_then(|h| h.get(TIMEOUT_HEADER))
        .and_then(|v| parse_grpc_timeout(v.as_str()))
        .unwrap_or(default);
    Deadline::after(budget)
}

/// How long a starting service waits for the broker before it serves without it.
pub const CONNECT_WAIT: Duration = Duration::from_secs(2);

/// A service's connection to the bus and the subscriptions answering its internal RPCs.
/// Tasks watch the service's shutdown token; [`Bus::stop`] waits for them and drains
/// the connection.
pub struct Bus {
    client: Client,
    service: &'static str,
    /// The shard of its owner this instance answers for (0 unless sharded).
    shard: usize,
    default_deadline: Duration,
    /// The hardened policy's limit on requests answered at once, shared by every
    /// subscription of this service; past it a request is refused at once.
    shed: Option<Arc<Semaphore>>,
    tasks: JoinSet<()>,
    shutdown: CancellationToken,
}

/// Why a service could not use the bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error(transparent)]
    NoUrl(#[from] MissingNatsUrl),
    #[error("cannot connect to NATS: {0}")]
    Connect(#[from] async_nats::ConnectError),
    #[error("cannot subscribe to {subject}: {source}")]
    Subscribe { subject: String, source: async_nats::SubscribeError },
}

impl Bus {
    /// Connects `service` to the broker at `--nats-url` (required).
    pub async fn start(
        args: &ServiceArgs,
        service: &'static str,
        shutdown: &CancellationToken,
    ) -> Result<Self, BusError> {
        let url = args.nats_url.as_deref().ok_or(MissingNatsUrl(args.mode))?;
        let client = crate::broker::connect(url, service).await?;
        Ok(Self {
            client,
            service,
            shard: args.shard().index(),
            default_deadline: args.default_deadline(),
            shed: crate::serve::shedding_limit(args),
            tasks: JoinSet::new(),
            shutdown: shutdown.clone(),
        })
    }

    /// The connection, for calling other services.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Answers `method` of this service until shutdown: each request (in the queue
    /// group of the service) is decoded and passed to `handler`, the same domain
    /// function the gRPC method calls, on a task of its own (at most
    /// [`MAX_IN_FLIGHT`] at once per subscription). Under the hardened policy a request
    /// that finds the service at its `--max-in-flight` is answered `RESOURCE_EXHAUSTED`
    /// at once instead of waiting.
    pub async fn answer<Req, Resp, F, Fut>(&mut self, method: &'static str, handler: F) -> Result<(), BusError>
    where
        Req: Message + Default + 'static,
        Resp: Message + 'static,
        F: Fn(Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, ApiError>> + Send + 'static,
    {
        let subject = shard_subject(self.service, self.shard, method);
        let subscriber = (self.client.queue_subscribe(subject.clone(), self.service.to_owned()).await)
            .map_err(|source| BusError::Subscribe { subject: subject.clone(), source })?;
        let server = Responder {
            client: self.client.clone(),
            subject,
            handler: Arc::new(handler),
            default_deadline: self.default_deadline,
            shed: self.shed.clone(),
        };
        self.tasks.spawn(server.run(subscriber, self.shutdown.clone()));
        Ok(())
    }

    /// Waits (at most [`CONNECT_WAIT`]) until the connection is up and the broker has
    /// every subscription made so far, so the service reports ready only once its
    /// callers' requests can reach it and its own calls can leave. A broker that is down
    /// does not keep the service from serving its public API: after the wait it serves
    /// anyway, and calls over the bus fail UNAVAILABLE until the connection is made.
    pub async fn ready(&self) {
        let up = async {
            while self.client.connection_state() != async_nats::connection::State::Connected {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // A round trip to the broker, which handles one connection's commands in
            // order: the subscriptions sent before it are in place. (`flush` only
            // writes the socket.)
            round_trip(&self.client).await
        };
        match tokio::time::timeout(CONNECT_WAIT, up).await {
            Ok(Ok(())) => tracing::info!(service = self.service, "connected to the bus"),
            Ok(Err(error)) => tracing::warn!(service = self.service, %error, "bus round trip failed; serving anyway"),
            Err(_) => tracing::warn!(
                service = self.service,
                "no broker after {CONNECT_WAIT:?}: serving anyway; calls over the bus fail until it connects"
            ),
        }
    }

    /// Waits for every subscription to stop (after shutdown), then drains the connection.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        while let Some(ended) = self.tasks.join_next().await {
            if let Err(error) = ended {
                tracing::error!(%error, "bus responder failed");
            }
        }
        if let Err(error) = self.client.drain().await {
            tracing::warn!(%error, "nats drain failed");
        }
    }
}

/// One subscription and what answers it.
struct Responder<F> {
    client: Client,
    subject: String,
    handler: Arc<F>,
    default_deadline: Duration,
    shed: Option<Arc<Semaphore>>,
}

impl<F> Clone for Responder<F> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            subject: self.subject.clone(),
            handler: self.handler.clone(),
            default_deadline: self.default_deadline,
            shed: self.shed.clone(),
        }
    }
}

impl<F> Responder<F> {
    async fn run<Req, Resp, Fut>(self, mut subscriber: async_nats::Subscriber, shutdown: CancellationToken)
    where
        Req: Message + Default + 'static,
        Resp: Message + 'static,
        F: Fn(Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, ApiError>> + Send + 'static,
    {
        let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let mut in_flight = JoinSet::new();
        tracing::info!(subject = %self.subject, "answering on the bus");
        loop {
            let message = tokio::select! {
                () = shutdown.cancelled() => break,
                message = subscriber.next() => match message {
                    Some(message) => message,
                    None => {
                        tracing::warn!(subject = %self.subject, "subscription ended");
                        break;
                    }
                },
            };
            // The deadline counts from receipt, so time spent waiting for a slot counts.
            let deadline = deadline_of(&message, self.default_deadline);
            let permit = match &self.shed {
                None => None,
                Some(limit) => match limit.clone().try_acquire_owned() {
                    Ok(permit) => Some(permit),
                    Err(_) => {
                        self.refuse(message, crate::serve::shed_status()).await;
                        continue;
                    }
                },
            };
            let slot = tokio::select! {
                () = shutdown.cancelled() => break,
                slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            };
            while let Some(done) = in_flight.try_join_next() {
                if let Err(error) = done {
                    tracing::error!(%error, subject = %self.subject, "a bus request's task failed");
                }
            }
            let responder = self.clone();
            in_flight.spawn(async move {
                responder.answer(message, deadline).await;
                drop((slot, permit));
            });
        }
        // Unsubscribing only queues the command: the round trip waits until the broker
        // has applied it, so from here on requests go to the other instances (or get no
        // responders) instead of to a subscription that will never answer them.
        if let Err(error) = subscriber.unsubscribe().await {
            tracing::warn!(%error, subject = %self.subject, "cannot unsubscribe");
        } else if let Err(error) = round_trip(&self.client).await {
            tracing::warn!(%error, subject = %self.subject, "the broker did not confirm the unsubscription");
        }
        while let Some(done) = in_flight.join_next().await {
            if let Err(error) = done {
                tracing::error!(%error, subject = %self.subject, "a bus request's task failed");
            }
        }
        tracing::info!(subject = %self.subject, "stopped answering on the bus");
    }

    async fn answer<Req, Resp, Fut>(&self, message: async_nats::Message, deadline: Deadline)
    where
        Req: Message + Default,
        Resp: Message,
        F: Fn(Req) -> Fut,
        Fut: Future<Output = Result<Resp, ApiError>>,
    {
        let Some(reply) = message.reply.clone() else {
            tracing::warn!(subject = %self.subject, "a request without a reply subject: dropped");
            return;
        };
        let published = match self.respond(message.payload, deadline).await {
            Ok(body) => self.client.publish(reply, body).await,
            Err(status) => {
                tracing::debug!(subject = %self.subject, code = ?status.code(), message = status.message(), "refused");
                self.client.publish_with_headers(reply, status_headers(&status), Bytes::new()).await
            }
        };
        if let Err(error) = published {
            tracing::warn!(%error, subject = %self.subject, "cannot publish a reply");
        }
    }

    /// Answers `message` with `status` without looking at it (shedding).
    async fn refuse(&self, message: async_nats::Message, status: Status) {
        let Some(reply) = message.reply else { return };
        if let Err(error) = self.client.publish_with_headers(reply, status_headers(&status), Bytes::new()).await {
            tracing::warn!(%error, subject = %self.subject, "cannot publish a refusal");
        }
    }

    async fn respond<Req, Resp, Fut>(&self, payload: Bytes, deadline: Deadline) -> Result<Bytes, Status>
    where
        Req: Message + Default,
        Resp: Message,
        F: Fn(Req) -> Fut,
        Fut: Future<Output = Result<Resp, ApiError>>,
    {
        let passed = || {
            Status::deadline_exceeded(format!(
                "the caller's deadline of {} ms passed before {} answered",
                deadline.budget().as_millis(),
                self.subject
            ))
        };
        if deadline.remaining().is_zero() {
            return Err(passed());
        }
        let request = Req::decode(payload).map_err(|e| {
            Status::invalid_argument(format!("request on {} is not a valid request: {e}", self.subject))
        })?;
        match tokio::time::timeout(deadline.remaining(), (self.handler)(request)).await {
            Ok(Ok(response)) => Ok(Bytes::from(response.encode_to_vec())),
            Ok(Err(error)) => Err(error.into()),
            Err(_elapsed) => Err(passed()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_name_the_service_and_the_method() {
        assert_eq!(subject("users", "GetUser"), "cascade.rpc.users.GetUser");
    }

    #[test]
    fn a_status_survives_the_headers_even_with_line_breaks_in_its_message() {
        let headers = status_headers(&Status::not_found("user usr-1\r\nnot found"));
        let reply = async_nats::Message {
            subject: "_INBOX.x".into(),
            reply: None,
            payload: Bytes::new(),
            headers: Some(headers),
            status: None,
            description: None,
            length: 0,
        };
        let status = decode_reply::<crate::proto::User>("s", reply).unwrap_err();
        assert_eq!((status.code(), status.message()), (Code::NotFound, "user usr-1  not found"));
    }

    #[test]
    fn a_garbled_status_or_body_is_internal_not_a_panic() {
        let mut headers = HeaderMap::new();
        headers.insert(STATUS_HEADER, "five");
        let message = |headers, payload| async_nats::Message {
            subject: "_INBOX.x".into(),
            reply: None,
            payload,
            headers,
            status: None,
            description: None,
            length: 0,
        };
        let err = decode_reply::<crate::proto::User>("s", message(Some(headers), Bytes::new())).unwrap_err();
        assert_eq!(err.code(), Code::Internal);
        let err =
            decode_reply::<crate::proto::User>("s", message(None, Bytes::from_static(&[0xff, 0xff]))).unwrap_err();
        assert!(err.code() == Code::Internal && err.message().contains("not a valid response"), "{err:?}");
    }
}
