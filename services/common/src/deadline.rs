//! Deadlines across a request chain.
//!
//! tonic does not carry a caller's deadline to the calls a handler makes, so a chain
//! would otherwise give every hop a fresh budget and a slow dependency could hold the
//! caller long after its client gave up. Here a handler turns the incoming
//! `grpc-timeout` into a [`Deadline`] (or applies a default when the client sent none),
//! and [`call`] gives each outbound call only what is left of it: it sets the remaining
//! time as the call's own `grpc-timeout` (so the callee knows too) and enforces it
//! locally (so a frozen callee cannot hold us).

use std::{future::Future, time::Duration};

use tokio::time::Instant;
use tonic::{Code, Request, Status};

/// The most of a deadline kept back for answering the caller (10% of what remains,
/// at most this much).
pub const REPLY_RESERVE: Duration = Duration::from_millis(20);

/// The instant by which the current request must be answered.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    at: Instant,
    budget: Duration,
}

impl Deadline {
    /// A deadline `budget` from now.
    pub fn after(budget: Duration) -> Self {
        Self { at: Instant::now() + budget, budget }
    }

    /// The deadline the client of `request` asked for, or `default` if it sent none.
    pub fn of<T>(request: &Request<T>, default: Duration) -> Self {
        let budget = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .unwrap_or(default);
        Self::after(budget)
    }

    /// Time left; zero once passed.
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// The whole budget this deadline started with.
    pub fn budget(&self) -> Duration {
        self.budget
    }
}

/// Parses a gRPC `grpc-timeout` header value: up to 8 digits and a unit
/// (`H`ours, `M`inutes, `S`econds, `m`illis, `u`micros, `n`anos).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// One kind of outbound call: the dependency, the method, whether a `NOT_FOUND`
/// from it answers the client's own request, and whether it may be sent twice.
#[derive(Clone, Copy, Debug)]
pub struct Hop {
    pub dependency: &'static str,
    pub method: &'static str,
    /// Whether the call looks up an id the client gave us, so that the dependency's
    /// `NOT_FOUND` is the client's answer too (an unknown user or product).
    not_found_is_the_clients: bool,
    /// Whether sending it again has no effect beyond the first (a read): only such a
    /// call is retried by the hardened policy (see `resilience`).
    idempotent: bool,
}

impl Hop {
    pub const fn new(dependency: &'static str, method: &'static str) -> Self {
        Self { dependency, method, not_found_is_the_clients: false, idempotent: false }
    }

    /// This call asks for an id the client sent: its `NOT_FOUND` reaches the client
    /// unchanged (e.g. users.GetUser for the user whose orders are asked for).
    pub const fn looking_up_the_clients_id(self) -> Self {
        Self { not_found_is_the_clients: true, ..self }
    }

    /// This call only reads: a retry cannot do anything twice.
    pub const fn idempotent(self) -> Self {
        Self { idempotent: true, ..self }
    }

    pub fn is_idempotent(&self) -> bool {
        self.idempotent
    }
}

impl std::fmt::Display for Hop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.dependency, self.method)
    }
}

/// Makes one call to a dependency within what is left of `deadline`.
///
/// `make_call` receives a request already carrying the remaining time as its
/// `grpc-timeout`, and must send it. Errors name the hop, and say whether the dependency
/// was down (`UNAVAILABLE`), too slow (`DEADLINE_EXCEEDED`) or refused the request this
/// service made (`INTERNAL`; see [`blame`]). One attempt, whatever the policy:
/// `resilience::Resilience::call` repeats [`attempt`] as its policy says.
pub async fn call<Req, Resp, Fut>(
    hop: Hop,
    deadline: Deadline,
    message: Req,
    make_call: impl FnOnce(Request<Req>) -> Fut,
) -> Result<Resp, Status>
where
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    attempt(hop, deadline, None, message, make_call).await.map_err(|failed| failed.blamed(hop))
}

/// Why one [`attempt`] failed: what the dependency answered, or that the time given to
/// it ran out (which a retry cannot help: the rest of the deadline is the reply's).
#[derive(Debug)]
pub enum Failed {
    /// The dependency's own status, not yet [`blame`]d.
    Callee(Status),
    /// The call did not answer in what was left of the deadline.
    TimedOut(Status),
    /// The call did not answer within its per-try timeout, with time of the deadline
    /// still left (a retry could be sent in it).
    TryTimedOut(Status),
    /// No time was left to send the call.
    NoTimeLeft(Status),
}

