//! The `Users` gRPC API: validation, then the store. Each RPC is a domain function on
//! [`UsersApi`] returning an [`ApiError`]; the trait method only maps it to a `Status`.

use common::{
    error::{check_id, ApiError},
    names::{MAX_NAME_LEN, USERS, USER_ID_PREFIX},
    proto::{users_server::Users, CreateUserRequest, GetUserRequest, User},
};
use tonic::{Request, Response, Status};

use crate::store::UserStore;

pub struct UsersApi {
    store: UserStore,
}

impl UsersApi {
    pub fn new(store: UserStore) -> Self {
        Self { store }
    }

    /// Validates the new user's fields, then stores it (durable before returning).
    pub async fn create_user(&self, req: CreateUserRequest) -> Result<User, ApiError> {
        let (name, email) = validate_new_user(req)?;
        let user = self.store.create(name, email).await?;
        tracing::debug!(user_id = %user.id, "user created");
        Ok(user)
    }

    /// The user with this id; `NotFound` if there is none.
    pub async fn get_user(&self, req: GetUserRequest) -> Result<User, ApiError> {
        check_id("id", USER_ID_PREFIX, &req.id)?;
        let here = self.store.shard().check_holds(USERS, &format!("user {}", req.id), &req.id);
        here.map_err(ApiError::NotFound)?;
        let user = self.store.get(&req.id)?;
        self.store.outbox().before_reply().await?;
        user.ok_or_else(|| ApiError::NotFound(format!("user {} not found", req.id)))
    }
}

/// Checks a new user's fields; returns them trimmed.
pub fn validate_new_user(req: CreateUserRequest) -> Result<(String, String), ApiError> {
    let name = req.name.trim();
    if name.is_empty() {
        return Err(ApiError::InvalidArgument("name is empty".into()));
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(ApiError::InvalidArgument(format!("name is longer than {MAX_NAME_LEN} characters")));
    }
    let email = req.email.trim();
    let well_formed = email
        .split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty() && !domain.contains('@'))
        && !email.chars().any(char::is_whitespace);
    if !well_formed {
        return Err(ApiError::InvalidArgument(format!(
            "email {email:?} is not an address: expected one @ with text on both sides and no spaces"
        )));
    }
    if email.len() > MAX_NAME_LEN {
        return Err(ApiError::InvalidArgument(format!("email is longer than {MAX_NAME_LEN} characters")));
    }
    Ok((name.to_owned(), email.to_owned()))
}

#[tonic::async_trait]
impl Users for UsersApi {
    async fn create_user(&self, request: Request<CreateUserRequest>) -> Result<Response<User>, Status> {
        Ok(Response::new(UsersApi::create_user(self, request.into_inner()).await?))
    }

    async fn get_user(&self, request: Request<GetUserRequest>) -> Result<Response<User>, Status> {
        Ok(Response::new(UsersApi::get_user(self, request.into_inner()).await?))
    }
}

#[cfg(test)]
mod tests {
    //! The domain functions on a real store in a temporary dir, and once through a real
    //! gRPC server on a loopback port, to see the codes the client gets.

    use common::{
        config::{Mode, ServiceArgs},
        proto::users_client::UsersClient,
    };
    use tokio_util::sync::CancellationToken;
    use tonic::Code;

    use super::*;

    fn api() -> (UsersApi, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        (UsersApi::new(UserStore::open(dir.path(), false, Default::default()).expect("store opens")), dir)
    }

    fn new_user(name: &str, email: &str) -> CreateUserRequest {
        CreateUserRequest { name: name.into(), email: email.into() }
    }

    #[track_caller]
    fn assert_invalid<T: std::fmt::Debug>(result: Result<T, ApiError>, needle: &str) {
        match result {
            Err(ApiError::InvalidArgument(message)) => {
                assert!(message.contains(needle), "{message:?} does not mention {needle:?}")
            }
            other => panic!("expected InvalidArgument mentioning {needle:?}, got {other:?}"),
        }
    }

