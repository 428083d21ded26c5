//! The `Query` gRPC API: validation, then the [`Source`].

use std::time::Duration;

use common::{
    deadline::Deadline,
    error::check_id,
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
}

#[tonic::async_trait]
impl<S: Source> Query for QueryApi<S> {
    async fn user_orders(&self, request: Request<UserOrdersRequest>) -> Result<Response<UserOrdersResponse>, Status> {
        let deadline = Deadline::of(&request, self.default_deadline);
        let user_id = request.into_inner().user_id;
        check_id("user_id", USER_ID_PREFIX, &user_id)?;
        Ok(Response::new(self.source.user_orders(&user_id, deadline).await?))
    }
}
