//! The `Query` gRPC API: validation, then the [`Source`]. The RPC is a domain function
//! on [`QueryApi`] returning an [`ApiError`]; the trait method only maps it to a `Status`.

use std::time::Duration;

use common::{
    deadline::Deadline,
    error::{check_id, ApiError},
    names::USER_ID_PREFIX,
    proto::{query_server::Query, UserOrdersRequest, UserOrdersResponse},
};
use tonic::{Request, Response, Status};

use crate::Source;

pub struct QueryApi<S> {
    source: S,
    /// Applied when a client sends no deadline of its own.
    default_deadline: Duration,
}

impl<S: Source> QueryApi<S> {
    pub fn new(source: S, default_deadline: Duration) -> Self {
        Self { source, default_deadline }
    }

    /// The user and the products they ordered, oldest order first.
    pub async fn user_orders(
        &self,
        req: UserOrdersRequest,
        deadline: Deadline,
    ) -> Result<UserOrdersResponse, ApiError> {
        check_id("user_id", USER_ID_PREFIX, &req.user_id)?;
        self.source.user_orders(&req.user_id, deadline).await
    }
}

#[tonic::async_trait]
impl<S: Source> Query for QueryApi<S> {
    async fn user_orders(&self, request: Request<UserOrdersRequest>) -> Result<Response<UserOrdersResponse>, Status> {
        let deadline = Deadline::of(&request, self.default_deadline);
        Ok(Response::new(QueryApi::user_orders(self, request.into_inner(), deadline).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_malformed_user_id_is_refused_before_the_source_is_asked() {
        let dir = tempfile::tempdir().expect("temp dir");
        let api = QueryApi::new(crate::events::View::open(dir.path()).expect("view"), Duration::from_secs(1));
        let deadline = Deadline::after(Duration::from_secs(1));
        for (user_id, needle) in [("", "user_id is empty"), ("prd-0000000000000001", "malformed")] {
            match api.user_orders(UserOrdersRequest { user_id: user_id.into() }, deadline).await {
                Err(ApiError::InvalidArgument(message)) => assert!(message.contains(needle), "{message}"),
                other => panic!("expected InvalidArgument for {user_id:?}, got {other:?}"),
            }
        }
        let unknown = UserOrdersRequest { user_id: "usr-00000000000000ff".into() };
        assert!(matches!(api.user_orders(unknown, deadline).await, Err(ApiError::NotFound(_))));
    }
}
