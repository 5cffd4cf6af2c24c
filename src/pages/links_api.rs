//! `POST /consent/links`: signs unsubscribe and preference links for up to 50 people, with the
//! two headers a sender puts in each email. Senders with many recipients mint tokens offline
//! instead (docs/links.md); this endpoint and `consentry links sign` use the same signer.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::catalog::CatalogError;
use crate::domain::links::{parse_links_request, SignedLink};
use crate::domain::tenant::Permission;
use crate::http::auth::{Authorized, Required};
use crate::http::body::JsonBody;
use crate::http::error::ApiError;
use crate::http::openapi::{AuthErrors, BodyErrors, StoreErrors};
use crate::http::AppState;

/// Requires `consent.links.create`.
pub struct LinksCreate;
impl Required for LinksCreate {
    const PERMISSION: Permission = Permission::ConsentLinksCreate;
}

/// One link asked for.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkToSign {
    /// The person, by external id (exactly one of `external_id`, `email`, `phone`).
    pub external_id: Option<String>,
    /// The person, by email.
    pub email: Option<String>,
    /// The person, by phone (E.164).
    pub phone: Option<String>,
    /// The one group the link unsubscribes from; without it, every group of the person's
    /// channel.
    pub subscription_group_id: Option<String>,
    /// RFC 3339 time after which the link no longer works.
    pub expires_at: Option<String>,
}

/// The request body.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(json!({"links": [
    {"email": "jane@example.com", "subscription_group_id": "0199a8a4-4c1e-7c3a-9c55-1f2e3d4c5b6a"},
    {"external_id": "user-123", "expires_at": "2999-12-31T23:59:59Z"}
]})))]
pub struct LinksRequest {
    /// 1 to 50 links.
    #[schema(min_items = 1, max_items = 50)]
    pub links: Vec<LinkToSign>,
}

/// One signed link.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkUrls {
    /// A GET shows a confirmation page; a POST of `List-Unsubscribe=One-Click` unsubscribes.
    pub unsubscribe_url: String,
    /// The preference page.
    pub preference_url: String,
    /// The `List-Unsubscribe` header's value: `<unsubscribe_url>`.
    pub list_unsubscribe: String,
    /// The `List-Unsubscribe-Post` header's value.
    pub list_unsubscribe_post: String,
}

/// The answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinksResponse {
    /// `success`.
    pub message: String,
    /// The links, in the order asked.
    pub links: Vec<LinkUrls>,
}

/// Signs the links with the workspace's signing key (created on first use).
#[utoipa::path(
    post,
    path = "/consent/links",
    tag = "links",
    operation_id = "createConsentLinks",
    summary = "Sign unsubscribe and preference links for up to 50 people",
    description = "Returns, for each person, the unsubscribe URL (GET shows a confirmation page and changes \
        nothing; an RFC 8058 one-click POST unsubscribes), the preference-page URL and the two header values to put \
        in the email. A link names one group, or none: then it acts on every group of the person's channel. Links \
        are signed with the workspace's link key; tokens can also be minted offline (docs/links.md).",
    request_body(content = LinksRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "The links.", body = LinksResponse),
        BodyErrors, AuthErrors, StoreErrors,
    ),
    security(("bearerAuth" = [])),
    extensions(("x-permission" = json!(LinksCreate::PERMISSION.as_str()))),
)]
pub async fn handle(
    State(state): State<AppState>,
    caller: Authorized<LinksCreate>,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let workspace = caller.key.workspace_id;
    let asked = state
        .catalog
        .with_groups(workspace, |groups| parse_links_request(&body, groups, state.clock.now()))
        .map_err(ApiError::from)?;
    let mut links = Vec::with_capacity(asked.len());
    for link in asked {
        let token =
            state.catalog.sign_link(workspace, link.subject, link.group_id, link.expires_at).await.map_err(|err| {
                match err {
                    CatalogError::Store(err) => ApiError::from(err),
                    other => ApiError::BadRequest { message: other.to_string(), errors: vec![other.to_string()] },
                }
            })?;
        links.push(SignedLink::new(&state.pages.public_url, &token));
    }
    Ok((StatusCode::CREATED, Json(json!({ "message": "success", "links": links }))))
}
