//! The monolith: all four services in one process, from one sled database.
//!
//! The same domain as the distributed modes, assembled differently: the users,
//! products and orders stores open their trees in one `sled::Db`; orders'
//! [`orders::Directory`] and query's [`query::chain::Owners`] call the other services'
//! domain functions directly ([`InProcess`], [`InProcessOwners`]), so validation, the
//! three-step `UserOrders` chain and every write's flush before its reply are the
//! services' own code, and no request leaves the process: `Admin.Stats` counts no
//! inter-service RPCs. It is the floor that shows what distribution costs.

use std::{future::Future, path::Path, sync::Arc, time::Duration};

use common::{
    config::ServiceArgs,
    deadline::Deadline,
    error::ApiError,
    names::{methods, ORDERS, PRODUCTS, USERS},
    proto::{
        orders_server::OrdersServer, products_server::ProductsServer, query_server::QueryServer,
        users_server::UsersServer, GetProductRequest, GetProductsRequest, GetProductsResponse, GetUserRequest,
        ListOrdersByUserRequest, ListOrdersByUserResponse, Product, User,
    },
    serve::{Broker, Services},
    store::OpenError,
};
use orders::api::OrdersApi;
use products::{api::ProductsApi, store::ProductStore};
use query::{api::QueryApi, chain::Chain};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use users::{api::UsersApi, store::UserStore};

/// Orders' directory in the monolith: the users' and products' domain functions, called
/// in process.
pub struct InProcess {
    users: Arc<UsersApi>,
    products: Arc<ProductsApi>,
}

/// Query's owners in the monolith: users, orders and products called in process.
pub struct InProcessOwners {
    users: Arc<UsersApi>,
    orders: Arc<OrdersApi<InProcess>>,
    products: Arc<ProductsApi>,
}

/// Runs an in-process call within what is left of the request's deadline, as a hop
/// over the network would be: past it, `DEADLINE_EXCEEDED` naming the call. Nothing is
/// counted as an inter-service RPC.
async fn within<T>(
    service: &str,
    method: &str,
    deadline: Deadline,
    call: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let remaining = deadline.remaining();
    if remaining.is_zero() {
        return Err(ApiError::Dependency(Status::deadline_exceeded(format!(
            "deadline of {} ms used up before calling {service}.{method} (in process)",
            deadline.budget().as_millis()
        ))));
    }
    match tokio::time::timeout(remaining, call).await {
        Ok(answer) => answer,
        Err(_elapsed) => Err(ApiError::Dependency(Status::deadline_exceeded(format!(
            "{service}.{method} (in process) did not answer within the remaining {} ms of the {} ms deadline",
            remaining.as_millis(),
            deadline.budget().as_millis()
        )))),
    }
}

impl orders::Directory for InProcess {
    async fn check_user(&self, user_id: &str, deadline: Deadline) -> Result<(), ApiError> {
        let request = GetUserRequest { id: user_id.to_owned() };
        within(USERS, methods::GET_USER, deadline, self.users.get_user(request)).await.map(|_| ())
    }

    async fn product(&self, product_id: &str, deadline: Deadline) -> Result<Product, ApiError> {
        let request = GetProductRequest { id: product_id.to_owned() };
        within(PRODUCTS, methods::GET_PRODUCT, deadline, self.products.get_product(request)).await
    }
}

impl query::chain::Owners for InProcessOwners {
    async fn get_user(&self, message: GetUserRequest, deadline: Deadline) -> Result<User, Status> {
        Ok(within(USERS, methods::GET_USER, deadline, self.users.get_user(message)).await?)
    }

    async fn list_orders_by_user(
        &self,
        message: ListOrdersByUserRequest,
        deadline: Deadline,
    ) -> Result<ListOrdersByUserResponse, Status> {
        Ok(within(ORDERS, methods::LIST_ORDERS_BY_USER, deadline, self.orders.list_orders_by_user(message)).await?)
    }

    async fn get_products(
        &self,
        message: GetProductsRequest,
        deadline: Deadline,
    ) -> Result<GetProductsResponse, Status> {
        Ok(within(PRODUCTS, methods::GET_PRODUCTS, deadline, self.products.get_products(message)).await?)
    }
}

/// The four APIs over one database.
pub struct Monolith {
    pub users: Arc<UsersApi>,
    pub products: Arc<ProductsApi>,
    pub orders: Arc<OrdersApi<InProcess>>,
    pub query: Arc<QueryApi<Chain<InProcessOwners>>>,
    db: sled::Db,
}

impl Monolith {
    /// Opens (creating if needed) the one database in `dir` and the stores in it.
    /// `default_deadline`: for a request whose client sent none.
    pub fn open(dir: &Path, default_deadline: Duration) -> Result<Self, OpenError> {
        let db = common::store::open(dir)?;
        let err = |source| OpenError::Other { dir: dir.display().to_string(), source };
        let users = Arc::new(UsersApi::new(UserStore::in_db(&db, false, Default::default()).map_err(err)?));
        let products = Arc::new(ProductsApi::new(ProductStore::in_db(&db, false, Default::default()).map_err(err)?));
        let directory = InProcess { users: users.clone(), products: products.clone() };
        let order_store = orders::store::OrderStore::in_db(&db, false, Default::default()).map_err(err)?;
        let orders = Arc::new(OrdersApi::new(order_store, directory, default_deadline));
        let owners = InProcessOwners { users: users.clone(), orders: orders.clone(), products: products.clone() };
        let query =
            Arc::new(QueryApi::new(Chain::with_policy(owners, common::config::Policy::Naive), default_deadline));
        Ok(Self { users, products, orders, query, db })
    }

    /// The one database all four services keep their data in.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }
}

/// Opens the database in `args.data_dir` and serves the four services (plus health,
/// reflection and `Admin.Stats`) on `listener` until `shutdown`, then flushes.
/// `--mode` is monolith (sync, the options' default, is taken as monolith too); a mode
/// that needs a broker is refused.
pub async fn run(listener: TcpListener, args: &ServiceArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    if args.mode.uses_broker() {
        anyhow::bail!("the monolith serves monolith mode only (--mode monolith), not {}", args.mode);
    }
    if args.nats_url.is_some() {
        tracing::warn!("the monolith uses no broker: --nats-url is not used");
    }
    let monolith = Monolith::open(&args.data_dir, args.default_deadline())?;
    let services = Services::new(UsersServer::from_arc(monolith.users.clone()))
        .and(ProductsServer::from_arc(monolith.products.clone()))
        .and(OrdersServer::from_arc(monolith.orders.clone()))
        .and(QueryServer::from_arc(monolith.query.clone()));
    let db = monolith.db().clone();
    Ok(common::serve::serve_all_until_shutdown(listener, services, args, Broker::None, Some(&db), shutdown).await?)
}
