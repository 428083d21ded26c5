//! The `Orders` gRPC API. Validation of an order is the same in every mode; only the
//! [`Directory`] it asks differs. Each RPC is a domain function on [`OrdersApi`] returning
//! an [`ApiError`]; the trait method only maps it to a `Status`.

use std::time::Duration;

use common::{
    deadline::Deadline,
    error::{check_id, ApiError},
    names::{
        DEFAULT_ORDERS_PAGE_SIZE, MAX_ORDERS_PAGE_SIZE, MAX_QUANTITY, ORDERS, ORDER_ID_PREFIX, PRODUCT_ID_PREFIX,
        USER_ID_PREFIX,
    },
    proto::{orders_server::Orders, ListOrdersByUserRequest, ListOrdersByUserResponse, Order, PlaceOrderRequest},
};
use tonic::{Request, Response, Status};

use crate::{
    store::{NewOrder, OrderStore},
    Directory,
};

pub struct OrdersApi<D> {
    store: OrderStore,
    directory: D,
    /// Applied when a client sends no deadline of its own.
    default_deadline: Duration,
}

impl<D: Directory> OrdersApi<D> {
    pub fn new(store: OrderStore, directory: D, default_deadline: Duration) -> Self {
        Self { store, directory, default_deadline }
    }

    /// Validates the request, checks the user and product (concurrently: the order
    /// waits for the slower of the two, not their sum), then stores the order at the
    /// product's current price.
    pub async fn place_order(&self, req: PlaceOrderRequest, deadline: Deadline) -> Result<Order, ApiError> {
        check_id("user_id", USER_ID_PREFIX, &req.user_id)?;
        self.holds(&req.user_id)?;
        check_id("product_id", PRODUCT_ID_PREFIX, &req.product_id)?;
        if !(1..=MAX_QUANTITY).contains(&req.quantity) {
            return Err(ApiError::InvalidArgument(format!(
                "quantity must be between 1 and {MAX_QUANTITY}, got {}",
                req.quantity
            )));
        }
        let (user, product) = tokio::join!(
            self.directory.check_user(&req.user_id, deadline),
            self.directory.product(&req.product_id, deadline)
        );
        user?;
        let product = product?;
        let order = self
            .store
            .place(NewOrder {
                user_id: req.user_id,
                product_id: req.product_id,
                quantity: req.quantity,
                unit_price_cents: product.price_cents,
            })
            .await?;
        tracing::debug!(order_id = %order.id, "order placed");
        Ok(order)
    }

    /// `NotFound`, saying where they are, for the orders of a user of another shard:
    /// orders are partitioned by their user, orders shard K holding those of users
    /// shard K's users.
    fn holds(&self, user_id: &str) -> Result<(), ApiError> {
        let what = format!("user {user_id} (orders are partitioned by user)");
        self.store.shard().check_holds(ORDERS, &what, user_id).map_err(ApiError::NotFound)
    }

    /// One page of a user's orders, oldest first, and the token of the next page.
    pub async fn list_orders_by_user(
        &self,
        req: ListOrdersByUserRequest,
    ) -> Result<ListOrdersByUserResponse, ApiError> {
        check_id("user_id", USER_ID_PREFIX, &req.user_id)?;
        self.holds(&req.user_id)?;
        let limit = page_size(req.page_size)?;
        let after = page_token(&req.page_token)?;
        let page = self.store.by_user(&req.user_id, after, limit)?;
        self.store.outbox().before_reply().await?;
        Ok(ListOrdersByUserResponse { orders: page.orders, next_page_token: page.next_after.unwrap_or_default() })
    }
}

#[tonic::async_trait]
impl<D: Directory> Orders for OrdersApi<D> {
    async fn place_order(&self, request: Request<PlaceOrderRequest>) -> Result<Response<Order>, Status> {
        let deadline = Deadline::of(&request, self.default_deadline);
        Ok(Response::new(OrdersApi::place_order(self, request.into_inner(), deadline).await?))
    }