impl Failed {
    /// The status the caller's client should see.
    pub fn blamed(self, hop: Hop) -> Status {
        match self {
            Failed::Callee(status) => blame(hop, status),
            Failed::TimedOut(status) | Failed::TryTimedOut(status) | Failed::NoTimeLeft(status) => status,
        }
    }
}

/// One call, counted in `Admin.Stats`, without [`blame`]: the policy decides on the
/// dependency's own code. The call gets what is left of `deadline` (less what is kept
/// for the reply), or `per_try` if that is shorter: a policy's per-try timeout.
pub async fn attempt<Req, Resp, Fut>(
    hop: Hop,
    deadline: Deadline,
    per_try: Option<Duration>,
    message: Req,
    make_call: impl FnOnce(Request<Req>) -> Fut,
) -> Result<Resp, Failed>
where
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    // Keep a little of the budget back so that, when the dependency is too slow, this
    // service can still tell its caller which hop ran out before the caller gives up.
    let remaining = deadline.remaining();
    let remaining = remaining.saturating_sub((remaining / 10).min(REPLY_RESERVE));
    let what = hop.to_string();
    if remaining.is_zero() {
        return Err(Failed::NoTimeLeft(Status::deadline_exceeded(format!(
            "deadline of {} ms used up before calling {what}",
            deadline.budget().as_millis()
        ))));
    }
    let given = per_try.map_or(remaining, |t| t.min(remaining));
    let mut request = Request::new(message);
    request.set_timeout(given);
    crate::stats::rpc_sent(&what);
    let sent = Instant::now();
    let timed_out = || {
        if given < remaining {
            Failed::TryTimedOut(Status::deadline_exceeded(format!(
                "{what} did not answer within its per-try timeout of {} ms",
                given.as_millis()
            )))
        } else {
            Failed::TimedOut(Status::deadline_exceeded(format!(
                "{what} did not answer within the remaining {} ms of the {} ms deadline",
                remaining.as_millis(),
                deadline.budget().as_millis()
            )))
        }
    };
    match tokio::time::timeout(given, make_call(request)).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        // The transport's own timer (a NATS request's timeout is the same given time)
        // can fire just before ours: that is this call timing out, not the dependency
        // answering DEADLINE_EXCEEDED.
        Ok(Err(status)) if status.code() == Code::DeadlineExceeded && sent.elapsed() >= given => Err(timed_out()),
        Ok(Err(status)) => Err(Failed::Callee(status)),
        Err(_elapsed) => Err(timed_out()),
    }
}

