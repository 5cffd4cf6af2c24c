//! Braze's global email endpoints: `POST /email/status` sets the global email state of up to
//! 50 emails (every profile carrying each, else its orphaned state), and
//! `GET /email/unsubscribes` lists the emails whose global state became `unsubscribed` in a
//! date range. The rules are in [`crate::domain::email`].

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::auth::{Authorized, EmailStatus, EmailUnsubscribe, Required};
use super::body::JsonBody;
use super::error::ApiError;
use super::openapi::{AuthErrors, BodyErrors, QueryErrors, StoreErrors};
use super::schema::{SuccessMessage, SuccessResponse};
use super::AppState;
use crate::domain::change::Endpoint;
use crate::domain::email;
use crate::domain::ids::RequestId;
use crate::domain::plan::Origin;
use crate::domain::read::QueryParams;

/// The body of `POST /email/status`.
#[derive(utoipa::ToSchema)]
#[schema(examples(json!({"email": ["ada@example.com"], "subscription_state": "unsubscribed"})))]
#[allow(dead_code)] // A schema for the document: the handler reads the body as JSON to name every problem.
pub struct EmailStatusRequest {
    /// One email or an array of 1 to 50.
    #[schema(value_type = Vec<String>)]
    email: Value,
    /// `opted_in`, `subscribed` or `unsubscribed`.
    #[schema(value_type = String, examples("unsubscribed"))]
    subscription_state: String,
}

/// `POST /email/status`.
#[utoipa::path(
    post,
    path = "/email/status",
    tag = "email",
    operation_id = "setEmailStatus",
    summary = "Set the global email state of up to 50 emails",
    description = "Sets the global email state (`opted_in`, `subscribed` or `unsubscribed`) of every profile \
        carrying each email; an email no profile carries keeps it as orphaned state, which a profile that later \
        takes the email inherits. Independent of subscription group states. A profile or email that never had \
        one reads as `subscribed`. Every change is a ledger record of the global chain.",
    request_body(content = EmailStatusRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Every change is stored.", body = SuccessResponse),
        BodyErrors, AuthErrors, StoreErrors,
    ),
    security(("bearerAuth" = [])),
    extensions(("x-permission" = json!(EmailStatus::PERMISSION.as_str()))),
)]
pub async fn set_status(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    caller: Authorized<EmailStatus>,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let workspace_id = caller.key.workspace_id;
    let command = email::parse_email_status(&body)?;
    drop(body);
    let origin = Origin::api(workspace_id, caller.key.id, Endpoint::EmailStatus, request_id);
    state.store.set_status(origin, command).await?;
    Ok((StatusCode::CREATED, Json(json!({ "message": "success" }))))
}

/// One unsubscribed email.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct UnsubscribedEmail {
    /// The email (normalized: lower case).
    pub email: String,
    /// When its global state became `unsubscribed`, RFC 3339 in UTC.
    pub unsubscribed_at: String,
}

/// The answer of `GET /email/unsubscribes`.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(examples(json!({"emails": [{"email": "ada@example.com", "unsubscribed_at": "2026-11-30T05:00:00.000000Z"}], "message": "success"})))]
pub struct UnsubscribesResponse {
    /// The page of emails.
    pub emails: Vec<UnsubscribedEmail>,
    /// `success`.
    #[schema(value_type = SuccessMessage)]
    pub message: &'static str,
}

/// The query of `GET /email/unsubscribes`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Parameters for the document: the handler reads the query itself.
pub struct UnsubscribesParams {
    /// Start of the range, `YYYY-MM-DD`, midnight UTC, inclusive; required unless `email` is given.
    start_date: Option<String>,
    /// End of the range, `YYYY-MM-DD`, midnight UTC, exclusive; at most a year after `start_date`.
    end_date: String,
    /// Emails per page: 1 to 500, 100 by default.
    limit: Option<u32>,
    /// Emails to skip.
    offset: Option<u32>,
    /// `desc` (newest first, the default) or `asc`.
    sort_direction: Option<String>,
    /// Only this email.
    email: Option<String>,
}

/// `GET /email/unsubscribes`.
#[utoipa::path(
    get,
    path = "/email/unsubscribes",
    tag = "email",
    operation_id = "listEmailUnsubscribes",
    summary = "List the emails that unsubscribed in a date range",
    description = "The emails whose global email state became `unsubscribed` between `start_date` and `end_date` \
        (each at its latest such change; an email that has since subscribed again is not listed), newest first \
        unless `sort_direction=asc`. Page with `limit` and `offset` until a page is shorter than `limit`.",
    params(UnsubscribesParams),
    responses(
        (status = 200, description = "A page of emails.", body = UnsubscribesResponse),
        QueryErrors, AuthErrors, StoreErrors,
    ),
    security(("bearerAuth" = [])),
    extensions(("x-permission" = json!(EmailUnsubscribe::PERMISSION.as_str()))),
)]
pub async fn unsubscribes(
    State(state): State<AppState>,
    caller: Authorized<EmailUnsubscribe>,
    uri: Uri,
) -> Result<Json<UnsubscribesResponse>, ApiError> {
    let params = QueryParams::parse(uri.query())?;
    let query = email::parse_unsubscribes_query(&params)?;
    let found = state.store.unsubscribes(caller.key.workspace_id, &query).await?;
    let emails =
        found.into_iter().map(|u| UnsubscribedEmail { email: u.email, unsubscribed_at: u.at.to_rfc3339() }).collect();
    Ok(Json(UnsubscribesResponse { emails, message: "success" }))
}
