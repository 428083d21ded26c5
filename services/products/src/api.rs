//! The `Products` gRPC API: validation, then the store. Each RPC is a domain function on
//! [`ProductsApi`] returning an [`ApiError`]; the trait method only maps it to a `Status`.

use common::{
    error::{check_id, ApiError},
    names::{MAX_NAME_LEN, MAX_PRODUCTS_PER_GET, PRODUCTS, PRODUCT_ID_PREFIX},
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

    /// Validates title and price, then stores the product at version 1.
    pub async fn create_product(&self, req: CreateProductRequest) -> Result<Product, ApiError> {
        let title = check_title(&req.title)?;
        check_price(req.price_cents)?;
        let product = self.store.create(title, req.price_cents).await?;
        tracing::debug!(product_id = %product.id, "product created");
        Ok(product)
    }

    /// Sets a new price (the version goes up by one); `NotFound` if there is no such product.
    pub async fn update_price(&self, req: UpdatePriceRequest) -> Result<Product, ApiError> {
        check_id("id", PRODUCT_ID_PREFIX, &req.id)?;
        self.holds(&req.id)?;
        check_price(req.price_cents)?;
        self.store.update_price(&req.id, req.price_cents).await?.ok_or_else(|| not_found(&req.id))
    }

    /// The product with this id; `NotFound` if there is none.
    pub async fn get_product(&self, req: GetProductRequest) -> Result<Product, ApiError> {
        check_id("id", PRODUCT_ID_PREFIX, &req.id)?;
        self.holds(&req.id)?;
        let product = self.store.get(&req.id)?;
        self.store.outbox().before_reply().await?;
        product.ok_or_else(|| not_found(&req.id))
    }

    /// `NotFound`, saying where it is, for a product of another shard.
    fn holds(&self, id: &str) -> Result<(), ApiError> {
        self.store.shard().check_holds(PRODUCTS, &format!("product {id}"), id).map_err(ApiError::NotFound)
    }

    /// The products among `ids` that exist, in the order asked; unknown ids are left out
    /// (and so are another shard's: a caller of several shards asks each for its own).
    pub async fn get_products(&self, req: GetProductsRequest) -> Result<GetProductsResponse, ApiError> {
        let ids = req.ids;
        if ids.len() > MAX_PRODUCTS_PER_GET {
            return Err(ApiError::InvalidArgument(format!(
                "ids has {} entries; at most {MAX_PRODUCTS_PER_GET} per call",
                ids.len()
            )));
        }
        for (i, id) in ids.iter().enumerate() {
            check_id(&format!("ids[{i}]"), PRODUCT_ID_PREFIX, id)?;
        }
        let mut products = Vec::with_capacity(ids.len());
        for id in &ids {
            if let Some(product) = self.store.get(id)? {
                products.push(product);
            }
        }
        self.store.outbox().before_reply().await?;
        Ok(GetProductsResponse { products })
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

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("product {id} not found"))
}

#[tonic::async_trait]
impl Products for ProductsApi {
    async fn create_product(&self, request: Request<CreateProductRequest>) -> Result<Response<Product>, Status> {
        Ok(Response::new(ProductsApi::create_product(self, request.into_inner()).await?))
    }

    async fn update_price(&self, request: Request<UpdatePriceRequest>) -> Result<Response<Product>, Status> {
        Ok(Response::new(ProductsApi::update_price(self, request.into_inner()).await?))
    }

    async fn get_product(&self, request: Request<GetProductRequest>) -> Result<Response<Product>, Status> {
        Ok(Response::new(ProductsApi::get_product(self, request.into_inner()).await?))
    }

    async fn get_products(
        &self,
        request: Request<GetProductsRequest>,
    ) -> Result<Response<GetProductsResponse>, Status> {
        Ok(Response::new(ProductsApi::get_products(self, request.into_inner()).await?))
    }
}

#[cfg(test)]
mod tests {
    //! The domain functions on a real store in a temporary dir.

    use super::*;

    fn api() -> (ProductsApi, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        (ProductsApi::new(ProductStore::open(dir.path(), false, Default::default()).expect("store opens")), dir)
    }

