//! Authentication and authorization: `Authorization: Bearer <key>` to an active key of one
//! workspace, the endpoint's permission, and the key's IP allowlist; then the workspace's rate
//! limit for the endpoint's bucket.

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::{header, request::Parts};

use super::error::ApiError;
use super::rate_limit::{self, RateLimitSlot};
use super::AppState;
use crate::domain::rate_limit::{Bucket, Decision};
use crate::domain::tenant::{ApiKey, Permission};

/// Names the permission an endpoint requires, at the type level, so that a handler cannot
/// forget to check it, nor to count the request against its rate limit.
pub trait Required {
    /// The permission.
    const PERMISSION: Permission;
    /// The rate-limit bucket the endpoint draws from. Each permission guards one kind of
    /// endpoint, so it follows from the permission; a marker overrides it only if that ever
    /// stops being true.
    const BUCKET: Bucket = Self::PERMISSION.bucket();
}

/// Requires `subscription.status.set`.
pub struct StatusSet;
impl Required for StatusSet {
    const PERMISSION: Permission = Permission::SubscriptionStatusSet;
}

/// Requires `subscription.status.get`.
pub struct StatusGet;
impl Required for StatusGet {
    const PERMISSION: Permission = Permission::SubscriptionStatusGet;
}

/// Requires `subscription.groups.get`.
pub struct GroupsGet;
impl Required for GroupsGet {
    const PERMISSION: Permission = Permission::SubscriptionGroupsGet;
}

/// Requires `users.track`.
pub struct UsersTrack;
impl Required for UsersTrack {
    const PERMISSION: Permission = Permission::UsersTrack;
}

/// Requires `users.delete`.
pub struct UsersDelete;
impl Required for UsersDelete {
    const PERMISSION: Permission = Permission::UsersDelete;
}

/// Requires `email.status`.
pub struct EmailStatus;
impl Required for EmailStatus {
    const PERMISSION: Permission = Permission::EmailStatus;
}

/// Requires `email.unsubscribe`.
pub struct EmailUnsubscribe;
impl Required for EmailUnsubscribe {
    const PERMISSION: Permission = Permission::EmailUnsubscribe;
}

/// Requires `consent.history.get`.
pub struct HistoryGet;
impl Required for HistoryGet {
    const PERMISSION: Permission = Permission::ConsentHistoryGet;
}

/// An authenticated caller whose key carries `P`'s permission and admits the caller's address,
/// and whose workspace is within `P`'s rate limit (this request counted). As an extractor it
/// runs before the body is read, so an unauthenticated or rate-limited caller costs no parsing,
/// learns nothing about validation, and changes nothing.
pub struct Authorized<P> {
    /// The caller's key.
    pub key: Arc<ApiKey>,
    /// The rate-limit verdict that admitted the request.
    pub rate_limit: Decision,
    _permission: PhantomData<P>,
}

impl<P: Required, S: Send + Sync> FromRequestParts<S> for Authorized<P>
where
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let state = AppState::from_ref(state);
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip());
        if let Some(ip) = peer {
            state
                .failed_auth
                .check(ip)
                .map_err(|retry_after| ApiError::TooManyFailedAuthentications { retry_after })?;
        }
        let secret = bearer_token(parts)?;
        let Some(key) = state.catalog.authenticate(secret) else {
            // The address, never the key: a mistyped key is most of a real one.
            match peer {
                Some(ip) => {
                    state.failed_auth.record(ip);
                    tracing::warn!(client = %ip, "authentication failed: unknown or revoked API key");
                }
                None => tracing::warn!("authentication failed: unknown or revoked API key"),
            }
            return Err(ApiError::Unauthorized("invalid API key".into()));
        };
        if let Some(caller) = parts.extensions.get::<super::access_log::Caller>() {
            caller.set(key.workspace_id, key.id);
        }
        if !key.allows(P::PERMISSION) {
            return Err(ApiError::Forbidden(format!(
                "this API key does not have the {} permission",
                P::PERMISSION.as_str()
            )));
        }
        if !key.allowed_ips.is_empty() {
            let peer = peer.ok_or_else(|| ApiError::Forbidden("the caller's address is unknown".into()))?;
            if !key.admits(peer) {
                return Err(ApiError::Forbidden(format!("this API key may not be used from {peer}")));
            }
        }
        // Only after authentication and permission: a request that may not use the endpoint at
        // all must not spend the workspace's budget (nor learn what is left of it).
        let slot = parts.extensions.get::<RateLimitSlot>();
        let rate_limit = rate_limit::admit(&state, slot, key.workspace_id, P::BUCKET).await?;
        Ok(Authorized { key, rate_limit, _permission: PhantomData })
    }
}

/// The key in `Authorization: Bearer <key>`; the scheme word in any case.
fn bearer_token(parts: &Parts) -> Result<&str, ApiError> {
    let missing =
        || ApiError::Unauthorized("missing API key: send the header Authorization: Bearer YOUR-REST-API-KEY".into());
    let value = parts.headers.get(header::AUTHORIZATION).ok_or_else(missing)?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthorized("the Authorization header is not readable text".into()))?
        .trim();
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::Unauthorized("the Authorization header must read Bearer YOUR-REST-API-KEY".into()))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::Unauthorized("the Authorization header must use the Bearer scheme".into()));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(missing());
    }
    Ok(token)
}
