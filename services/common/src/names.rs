//! Names that several crates must agree on live here and nowhere else.

/// The four services of the feature set, in start order (dependencies first).
pub const SERVICES: [&str; 4] = [USERS, PRODUCTS, ORDERS, QUERY];

pub const USERS: &str = "users";
pub const PRODUCTS: &str = "products";
pub const ORDERS: &str = "orders";
pub const QUERY: &str = "query";
/// The broker, in async and bus-rpc modes (a component of the topology, not a
/// service). On a three-node cluster it names the whole cluster, every node at once.
pub const NATS: &str = "nats";
/// The nodes of a three-node broker cluster (`--brokers 3`), each a component.
pub const NATS_NODES: [&str; 3] = ["nats-1", "nats-2", "nats-3"];
/// The replicas of the query service when it runs as several (`--replicas N`, at most
/// five), each a component of the topology with a data dir, and in async mode a durable
/// consumer, of its own; `query` then names them all. A single instance keeps the name
/// `query`.
pub const QUERY_REPLICAS: [&str; 5] = ["query-1", "query-2", "query-3", "query-4", "query-5"];
/// The shards of an owner when it runs as several (`--replicas owners=N`): each the
/// single writer of its part of the entities (`common::ids::Shard`), with a data dir
/// of its own; the owner's name then names them all.
pub const USERS_SHARDS: [&str; 5] = ["users-1", "users-2", "users-3", "users-4", "users-5"];
pub const PRODUCTS_SHARDS: [&str; 5] = ["products-1", "products-2", "products-3", "products-4", "products-5"];
pub const ORDERS_SHARDS: [&str; 5] = ["orders-1", "orders-2", "orders-3", "orders-4", "orders-5"];

/// The names of the instances of `service` when it runs as several: its replicas
/// (query) or its shards (an owner), `<service>-1` …
pub fn instance_names(service: &str) -> Option<&'static [&'static str; 5]> {
    match service {
        USERS => Some(&USERS_SHARDS),
        PRODUCTS => Some(&PRODUCTS_SHARDS),
        ORDERS => Some(&ORDERS_SHARDS),
        QUERY => Some(&QUERY_REPLICAS),
        _ => None,
    }
}

/// The service an instance belongs to (`query` for `query-2`, `users` for `users-1`),
/// `None` for a name that is no instance's.
pub fn replica_of(name: &str) -> Option<&'static str> {
    SERVICES.into_iter().find(|service| instance_names(service).is_some_and(|names| names.contains(&name)))
}

/// The one process of monolith mode, serving all four services (a component of the
/// topology in that mode, in place of the four).
pub const MONOLITH: &str = "monolith";

/// The internal RPCs, those one service makes to another: gRPC method names, and in
/// bus-rpc mode the last token of their subject (`common::bus::subject`).
pub mod methods {
    pub const GET_USER: &str = "GetUser";
    pub const GET_PRODUCT: &str = "GetProduct";
    pub const GET_PRODUCTS: &str = "GetProducts";
    pub const LIST_ORDERS_BY_USER: &str = "ListOrdersByUser";
}

/// Id prefixes: an id says which service owns it, which makes logs and errors readable.
pub const USER_ID_PREFIX: &str = "usr";
pub const PRODUCT_ID_PREFIX: &str = "prd";
pub const ORDER_ID_PREFIX: &str = "ord";

/// The deadline a service applies to a request whose client sent none.
pub const DEFAULT_DEADLINE_MS: u64 = 2_000;

/// Limits of the domain, shared by validation and by the seeder.
pub const MAX_QUANTITY: u32 = 1_000;
pub const MAX_NAME_LEN: usize = 200;
pub const MAX_PRODUCTS_PER_GET: usize = 1_000;
/// `ListOrdersByUser` pages: what a request with no `page_size` (0) gets, and the most
/// one may ask for, so that no answer grows with a user's history.
pub const DEFAULT_ORDERS_PAGE_SIZE: u32 = 100;
pub const MAX_ORDERS_PAGE_SIZE: u32 = 1_000;
