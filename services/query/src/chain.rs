//! The call chain behind `UserOrders` in sync and bus-rpc modes: users.GetUser together
//! with orders.ListOrdersByUser (page after page), as any team that measured would
//! write them, then products.GetProducts for the distinct products (in batches the
//! products service accepts, sent together): two sequential hops, not three. Each call
//! gets only what is left of the client's deadline, and the answer fails if any call
//! fails.
//! [`Owners`] is how the calls travel: gRPC (`sync.rs`) or NATS (`bus.rs`).

use std::{collections::HashMap, future::Future};

use common::{
    config::Policy,
    deadline::{Deadline, Hop},
    error::ApiError,
    names::{methods, MAX_ORDERS_PAGE_SIZE, MAX_PRODUCTS_PER_GET, ORDERS, PRODUCTS, USERS},
    proto::{
        GetProductsRequest, GetProductsResponse, GetUserRequest, ListOrdersByUserRequest, ListOrdersByUserResponse,
        Order, Product, User, UserOrdersResponse,
    },
};
use tonic::{Code, Status};

use crate::{assemble, assemble_without_products, Source};

/// The user is the one the client asked for: an unknown one is the client's `NOT_FOUND`.
/// Every call here is a read: the hardened policy may retry it.
pub const GET_USER: Hop = Hop::new(USERS, methods::GET_USER).looking_up_the_clients_id().idempotent();
/// Any refusal of these is this service's fault, whatever the code (see `deadline::blame`).
pub const LIST_ORDERS: Hop = Hop::new(ORDERS, methods::LIST_ORDERS_BY_USER).idempotent();
pub const GET_PRODUCTS: Hop = Hop::new(PRODUCTS, methods::GET_PRODUCTS).idempotent();

/// The three owners' calls, each made within `deadline` as its hop (errors already
/// blamed, as `deadline::call` does), each on the shard that holds its id: users by the
/// user, orders by their user, products by the (first) product.
pub trait Owners: Send + Sync + 'static {
    fn get_user(
        &self,
        message: GetUserRequest,
        deadline: Deadline,
    ) -> impl Future<Output = Result<User, Status>> + Send;
    fn list_orders_by_user(
        &self,
        message: ListOrdersByUserRequest,
        deadline: Deadline,
    ) -> impl Future<Output = Result<ListOrdersByUserResponse, Status>> + Send;
    /// `message`'s ids are all of one shard of products (see [`Chain`]'s batches).
    fn get_products(
        &self,
        message: GetProductsRequest,
        deadline: Deadline,
    ) -> impl Future<Output = Result<GetProductsResponse, Status>> + Send;
}

/// A [`Source`] that asks the owners while the client waits.
pub struct Chain<O> {
    pub owners: O,
    /// Whether an unavailable products service (down, or its breaker open) gives a
    /// partial answer instead of an error: graceful degradation, hardened policy only.
    pub degrade: bool,
}

impl<O> Chain<O> {
    pub fn with_policy(owners: O, policy: Policy) -> Self {
        Self { owners, degrade: policy == Policy::Hardened }
    }
}

/// All of a user's orders, oldest first: follows `ListOrdersByUser` pages (of the largest
/// size, the fewest round trips) until the last, each fetched by `page`. Each page is a
/// call of its own, counted as one in `Admin.Stats`.
pub async fn all_orders<F, Fut>(user_id: &str, mut page: F) -> Result<Vec<Order>, Status>
where
    F: FnMut(ListOrdersByUserRequest) -> Fut,
    Fut: Future<Output = Result<ListOrdersByUserResponse, Status>>,
{
    let mut orders = Vec::new();
    let mut page_token = String::new();
    loop {
        let message =
            ListOrdersByUserRequest { user_id: user_id.to_owned(), page_size: MAX_ORDERS_PAGE_SIZE, page_token };
        let answer = page(message).await?;
        orders.extend(answer.orders);
        if answer.next_page_token.is_empty() {
            return Ok(orders);
        }
        page_token = answer.next_page_token;
    }
}

impl<O: Owners> Chain<O> {
    /// The products with these ids (distinct, at most one lookup each), as the products
    /// service has them now.
    ///
    /// Each shard of products is asked for its own ids, in batches of at most
    /// `MAX_PRODUCTS_PER_GET`, all sent concurrently: the chain then waits for the
    /// slowest batch rather than for their sum, and every batch shares the one deadline.
    /// The first batch to fail fails the answer and drops the others.
    async fn products(&self, ids: &[String], deadline: Deadline) -> Result<HashMap<String, Product>, Status> {
        let by_shard = common::shards::by_shard(ids);
        let batches = (by_shard.values())
            .flat_map(|ids| ids.chunks(MAX_PRODUCTS_PER_GET))
            .map(|batch| self.owners.get_products(GetProductsRequest { ids: batch.to_vec() }, deadline));
        let answers = futures::future::try_join_all(batches).await?;
        Ok(answers.into_iter().flat_map(|a| a.products).map(|p| (p.id.clone(), p)).collect())
    }
}

