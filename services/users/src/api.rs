//! The `Users` gRPC API: validation, then the store.

use common::{
    error::{check_id, ApiError},
    names::{MAX_NAME_LEN, USER_ID_PREFIX},
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
        let (name, email) = validate_new_user(request.into_inner())?;
        let user = self.store.create(name, email).await.map_err(ApiError::from)?;
        tracing::debug!(user_id = %user.id, "user created");
        Ok(Response::new(user))
    }

    async fn get_user(&self, request: Request<GetUserRequest>) -> Result<Response<User>, Status> {
        let id = request.into_inner().id;
        check_id("id", USER_ID_PREFIX, &id)?;
        let user = self.store.get(&id).map_err(ApiError::from)?;
        self.store.outbox().before_reply().await.map_err(ApiError::from)?;
        match user {
            Some(user) => Ok(Response::new(user)),
            None => Err(ApiError::NotFound(format!("user {id} not found")).into()),
        }
    }
}
