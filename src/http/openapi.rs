//! The OpenAPI 3.1 document, generated from the code and served at `GET /openapi.json`.
//!
//! Each handler carries its operation (`#[utoipa::path]`: path, method, request and success
//! schemas, the groups of errors it can answer, its permission), and the router registers every
//! handler with its route and its operation in one call (`api` in [`super`]), so the router and
//! the document are built from the same registrations. This module adds what is common to every operation
//! and would only be repeated on each: the bearer scheme, the shared error responses, and the
//! headers every answer carries ([`finish`]).
//!
//! The document is generated once per process, at start-up ([`document`]), and served as those
//! same bytes to every request.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use serde_json::Value;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::schema::{ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{IntoResponses, ToSchema};

use super::error::{ApiError, ErrorBody, MAX_BODY_BYTES};
use crate::domain::rate_limit::Bucket;
use crate::domain::validation::MAX_REPORTED_PROBLEMS;

/// The name of the bearer scheme in `components.securitySchemes`, as the operations'
/// `security(("bearerAuth" = []))` name it (the attribute takes only a literal).
pub const BEARER: &str = "bearerAuth";

/// The operation extension naming the permission an operation's key needs. Machine-readable
/// for clients and for the test that checks each documented permission against the server;
/// [`finish`] also writes it into the operation's description. It is the only extension an
/// operation carries: utoipa keeps extensions in a `HashMap`, so a second one would make their
/// order, and so the snapshot, vary from run to run.
pub const PERMISSION_EXTENSION: &str = "x-permission";

/// What the document says before any operation is added: its info, tags and the schemas no
/// operation names directly.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Consentry",
        description = "A self-hosted subscription and consent service speaking Braze's subscription-group REST API.

**Authentication.** Every endpoint but this document needs `Authorization: Bearer <REST API key>` (the scheme word \
in any case). A missing, unknown or revoked key answers 401; a key without the endpoint's permission, or used from \
outside its IP allowlist, answers 403.

**Errors.** Every error is JSON with a `message` naming the offending place and value, plus `errors` (all the \
problems found) when the request failed validation. A request is validated whole before anything is applied, and \
applied atomically: a 2XX means every change is durably stored, an error means none is. An unknown path answers 404 \
and a method a path does not take answers 405 (with `Allow`), both as `ErrorBody`.

**Rate limits.** Requests are counted per workspace on fixed clock windows: the two set endpoints share one bucket, \
the GET endpoints (status reads and the consent ledger) another, `/users/track` and `/users/delete` have one each. \
Every answer to an authenticated request carries `x-ratelimit-limit`, `x-ratelimit-remaining` and \
`x-ratelimit-reset`; over the limit the answer is 429 with `retry-after`, and the request is not processed.

**Tracing.** Every answer carries `x-request-id`, which the change records it caused also keep."
    ),
    tags(
        (name = "subscriptions", description = "Set and read subscription group states."),
        (name = "users", description = "Create, update and delete user profiles."),
        (name = "consent", description = "Read, and prove, the consent ledger: every change of every state."),
        (name = "email", description = "The global email state (Braze's `email_subscribe`) and the unsubscribed emails."),
        (name = "openapi", description = "This document."),
    ),
    components(schemas(ErrorBody)),
)]
pub struct ApiDoc;

static DOCUMENT: OnceLock<String> = OnceLock::new();

/// The finished document as pretty-printed JSON, generated on the first call (the router asks
/// for it when it is built, so a document that cannot be generated stops the server at start-up
/// rather than failing its first reader).
pub fn document() -> &'static str {
    DOCUMENT.get_or_init(|| super::openapi().to_pretty_json().expect("the OpenAPI document serializes to JSON"))
}

/// `GET /openapi.json`: the document, public and not rate-limited, so that a client can be
/// generated before it has a key.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "openapi",
    operation_id = "getOpenApiDocument",
    summary = "This OpenAPI document",
    description = "The OpenAPI 3.1 document of this server, generated from its code. Needs no key and is not \
        rate-limited.",
    responses((status = 200, description = "The document.", body = Value, content_type = "application/json")),
    security(()),
)]
pub async fn serve() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], document())
}

/// Adds to `doc`, whose operations are all registered, what every operation shares: the bearer
/// scheme, the shared headers and error responses, each operation's permission in its
/// description, and the headers every inline answer carries.
pub fn finish(doc: &mut OpenApi) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.security_schemes.insert(BEARER.into(), RefOr::T(bearer_scheme()));
    components.headers.extend(headers());
    components.responses.extend(error_responses());

    for item in doc.paths.paths.values_mut() {
        for (_, operation) in operations_mut(item) {
            let authenticated = operation.security.iter().flatten().any(|s| s == &bearer_requirement());
            if let Some(permission) = permission(operation).map(str::to_owned) {
                let description = operation.description.get_or_insert_with(String::new);
                description.push_str(&format!("\n\nRequires an API key with the `{permission}` permission."));
            }
            for response in operation.responses.responses.values_mut() {
                // Shared responses (`$ref`s) carry their own headers; an inline one (the
                // success answer) gets them here.
                if let RefOr::T(response) = response {
                    response.headers.insert("x-request-id".into(), header_ref("RequestId"));
                    if authenticated {
                        for (name, component) in RATE_LIMIT_HEADERS {
                            response.headers.insert(name.into(), header_ref(component));
                        }
                    }
                }
            }
        }
    }
}