    fn new_product(title: &str, price_cents: i64) -> CreateProductRequest {
        CreateProductRequest { title: title.into(), price_cents }
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
    fn assert_not_found<T: std::fmt::Debug>(result: Result<T, ApiError>, id: &str) {
        match result {
            Err(ApiError::NotFound(message)) => assert!(message.contains(id), "{message:?} does not name {id}"),
            other => panic!("expected NotFound naming {id}, got {other:?}"),
        }
    }

    #[test]
    fn a_price_must_be_positive_and_at_most_the_maximum() {
        for bad in [0, -1, i64::MIN, MAX_PRICE_CENTS + 1, i64::MAX] {
            assert_invalid(check_price(bad), &bad.to_string());
        }
        for good in [1, 999, MAX_PRICE_CENTS] {
            assert!(check_price(good).is_ok(), "{good} refused");
        }
    }

    #[test]
    fn a_title_must_have_text_within_the_limit_and_is_trimmed() {
        assert_invalid(check_title(""), "title is empty");
        assert_invalid(check_title("  \n"), "title is empty");
        assert_invalid(check_title(&"x".repeat(MAX_NAME_LEN + 1)), "title is longer");
        assert_eq!(check_title(" Tea ").expect("valid"), "Tea");
    }

    #[tokio::test]
    async fn creating_refuses_a_bad_title_or_price_and_stores_a_good_one_at_version_1() {
        let (api, _dir) = api();
        assert_invalid(api.create_product(new_product("", 100)).await, "title is empty");
        assert_invalid(api.create_product(new_product("Tea", 0)).await, "price_cents must be > 0");
        assert_invalid(api.create_product(new_product("Tea", -5)).await, "got -5");
        let first = api.create_product(new_product(" Tea ", 100)).await.expect("created");
        assert_eq!((first.title.as_str(), first.price_cents, first.version), ("Tea", 100, 1));
    }

    #[tokio::test]
    async fn a_price_change_bumps_the_version_and_an_unknown_product_is_not_found() {
        let (api, _dir) = api();
        let tea = api.create_product(new_product("Tea", 100)).await.expect("created");
        let changed = api.update_price(UpdatePriceRequest { id: tea.id.clone(), price_cents: 250 }).await.expect("ok");
        assert_eq!((changed.price_cents, changed.version), (250, 2));
        assert_eq!(api.get_product(GetProductRequest { id: tea.id.clone() }).await.expect("read"), changed);

        let unknown = "prd-00000000000000ff";
        assert_not_found(api.update_price(UpdatePriceRequest { id: unknown.into(), price_cents: 1 }).await, unknown);
        assert_not_found(api.get_product(GetProductRequest { id: unknown.into() }).await, unknown);
        // Validation comes first: a bad price is the client's error even for an unknown id.
        assert_invalid(
            api.update_price(UpdatePriceRequest { id: unknown.into(), price_cents: 0 }).await,
            "price_cents",
        );
        assert_invalid(
            api.update_price(UpdatePriceRequest { id: "usr-0000000000000001".into(), price_cents: 1 }).await,
            "id",
        );
        assert_invalid(api.get_product(GetProductRequest { id: String::new() }).await, "id is empty");
    }

    #[tokio::test]
    async fn get_products_checks_every_id_skips_unknown_ones_and_keeps_the_order_asked() {
        let (api, _dir) = api();
        let tea = api.create_product(new_product("Tea", 100)).await.expect("created");
        let cake = api.create_product(new_product("Cake", 300)).await.expect("created");
        let asked = vec![cake.id.clone(), "prd-00000000000000ff".into(), tea.id.clone()];
        let got = api.get_products(GetProductsRequest { ids: asked }).await.expect("answered");
        assert_eq!(got.products, vec![cake.clone(), tea.clone()]);

        let with_bad = vec![tea.id.clone(), "prd-XYZ".into()];
        assert_invalid(api.get_products(GetProductsRequest { ids: with_bad }).await, "ids[1]");
        let too_many = vec![tea.id.clone(); MAX_PRODUCTS_PER_GET + 1];
        assert_invalid(api.get_products(GetProductsRequest { ids: too_many }).await, "at most");
        let at_limit = vec![tea.id.clone(); MAX_PRODUCTS_PER_GET];
        assert_eq!(
            api.get_products(GetProductsRequest { ids: at_limit }).await.expect("ok").products.len(),
            MAX_PRODUCTS_PER_GET
        );
    }
}