    async fn list_orders_by_user(
        &self,
        request: Request<ListOrdersByUserRequest>,
    ) -> Result<Response<ListOrdersByUserResponse>, Status> {
        Ok(Response::new(OrdersApi::list_orders_by_user(self, request.into_inner()).await?))
    }
}

/// The number of orders a `ListOrdersByUser` page may hold.
fn page_size(asked: u32) -> Result<usize, ApiError> {
    match asked {
        0 => Ok(DEFAULT_ORDERS_PAGE_SIZE as usize),
        n if n <= MAX_ORDERS_PAGE_SIZE => Ok(n as usize),
        n => Err(ApiError::InvalidArgument(format!(
            "page_size {n} is above the maximum of {MAX_ORDERS_PAGE_SIZE}; 0 asks for the default of \
             {DEFAULT_ORDERS_PAGE_SIZE}"
        ))),
    }
}

/// The order a page starts after. A page token is the id of the last order of the
/// previous page (the store's position in the user's index); clients treat it as opaque.
fn page_token(token: &str) -> Result<Option<&str>, ApiError> {
    if token.is_empty() {
        return Ok(None);
    }
    common::ids::check_id("page_token", ORDER_ID_PREFIX, token).map_err(|_| {
        ApiError::InvalidArgument(format!(
            "page_token {token:?} is not a next_page_token of this service; leave it empty for the first page"
        ))
    })?;
    Ok(Some(token))
}

#[cfg(test)]
mod tests {
    //! Placing and listing orders on a real store in a temporary dir, with orders' own
    //! event-fed replica (a real sled projection, fed here by applying envelopes) as the
    //! directory: the domain does not know which directory it has.

    use common::{
        consumer::Projection,
        events::{product_created, product_price_changed, user_created},
        proto::{Product, User},
    };

    use super::*;
    use crate::events::Replica;

    const USER: &str = "usr-0000000000000001";
    const TEA: &str = "prd-0000000000000001";

    struct Fixture {
        api: OrdersApi<Replica>,
        replica: Replica,
        _dir: tempfile::TempDir,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = OrderStore::open(dir.path(), false, Default::default()).expect("store opens");
        let replica = Replica::open(store.db()).expect("replica opens");
        let api = OrdersApi::new(store, replica.clone(), Duration::from_secs(1));
        Fixture { api, replica, _dir: dir }
    }

    fn user(id: &str) -> User {
        User { id: id.into(), name: "Ann".into(), email: "ann@b.test".into(), created_at_unix_ms: 1 }
    }

    fn product(id: &str, price_cents: i64, version: u64) -> Product {
        Product { id: id.into(), title: "Tea".into(), price_cents, version }
    }

    fn order(user_id: &str, product_id: &str, quantity: u32) -> PlaceOrderRequest {
        PlaceOrderRequest { user_id: user_id.into(), product_id: product_id.into(), quantity }
    }