impl<O: Owners> Source for Chain<O> {
    async fn user_orders(&self, user_id: &str, deadline: Deadline) -> Result<UserOrdersResponse, ApiError> {
        // Independent calls go out together; the user's answer is looked at first, so an
        // unknown user is the client's NOT_FOUND whatever orders said.
        let (user, orders) = tokio::join!(
            self.owners.get_user(GetUserRequest { id: user_id.to_owned() }, deadline),
            all_orders(user_id, |message| self.owners.list_orders_by_user(message, deadline))
        );
        let (user, orders) = (user?, orders?);
        let mut ids: Vec<String> = orders.iter().map(|o| o.product_id.clone()).collect();
        ids.sort_unstable();
        ids.dedup();
        match self.products(&ids, deadline).await {
            Ok(products) => assemble(user, orders, &products),
            // The user and their orders are known; only today's product details are
            // not: a careful team answers with what it has, and says so.
            Err(status) if self.degrade && status.code() == Code::Unavailable => {
                tracing::debug!(reason = status.message(), "answering without products");
                Ok(assemble_without_products(user, orders, status.message().to_owned()))
            }
            Err(status) => Err(status.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Mutex, time::Duration};

    use common::proto::Order;
    use tokio::sync::Notify;

    use super::*;

    /// Owners whose users answer only once orders has been asked: a chain that waits
    /// for the user before it asks for the orders never gets an answer.
    #[derive(Default)]
    struct Gated {
        orders_asked: Notify,
        user_fails: bool,
        calls: Mutex<Vec<&'static str>>,
    }

    impl Owners for Gated {
        async fn get_user(&self, message: GetUserRequest, _: Deadline) -> Result<User, Status> {
            self.orders_asked.notified().await;
            self.calls.lock().unwrap().push("users");
            match self.user_fails {
                true => Err(Status::not_found(format!("no user {}", message.id))),
                false => Ok(User { id: message.id, name: "Ada".into(), ..Default::default() }),
            }
        }

        async fn list_orders_by_user(
            &self,
            message: ListOrdersByUserRequest,
            _: Deadline,
        ) -> Result<ListOrdersByUserResponse, Status> {
            self.calls.lock().unwrap().push("orders");
            self.orders_asked.notify_one();
            let order = Order {
                id: "o-1".into(),
                user_id: message.user_id,
                product_id: "p-1".into(),
                quantity: 1,
                unit_price_cents: 100,
                ..Default::default()
            };
            Ok(ListOrdersByUserResponse { orders: vec![order], next_page_token: String::new() })
        }

        async fn get_products(&self, message: GetProductsRequest, _: Deadline) -> Result<GetProductsResponse, Status> {
            self.calls.lock().unwrap().push("products");
            let products = (message.ids.into_iter())
                .map(|id| Product { id, title: "Lamp".into(), price_cents: 120, ..Default::default() })
                .collect();
            Ok(GetProductsResponse { products })
        }
    }

    async fn user_orders(owners: Gated) -> (Result<UserOrdersResponse, ApiError>, Vec<&'static str>) {
        let chain = Chain::with_policy(owners, Policy::Naive);
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            chain.user_orders("u-1", Deadline::after(Duration::from_secs(5))),
        )
        .await
        .expect("the chain asked for the user and waited for it before asking for the orders");
        (answer, chain.owners.calls.into_inner().unwrap())
    }

    #[tokio::test]
    async fn users_and_orders_are_asked_together_then_products() {
        let (answer, calls) = user_orders(Gated::default()).await;
        assert_eq!(answer.unwrap().items.len(), 1);
        assert_eq!(calls, ["orders", "users", "products"]);
    }

    /// Owners that answer at once (as [`Gated`]'s orders and products do), products failing
    /// with `products` if set.
    struct Fixed {
        products: Option<Code>,
    }

    impl Owners for Fixed {
        async fn get_user(&self, message: GetUserRequest, _: Deadline) -> Result<User, Status> {
            Ok(User { id: message.id, ..Default::default() })
        }

        async fn list_orders_by_user(
            &self,
            message: ListOrdersByUserRequest,
            deadline: Deadline,
        ) -> Result<ListOrdersByUserResponse, Status> {
            Gated::default().list_orders_by_user(message, deadline).await
        }

        async fn get_products(
            &self,
            message: GetProductsRequest,
            deadline: Deadline,
        ) -> Result<GetProductsResponse, Status> {
            match self.products {
                Some(code) => Err(Status::new(code, "products is unavailable (tcp connect error)")),
                None => Gated::default().get_products(message, deadline).await,
            }
        }
    }

    #[tokio::test]
    async fn only_a_chain_that_degrades_answers_partial_and_only_when_products_is_unavailable() {
        let deadline = Deadline::after(Duration::from_secs(1));
        let ask = |products, policy| async move {
            Chain::with_policy(Fixed { products }, policy).user_orders("u-1", deadline).await
        };
        let partial = ask(Some(Code::Unavailable), Policy::Hardened).await.expect("degraded, not failed");
        assert!(partial.partial && partial.partial_reason.contains("products is unavailable"), "{partial:?}");
        let rows: Vec<_> = partial
            .items
            .iter()
            .map(|i| (i.order_id.as_str(), i.title.as_str(), i.unit_price_cents, i.current_price_cents, i.quantity))
            .collect();
        assert_eq!(rows, [("o-1", "", 100, 0, 1)], "the order and its price then; no product details");
        let full = ask(None, Policy::Hardened).await.expect("answered");
        assert!(!full.partial && full.partial_reason.is_empty() && full.items[0].current_price_cents == 120);
        for (code, policy) in [
            (Code::Unavailable, Policy::Naive),
            (Code::Unavailable, Policy::RetryStorm),
            (Code::DeadlineExceeded, Policy::Hardened),
            (Code::Internal, Policy::Hardened),
        ] {
            let status = Status::from(ask(Some(code), policy).await.expect_err("not degraded"));
            assert_eq!(status.code(), code, "{policy}");
        }
    }

    #[tokio::test]
    async fn an_unknown_user_is_still_the_clients_not_found() {
        let (answer, calls) = user_orders(Gated { user_fails: true, ..Default::default() }).await;
        let status = Status::from(answer.expect_err("an unknown user"));
        assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
        assert_eq!(calls, ["orders", "users"], "no products asked for an unknown user");
    }
}
