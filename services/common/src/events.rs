//! The events of async mode: names (stream, subjects, consumers) and how an envelope
//! is made for each change. Every name lives here and nowhere else.

use crate::proto::{
    envelope::Payload, Envelope, Order, OrderPlaced, Product, ProductCreated, ProductPriceChanged, User, UserCreated,
};

/// The one JetStream stream of every Cascade event (file storage).
pub const STREAM: &str = "CASCADE";
/// Every subject is under this prefix; the stream captures `cascade.>`.
pub const SUBJECT_PREFIX: &str = "cascade";
pub const STREAM_SUBJECTS: &str = "cascade.>";
pub const USER_CREATED: &str = "cascade.users.created";
pub const PRODUCT_CREATED: &str = "cascade.products.created";
pub const PRODUCT_PRICE_CHANGED: &str = "cascade.products.price_changed";
pub const ORDER_PLACED: &str = "cascade.orders.placed";

/// Durable consumer of the orders service: users and products, for its local copy.
pub const ORDERS_CONSUMER: &str = "orders";
pub const ORDERS_SUBJECTS: [&str; 3] = [USER_CREATED, PRODUCT_CREATED, PRODUCT_PRICE_CHANGED];
/// Durable consumer of the query service: every event, for its view.
pub const QUERY_CONSUMER: &str = "query";
pub const QUERY_SUBJECTS: [&str; 4] = [USER_CREATED, PRODUCT_CREATED, PRODUCT_PRICE_CHANGED, ORDER_PLACED];

/// The header JetStream deduplicates publishes by.
pub const MSG_ID_HEADER: &str = "Nats-Msg-Id";

/// `<entity id>@<version>`: unique per change, and the same for every retry of it.
pub fn event_id(entity_id: &str, version: u64) -> String {
    format!("{entity_id}@{version}")
}

fn envelope(entity_id: &str, version: u64, source: &str, payload: Payload) -> Envelope {
    let kind = match &payload {
        Payload::UserCreated(_) => "UserCreated",
        Payload::ProductCreated(_) => "ProductCreated",
        Payload::ProductPriceChanged(_) => "ProductPriceChanged",
        Payload::OrderPlaced(_) => "OrderPlaced",
    };
    Envelope {
        event_id: event_id(entity_id, version),
        r#type: kind.to_owned(),
        entity_id: entity_id.to_owned(),
        entity_version: version,
        occurred_at_unix_ms: crate::ids::now_unix_ms(),
        source: source.to_owned(),
        payload: Some(payload),
    }
}

pub fn user_created(user: &User) -> Envelope {
    envelope(&user.id, 1, crate::names::USERS, Payload::UserCreated(UserCreated { user: Some(user.clone()) }))
}

pub fn product_created(product: &Product) -> Envelope {
    let payload = Payload::ProductCreated(ProductCreated { product: Some(product.clone()) });
    envelope(&product.id, product.version, crate::names::PRODUCTS, payload)
}

pub fn product_price_changed(product: &Product, previous_price_cents: i64) -> Envelope {
    let payload =
        Payload::ProductPriceChanged(ProductPriceChanged { product: Some(product.clone()), previous_price_cents });
    envelope(&product.id, product.version, crate::names::PRODUCTS, payload)
}

pub fn order_placed(order: &Order) -> Envelope {
    envelope(&order.id, 1, crate::names::ORDERS, Payload::OrderPlaced(OrderPlaced { order: Some(order.clone()) }))
}

/// The subject an envelope is published on; `None` for an envelope without payload.
pub fn subject(envelope: &Envelope) -> Option<&'static str> {
    Some(match envelope.payload.as_ref()? {
        Payload::UserCreated(_) => USER_CREATED,
        Payload::ProductCreated(_) => PRODUCT_CREATED,
        Payload::ProductPriceChanged(_) => PRODUCT_PRICE_CHANGED,
        Payload::OrderPlaced(_) => ORDER_PLACED,
    })
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn envelopes_round_trip_as_protobuf_with_stable_ids() {
        let product =
            Product { id: "prd-0000000000000001".into(), title: "Lamp".into(), price_cents: 2500, version: 3 };
        let e = product_price_changed(&product, 1999);
        assert_eq!(e.event_id, "prd-0000000000000001@3");
        assert_eq!(e.r#type, "ProductPriceChanged");
        assert_eq!(subject(&e), Some(PRODUCT_PRICE_CHANGED));
        let decoded = Envelope::decode(e.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded, e);
        for s in QUERY_SUBJECTS {
            assert!(s.starts_with(SUBJECT_PREFIX));
        }
    }
}