    #[test]
    fn an_empty_or_blank_name_is_refused() {
        assert_invalid(validate_new_user(new_user("", "a@b.test")), "name is empty");
        assert_invalid(validate_new_user(new_user(" \t ", "a@b.test")), "name is empty");
    }

    #[test]
    fn a_name_or_email_over_the_limit_is_refused_and_one_at_the_limit_is_not() {
        let at_limit = "é".repeat(MAX_NAME_LEN);
        assert!(validate_new_user(new_user(&at_limit, "a@b.test")).is_ok(), "the limit counts characters, not bytes");
        assert_invalid(validate_new_user(new_user(&format!("{at_limit}x"), "a@b.test")), "name is longer");
        let long_email = format!("{}@b.test", "a".repeat(MAX_NAME_LEN));
        assert_invalid(validate_new_user(new_user("Ann", &long_email)), "email is longer");
    }

    #[test]
    fn an_email_without_exactly_one_at_between_text_or_with_spaces_is_refused() {
        for email in ["", "ann", "@b.test", "ann@", "a@b@c", "a nn@b.test", "ann@b .test"] {
            assert_invalid(validate_new_user(new_user("Ann", email)), "is not an address");
        }
    }

    #[test]
    fn name_and_email_are_trimmed() {
        let (name, email) = validate_new_user(new_user("  Ann Lee ", " ann@b.test\n")).expect("valid");
        assert_eq!((name.as_str(), email.as_str()), ("Ann Lee", "ann@b.test"));
    }

    #[tokio::test]
    async fn a_created_user_reads_back_and_ids_are_checked_before_the_store() {
        let (api, _dir) = api();
        let user = api.create_user(new_user(" Ann ", "ann@b.test")).await.expect("created");
        assert_eq!(user.name, "Ann");
        assert!(user.id.starts_with("usr-"), "{}", user.id);
        let read = api.get_user(GetUserRequest { id: user.id.clone() }).await.expect("read back");
        assert_eq!(read, user);

        let unknown = "usr-00000000000000ff";
        match api.get_user(GetUserRequest { id: unknown.into() }).await {
            Err(ApiError::NotFound(message)) => assert!(message.contains(unknown), "{message}"),
            other => panic!("expected NotFound, got {other:?}"),
        }
        assert_invalid(api.get_user(GetUserRequest { id: String::new() }).await, "id is empty");
        assert_invalid(api.get_user(GetUserRequest { id: "prd-0000000000000001".into() }).await, "malformed");
        assert_invalid(api.create_user(new_user("", "ann@b.test")).await, "name is empty");
    }

    #[tokio::test]
    async fn the_server_answers_with_the_status_codes_of_the_domain_errors() {
        let dir = tempfile::tempdir().expect("temp dir");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let args = ServiceArgs {
            listen: addr,
            data_dir: dir.path().join("users"),
            addr_file: None,
            default_deadline_ms: 2_000,
            mode: Mode::Sync,
            nats_url: None,
            duplicate_window_ms: 1_000,
            stream_replicas: 1,
            policy: common::config::Policy::Naive,
            max_in_flight: common::config::DEFAULT_MAX_IN_FLIGHT,
            shard: None,
            owner_shards: 1,
        };
        let shutdown = CancellationToken::new();
        let server = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { crate::run(listener, &args, shutdown).await }
        });
        let mut client = UsersClient::new(common::channel(addr));

        let user = client.create_user(new_user("Ann", "ann@b.test")).await.expect("created").into_inner();
        let read = client.get_user(GetUserRequest { id: user.id.clone() }).await.expect("read").into_inner();
        assert_eq!(read, user);
        let codes = [
            client.create_user(new_user("Ann", "not-an-address")).await.map(|_| ()),
            client.get_user(GetUserRequest { id: "usr-1".into() }).await.map(|_| ()),
            client.get_user(GetUserRequest { id: "usr-00000000000000ff".into() }).await.map(|_| ()),
        ]
        .map(|r| r.expect_err("refused").code());
        assert_eq!(codes, [Code::InvalidArgument, Code::InvalidArgument, Code::NotFound]);

        shutdown.cancel();
        server.await.expect("server task").expect("server stops cleanly");
    }
}