/// Rewrites a dependency's error so that the caller's client learns which hop failed,
/// and is not told its own request was wrong when it was this service's request that
/// the dependency refused. Codes that describe the request (`INVALID_ARGUMENT`,
/// `OUT_OF_RANGE`, `FAILED_PRECONDITION`, `NOT_FOUND`, and likewise `ALREADY_EXISTS`,
/// `PERMISSION_DENIED`, `UNAUTHENTICATED`, `UNIMPLEMENTED`) describe the request this
/// service built: passed on, they would send the client looking for a mistake it did
/// not make (e.g. "ids has 1005 entries" for a `UserOrders` that named one user), so
/// they become `INTERNAL`. The one exception is a `NOT_FOUND` for an id the client
/// itself sent ([`Hop::looking_up_the_clients_id`]).
pub fn blame(hop: Hop, status: Status) -> Status {
    let what = hop.to_string();
    let detail = status.message();
    match status.code() {
        Code::NotFound if hop.not_found_is_the_clients => status,
        code @ (Code::NotFound
        | Code::InvalidArgument
        | Code::OutOfRange
        | Code::FailedPrecondition
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::Unimplemented) => {
            tracing::error!(hop = %what, ?code, detail, "a dependency refused a request this service made");
            Status::internal(format!("{what} refused the request this service made it ({code:?}: {detail})"))
        }
        Code::Unavailable => Status::unavailable(format!("{} is unavailable ({what}: {detail})", hop.dependency)),
        Code::DeadlineExceeded | Code::Cancelled => {
            Status::deadline_exceeded(format!("{what} ran out of time: {detail}"))
        }
        code => Status::new(code, format!("{what} failed: {detail}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_rejects_junk() {
        assert_eq!(parse_grpc_timeout("1500m"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1M"), Some(Duration::from_secs(60)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("250u"), Some(Duration::from_micros(250)));
        assert_eq!(parse_grpc_timeout("99n"), Some(Duration::from_nanos(99)));
        for junk in ["", "m", "12", "12x", "123456789S", "-1S", "1.5S"] {
            assert_eq!(parse_grpc_timeout(junk), None, "{junk}");
        }
    }

    #[test]
    fn incoming_timeout_wins_over_default() {
        let mut request = Request::new(());
        request.metadata_mut().insert("grpc-timeout", "300m".parse().unwrap());
        let d = Deadline::of(&request, Duration::from_secs(5));
        assert_eq!(d.budget(), Duration::from_millis(300));
        let d = Deadline::of(&Request::new(()), Duration::from_secs(5));
        assert_eq!(d.budget(), Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_silent_dependency_costs_the_remaining_deadline_and_no_more() {
        let deadline = Deadline::after(Duration::from_millis(50));
        let err = call(Hop::new("products", "GetProduct"), deadline, (), |_req| async {
            std::future::pending::<Result<tonic::Response<()>, Status>>().await
        })
        .await
        .unwrap_err();
        assert_eq!(err.code(), Code::DeadlineExceeded);
        assert!(err.message().contains("products.GetProduct"), "{}", err.message());
    }

    #[tokio::test]
    async fn the_request_carries_the_remaining_time() {
        let deadline = Deadline::after(Duration::from_secs(10));
        let seen = call(Hop::new("users", "GetUser"), deadline, (), |req| async move {
            let header = req.metadata().get("grpc-timeout").unwrap().to_str().unwrap().to_owned();
            Ok(tonic::Response::new(header))
        })
        .await
        .unwrap();
        let carried = parse_grpc_timeout(&seen).unwrap();
        assert!(carried <= Duration::from_secs(10) - REPLY_RESERVE && carried > Duration::from_secs(9), "{seen}");
    }

    #[tokio::test]
    async fn a_down_dependency_is_named() {
        let deadline = Deadline::after(Duration::from_secs(1));
        let err = call(Hop::new("users", "GetUser"), deadline, (), |_req| async {
            Err::<tonic::Response<()>, _>(Status::unavailable("tcp connect error"))
        })
        .await
        .unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
        assert!(err.message().starts_with("users is unavailable"), "{}", err.message());
    }

    #[tokio::test]
    async fn a_dependency_refusing_our_request_is_internal_and_named() {
        let deadline = Deadline::after(Duration::from_secs(1));
        let hop = Hop::new("products", "GetProducts");
        for code in [Code::InvalidArgument, Code::OutOfRange, Code::FailedPrecondition, Code::NotFound] {
            let err = call(hop, deadline, (), |_req| async move {
                Err::<tonic::Response<()>, _>(Status::new(code, "ids has 1005 entries; at most 1000 per call"))
            })
            .await
            .unwrap_err();
            assert_eq!(err.code(), Code::Internal, "{code:?} became {err:?}");
            assert!(err.message().contains("products.GetProducts"), "{}", err.message());
            assert!(err.message().contains("ids has 1005 entries"), "{}", err.message());
        }
    }

    #[test]
    fn not_found_for_the_clients_own_id_stays_not_found() {
        let get_user = Hop::new("users", "GetUser");
        let unknown = || Status::not_found("no user usr-00000000ffffffff");
        let err = blame(get_user.looking_up_the_clients_id(), unknown());
        assert_eq!((err.code(), err.message()), (Code::NotFound, "no user usr-00000000ffffffff"));
        // Not the client's id: the dependency disagrees with this service, not the client.
        assert_eq!(blame(get_user, unknown()).code(), Code::Internal);
        // Even for the client's id, a malformed request is this service's fault.
        let err = blame(get_user.looking_up_the_clients_id(), Status::invalid_argument("id is malformed"));
        assert_eq!(err.code(), Code::Internal);
    }
}