/// The permission an operation declares in [`PERMISSION_EXTENSION`].
pub fn permission(operation: &Operation) -> Option<&str> {
    operation.extensions.as_ref()?.get(PERMISSION_EXTENSION)?.as_str()
}

/// The operations of a path item with their methods, as axum names them.
pub fn operations(item: &PathItem) -> impl Iterator<Item = (axum::http::Method, &Operation)> {
    use axum::http::Method;
    [
        (Method::GET, &item.get),
        (Method::PUT, &item.put),
        (Method::POST, &item.post),
        (Method::DELETE, &item.delete),
        (Method::OPTIONS, &item.options),
        (Method::HEAD, &item.head),
        (Method::PATCH, &item.patch),
        (Method::TRACE, &item.trace),
    ]
    .into_iter()
    .filter_map(|(method, operation)| Some((method, operation.as_ref()?)))
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = (axum::http::Method, &mut Operation)> {
    use axum::http::Method;
    [
        (Method::GET, &mut item.get),
        (Method::PUT, &mut item.put),
        (Method::POST, &mut item.post),
        (Method::DELETE, &mut item.delete),
        (Method::OPTIONS, &mut item.options),
        (Method::HEAD, &mut item.head),
        (Method::PATCH, &mut item.patch),
        (Method::TRACE, &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(method, operation)| Some((method, operation.as_mut()?)))
}

fn bearer_scheme() -> SecurityScheme {
    let mut http = Http::new(HttpAuthScheme::Bearer);
    http.description = Some(
        "A REST API key of one workspace, sent as `Authorization: Bearer <key>` (the scheme word in any case). \
         Each key has a fixed set of permissions and an optional IP allowlist."
            .into(),
    );
    SecurityScheme::Http(http)
}

fn bearer_requirement() -> utoipa::openapi::security::SecurityRequirement {
    utoipa::openapi::security::SecurityRequirement::new(BEARER, Vec::<String>::new())
}

/// The rate-limit headers, by name and component.
const RATE_LIMIT_HEADERS: [(&str, &str); 3] = [
    ("x-ratelimit-limit", "RateLimitLimit"),
    ("x-ratelimit-remaining", "RateLimitRemaining"),
    ("x-ratelimit-reset", "RateLimitReset"),
];

fn header_ref(component: &str) -> RefOr<utoipa::openapi::header::Header> {
    RefOr::Ref(Ref::new(format!("#/components/headers/{component}")))
}

fn integer(description: &str, minimum: u64) -> utoipa::openapi::header::Header {
    let schema = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(minimum));
    HeaderBuilder::new().schema(Some(schema)).description(Some(description)).build()
}

fn string(description: &str, format: Option<SchemaFormat>) -> utoipa::openapi::header::Header {
    let schema = ObjectBuilder::new().schema_type(Type::String).format(format);
    HeaderBuilder::new().schema(Some(schema)).description(Some(description)).build()
}

/// The headers shared by many answers, as components.
fn headers() -> BTreeMap<String, RefOr<utoipa::openapi::header::Header>> {
    [
        (
            "RequestId",
            string(
                "This request's id, also kept on the change records it caused.",
                Some(SchemaFormat::Custom("uuid".into())),
            ),
        ),
        (
            "RateLimitLimit",
            integer("Requests the workspace may make in the current window of this endpoint's bucket.", 1),
        ),
        ("RateLimitRemaining", integer("Requests left in the current window, this one counted.", 0)),
        ("RateLimitReset", integer("When the current window ends, in UTC epoch seconds.", 0)),
        ("RetryAfter", integer("Seconds to wait before trying again.", 0)),
        ("WwwAuthenticate", string("`Bearer`: the scheme the API expects.", None)),
        ("Allow", string("The methods the path takes.", None)),
    ]
    .into_iter()
    .map(|(name, header)| (name.to_string(), RefOr::T(header)))
    .collect()
}

/// An error answer: an [`ErrorBody`] with `example`, and `x-request-id` plus `headers`.
fn error_response(description: &str, example: Value, headers: &[(&str, &str)]) -> Response {
    let content = ContentBuilder::new()
        .schema(Some(RefOr::Ref(Ref::from_schema_name(ErrorBody::name()))))
        .example(Some(example))
        .build();
    let mut response = ResponseBuilder::new().description(description).content("application/json", content);
    for (name, component) in [("x-request-id", "RequestId")].iter().chain(headers) {
        response = response.header_ref(*name, Ref::new(format!("#/components/headers/{component}")));
    }
    response.build()
}

fn message(error: ApiError) -> Value {
    serde_json::json!({ "message": error.to_string() })
}

/// The error answers, as components (`#/components/responses/...`).
fn error_responses() -> BTreeMap<String, RefOr<Response>> {
    let limited = RATE_LIMIT_HEADERS.as_slice();
    let limited_retry: Vec<(&str, &str)> = limited.iter().copied().chain([("retry-after", "RetryAfter")]).collect();
    let bad =
        "subscription_groups[0].subscription_state: \"maybe\" is not a subscription state; use \"subscribed\" or \
               \"unsubscribed\"";
    [
        (
            "BadRequest",
            error_response(
                &format!(
                    "The request is invalid and nothing was applied: `message` names the first problem with its \
                     place and value, `errors` lists the problems found (the first {MAX_REPORTED_PROBLEMS}, then a \
                     line counting the others)."
                ),
                serde_json::json!({ "message": bad, "errors": [bad] }),
                limited,
            ),
        ),
        (
            "Unauthorized",
            error_response(
                "No API key, or an unknown or revoked one.",
                serde_json::json!({ "message": "invalid API key" }),
                &[("www-authenticate", "WwwAuthenticate")],
            ),
        ),
        (
            "Forbidden",
            error_response(
                "The key lacks this endpoint's permission, or was used from outside its IP allowlist.",
                serde_json::json!({ "message": "this API key does not have the users.delete permission" }),
                &[],
            ),
        ),
        (
            "NotFound",
            error_response(
                "No endpoint at this path (answered for any path this document does not list).",
                serde_json::json!({ "message": "no endpoint at \"/v3/subscription/status/set\"" }),
                &[],
            ),
        ),
        (
            "MethodNotAllowed",
            error_response(
                "The path does not take this method (answered for any method this document does not list on a \
                 path); `Allow` lists the ones it takes.",
                serde_json::json!({ "message": "method PUT is not allowed on this endpoint" }),
                &[("allow", "Allow")],
            ),
        ),
        (
            "RequestTimeout",
            error_response("The body did not arrive in time.", message(ApiError::RequestTimeout), limited),
        ),
        (
            "PayloadTooLarge",
            error_response(
                &format!("The body is larger than {} MB.", MAX_BODY_BYTES / (1024 * 1024)),
                message(ApiError::PayloadTooLarge),
                limited,
            ),
        ),
        (
            "UnsupportedMediaType",
            error_response(
                "The body is not declared as `application/json`.",
                serde_json::json!({ "message": "Content-Type must be application/json" }),
                limited,
            ),
        ),
        (
            "TooManyRequests",
            error_response(
                "The workspace has used up this endpoint's rate limit for the current window; the request was not \
                 processed. Retry after `retry-after` seconds.",
                // The server's own wording, so that the example cannot drift from it.
                serde_json::json!({
                    "message": ApiError::TooManyRequests {
                        bucket: Bucket::Set,
                        limit: Bucket::Set.default_limit(),
                        retry_after: 12,
                    }
                    .to_string()
                }),
                &limited_retry,
            ),
        ),
        (
            "InternalError",
            error_response(
                "Something failed on the server's side; nothing was applied. The detail is logged, not returned.",
                message(ApiError::Internal(String::new())),
                limited,
            ),
        ),
        (
            "Unavailable",
            error_response(
                "The server is shutting down (nothing was applied) or cannot reach its database. Retry on another node or after `retry-after`: every write is idempotent.",
                message(ApiError::Unavailable),
                &limited_retry,
            ),
        ),
    ]
    .into_iter()
    .map(|(name, response)| (name.to_string(), RefOr::T(response)))
    .collect()
}

fn response_refs(entries: &[(&str, &str)]) -> BTreeMap<String, RefOr<Response>> {
    entries.iter().map(|(status, name)| (status.to_string(), RefOr::Ref(Ref::from_response_name(*name)))).collect()
}

/// The answers of a request that must authenticate: 401, 403 and 429.
pub struct AuthErrors;

impl IntoResponses for AuthErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        response_refs(&[("401", "Unauthorized"), ("403", "Forbidden"), ("429", "TooManyRequests")])
    }
}

/// The answers of a request with a JSON body: 400, 408, 413 and 415.
pub struct BodyErrors;

impl IntoResponses for BodyErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        response_refs(&[
            ("400", "BadRequest"),
            ("408", "RequestTimeout"),
            ("413", "PayloadTooLarge"),
            ("415", "UnsupportedMediaType"),
        ])
    }
}

/// The answer of a request whose query string is invalid: 400.
pub struct QueryErrors;

impl IntoResponses for QueryErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        response_refs(&[("400", "BadRequest")])
    }
}

/// The answers of a request that reaches the store: 500 and 503.
pub struct StoreErrors;

impl IntoResponses for StoreErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        response_refs(&[("500", "InternalError"), ("503", "Unavailable")])
    }
}
