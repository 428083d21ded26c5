//! The `Products` gRPC API: validation, then the store.

use common::{
    error::{check_id, ApiError},
    names::{MAX_NAME_LEN, MAX_PRODUCTS_PER_GET, PRODUCT_ID_PREFIX},
    proto::{
        products_server::Products, CreateProductRequest, GetProductRequest, GetProductsRequest, GetProductsResponse,
        Product, UpdatePriceRequest,
    },
};
use tonic::{Request, Response, Status};

use crate::store::ProductStore;

/// The largest price accepted: keeps every total of price × quantity far from overflow.
pub const MAX_PRICE_CENTS: i64 = 1_000_000_000_000;

pub struct ProductsApi {
    store: ProductStore,
}

impl ProductsApi {
    pub fn new(store: ProductStore) -> Self {
        Self { store }
    }
}

pub fn check_price(price_cents: i64) -> Result<(), ApiError> {
    if price_cents <= 0 {
        return Err(ApiError::InvalidArgument(format!("price_cents must be > 0, got {price_cents}")));
    }
    if price_cents > MAX_PRICE_CENTS {
        return Err(ApiError::InvalidArgument(format!("price_cents must be <= {MAX_PRICE_CENTS}, got {price_cents}")));
    }
    Ok(())
}

pub fn check_title(title: &str) -> Result<String, ApiError> {
    let title = title.trim();
    if title.is_empty() {
        return Err(ApiError::InvalidArgument("title is empty".into()));
    }
    if title.chars().count() > MAX_NAME_LEN {
        return Err(ApiError::InvalidArgument(format!("title is longer than {MAX_NAME_LEN} characters")));
    }
    Ok(title.to_owned())
}

fn not_found(id: &str) -> Status {
    ApiError::NotFound(format!("product {id} not found")).into()
}

#[tonic::async_trait]
impl Products for ProductsApi {
    async fn create_product(&self, request: Request<CreateProductRequest>) -> Result<Response<Product>, Status> {
        let req = request.into_inner();
        let title = check_title(&req.title)?;
        check_price(req.price_cents)?;
        let product = self.store.create(title, req.price_cents).await.map_err(ApiError::from)?;
        tracing::debug!(product_id = %product.id, "product created");
        Ok(Response::new(product))
    }

    async fn update_price(&self, request: Request<UpdatePriceRequest>) -> Result<Response<Product>, Status> {
        let req = request.into_inner();
        check_id("id", PRODUCT_ID_PREFIX, &req.id)?;
        check_price(req.price_cents)?;
        match self.store.update_price(&req.id, req.price_cents).await.map_err(ApiError::from)? {
            Some(product) => Ok(Response::new(product)),
            None => Err(not_found(&req.id)),
        }
    }

    async fn get_product(&self, request: Request<GetProductRequest>) -> Result<Response<Product>, Status> {
        let id = request.into_inner().id;
        check_id("id", PRODUCT_ID_PREFIX, &id)?;
        let product = self.store.get(&id).map_err(ApiError::from)?;
        self.store.outbox().before_reply().await.map_err(ApiError::from)?;
        match product {
            Some(product) => Ok(Response::new(product)),
            None => Err(not_found(&id)),
        }
    }

    async fn get_products(
        &self,
        request: Request<GetProductsRequest>,
    ) -> Result<Response<GetProductsResponse>, Status> {
        let ids = request.into_inner().ids;
        if ids.len() > MAX_PRODUCTS_PER_GET {
            return Err(ApiError::InvalidArgument(format!(
                "ids has {} entries; at most {MAX_PRODUCTS_PER_GET} per call",
                ids.len()
            ))
            .into());
        }
        for (i, id) in ids.iter().enumerate() {
            check_id(&format!("ids[{i}]"), PRODUCT_ID_PREFIX, id)?;
        }
        let mut products = Vec::with_capacity(ids.len());
        for id in &ids {
            if let Some(product) = self.store.get(id).map_err(ApiError::from)? {
                products.push(product);
            }
        }
        self.store.outbox().before_reply().await.map_err(ApiError::from)?;
        Ok(Response::new(GetProductsResponse { products }))
    }
}