    fn soon() -> Deadline {
        Deadline::after(Duration::from_secs(1))
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

    #[track_caller]
    fn assert_not_replicated<T: std::fmt::Debug>(result: Result<T, ApiError>, id: &str) {
        match result {
            Err(ApiError::FailedPrecondition(message)) => {
                assert!(message.contains(id) && message.contains("replica"), "{message:?}")
            }
            other => panic!("expected FailedPrecondition naming {id}, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_malformed_id_or_a_quantity_outside_1_to_the_maximum_is_refused() {
        let f = fixture();
        assert_invalid(f.api.place_order(order("", TEA, 1), soon()).await, "user_id is empty");
        assert_invalid(f.api.place_order(order(TEA, TEA, 1), soon()).await, "user_id");
        assert_invalid(f.api.place_order(order(USER, "prd-1", 1), soon()).await, "product_id");
        assert_invalid(f.api.place_order(order(USER, TEA, 0), soon()).await, "got 0");
        let over = MAX_QUANTITY + 1;
        assert_invalid(f.api.place_order(order(USER, TEA, over), soon()).await, &format!("got {over}"));
    }

    #[tokio::test]
    async fn a_user_or_product_the_replica_has_not_seen_is_a_failed_precondition() {
        let f = fixture();
        assert!(f.replica.apply(&user_created(&user(USER))).expect("applied"));
        assert_not_replicated(f.api.place_order(order(USER, TEA, 1), soon()).await, TEA);
        assert!(f.replica.apply(&product_created(&product(TEA, 100, 1))).expect("applied"));
        let stranger = "usr-00000000000000ff";
        assert_not_replicated(f.api.place_order(order(stranger, TEA, 1), soon()).await, stranger);
    }

    #[tokio::test]
    async fn an_order_takes_the_newest_price_and_an_older_version_arriving_late_does_not_win() {
        let f = fixture();
        f.replica.apply(&user_created(&user(USER))).expect("applied");
        f.replica.apply(&product_created(&product(TEA, 100, 1))).expect("applied");
        f.replica.apply(&product_price_changed(&product(TEA, 300, 3), 200)).expect("applied");
        // Version 2 arrives after version 3 (events from one owner may be redelivered
        // out of order): it is recorded as applied, but the price stays version 3's.
        assert!(f.replica.apply(&product_price_changed(&product(TEA, 200, 2), 100)).expect("applied"));
        let placed = f.api.place_order(order(USER, TEA, 2), soon()).await.expect("placed");
        assert_eq!((placed.unit_price_cents, placed.quantity), (300, 2));
    }

    #[tokio::test]
    async fn the_replica_applies_an_event_once() {
        let f = fixture();
        let created = product_created(&product(TEA, 100, 1));
        assert!(f.replica.apply(&created).expect("applied"));
        f.replica.apply(&product_price_changed(&product(TEA, 150, 2), 100)).expect("applied");
        // A redelivery of the first event changes nothing: not even back to its price.
        assert!(!f.replica.apply(&created).expect("no error"), "a duplicate reports itself as not applied");
        f.replica.apply(&user_created(&user(USER))).expect("applied");
        let placed = f.api.place_order(order(USER, TEA, 1), soon()).await.expect("placed");
        assert_eq!(placed.unit_price_cents, 150);
    }

    #[tokio::test]
    async fn placed_orders_list_for_their_user_and_bad_page_arguments_are_refused() {
        let f = fixture();
        f.replica.apply(&user_created(&user(USER))).expect("applied");
        f.replica.apply(&product_created(&product(TEA, 100, 1))).expect("applied");
        let first = f.api.place_order(order(USER, TEA, 1), soon()).await.expect("placed");
        let second = f.api.place_order(order(USER, TEA, 3), soon()).await.expect("placed");
        let list = |page_size, page_token: &str| ListOrdersByUserRequest {
            user_id: USER.into(),
            page_size,
            page_token: page_token.into(),
        };
        let page = f.api.list_orders_by_user(list(0, "")).await.expect("listed");
        assert_eq!(page.orders, vec![first.clone(), second.clone()]);
        assert_eq!(page.next_page_token, "");
        let page = f.api.list_orders_by_user(list(1, "")).await.expect("listed");
        assert_eq!((page.orders, page.next_page_token.as_str()), (vec![first.clone()], first.id.as_str()));

        assert_invalid(f.api.list_orders_by_user(list(MAX_ORDERS_PAGE_SIZE + 1, "")).await, "above the maximum");
        assert_invalid(f.api.list_orders_by_user(list(1, "garbage")).await, "page_token \"garbage\"");
        let mut bad_user = list(1, "");
        bad_user.user_id = "usr".into();
        assert_invalid(f.api.list_orders_by_user(bad_user).await, "user_id");
    }
}
