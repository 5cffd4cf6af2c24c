//! The shapes of the API's requests, for the OpenAPI document only.
//!
//! The handlers read bodies as raw JSON and query strings as raw pairs, and validate them by
//! hand, because only that gives Braze-precise error messages (`subscription_groups[1].phones[3]:
//! "+1 555" is not an E.164 phone number`). So the request shapes cannot be derived from
//! deserialization types: they are described here, by types that are never built, with the
//! limits the validators use (their own constants, or literals asserted equal to them at compile
//! time, so a limit cannot change in one place only). Responses need none of this: their real
//! structs derive `ToSchema`.
//!
//! The identifiers' schemas are written by hand ([`PartialSchema`] on the domain's own
//! [`ExternalId`], [`Email`] and [`Phone`]) because "a string, or an array of 1 to 50 strings"
//! is a `oneOf` that no derive spells, and because each identifier's rules belong on one
//! component that every field naming it refers to.

use serde_json::Value;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::{KnownFormat, Ref, RefOr};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use crate::domain::identifiers::{Email, ExternalId, Phone, MAX_EMAIL_CHARS, MAX_EXTERNAL_ID_BYTES, MAX_PHONE_DIGITS};
use crate::domain::read::MAX_USERS_PAGE;
use crate::domain::set_status::MAX_ENTRIES;
use crate::domain::subscription::SubscriptionState;
use crate::domain::track::MAX_ATTRIBUTE_OBJECTS;
use crate::domain::validation::MAX_IDENTIFIERS_PER_LIST;

// The derive attributes below take only literals, so the limits they repeat are pinned to the
// validators' constants here: changing a limit fails the build until the document follows.
const _: () = assert!(MAX_ENTRIES == 25, "update V2SetRequest's max_items");
const _: () = assert!(MAX_IDENTIFIERS_PER_LIST == 50, "update the query parameters' max_items");
const _: () = assert!(MAX_ATTRIBUTE_OBJECTS == 75, "update TrackRequest's max_items");
const _: () = assert!(MAX_USERS_PAGE == 100, "update UserStatusQuery's limit");

impl PartialSchema for ExternalId {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            // JSON Schema counts characters and the server counts UTF-8 bytes, so this bound
            // is necessary but not sufficient for non-ASCII ids; the description says so.
            .max_length(Some(MAX_EXTERNAL_ID_BYTES))
            .description(Some(format!(
                "A caller-chosen user id: any string of 1 to {MAX_EXTERNAL_ID_BYTES} bytes of UTF-8 without control \
                 characters, compared exactly (not trimmed, not case-folded). An id that looks like an email is \
                 still an external id. An unknown external id creates a profile on the set endpoints and \
                 `/users/track`."
            )))
            .examples(["user-123"])
            .into()
    }
}

impl ToSchema for ExternalId {}

impl PartialSchema for Email {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Email)))
            .max_length(Some(MAX_EMAIL_CHARS))
            .description(Some(format!(
                "An email address of at most {MAX_EMAIL_CHARS} characters, ASCII, without a quoted local part or an \
                 IP-literal domain. It is trimmed and lower-cased, so matching ignores case."
            )))
            .examples(["jane@example.com"])
            .into()
    }
}

impl ToSchema for Email {}

impl PartialSchema for Phone {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(format!("^\\+[1-9][0-9]{{1,{}}}$", MAX_PHONE_DIGITS - 1)))
            .description(Some(format!(
                "A phone number in E.164 form: `+`, the country calling code and the number, {MAX_PHONE_DIGITS} \
                 digits at most, with no spaces or punctuation. The number must also be one that libphonenumber \
                 accepts for its country, which the pattern cannot say."
            )))
            .examples(["+12223334444"])
            .into()
    }
}

impl ToSchema for Phone {}

/// `T`, or an array of 1 to 50 of them (a single value counts as a list of one).
fn one_or_many<T: ToSchema>(what: &str) -> RefOr<Schema> {
    let item = || RefOr::Ref(Ref::from_schema_name(T::name()));
    OneOfBuilder::new()
        .item(item())
        .item(
            ArrayBuilder::new()
                .items(item())
                .min_items(Some(1))
                .max_items(Some(MAX_IDENTIFIERS_PER_LIST))
                .description(Some(format!("1 to {MAX_IDENTIFIERS_PER_LIST} {what}; a repeated value counts once."))),
        )
        .description(Some(format!(
            "One {}, or an array of 1 to {MAX_IDENTIFIERS_PER_LIST} {what}.",
            what.trim_end_matches('s')
        )))
        .into()
}

/// Registers `T` beside a list that refers to it.
fn register<T: ToSchema>(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    schemas.push((T::name().into_owned(), T::schema()));
}

/// `external_ids` (V2, delete) or `external_id` (V1): one external id or 1 to 50 of them.
pub struct ExternalIdList;

impl PartialSchema for ExternalIdList {
    fn schema() -> RefOr<Schema> {
        one_or_many::<ExternalId>("external ids")
    }
}

impl ToSchema for ExternalIdList {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        register::<ExternalId>(schemas);
    }
}

/// `emails` (V2) or `email` (V1): one address or 1 to 50 of them.
pub struct EmailList;

impl PartialSchema for EmailList {
    fn schema() -> RefOr<Schema> {
        one_or_many::<Email>("emails")
    }
}

impl ToSchema for EmailList {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        register::<Email>(schemas);
    }
}

/// `phones` (V2) or `phone` (V1): one number or 1 to 50 of them.
pub struct PhoneList;

impl PartialSchema for PhoneList {
    fn schema() -> RefOr<Schema> {
        one_or_many::<Phone>("phones")
    }
}

impl ToSchema for PhoneList {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        register::<Phone>(schemas);
    }
}

/// The body of `POST /v2/subscription/status/set`.
#[derive(ToSchema)]
#[schema(examples(json!({"subscription_groups": [{
    "subscription_group_id": "0199a8a4-4c1e-7c3a-9c55-1f2e3d4c5b6a",
    "subscription_state": "subscribed",
    "external_ids": ["user-123"],
    "emails": ["jane@example.com"]
}]})))]
pub struct V2SetRequest {
    /// The changes, applied in order: a later entry for the same profile and group wins.
    #[schema(min_items = 1, max_items = 25)]
    pub subscription_groups: Vec<V2SetEntry>,
}

/// One group's new state for some profiles. At least one of `external_ids`, `emails` and
/// `phones` is required; `emails` and `phones` never go together in one entry (send two
/// entries). `emails` only for an email group, `phones` only for an SMS or WhatsApp group;
/// `external_ids` for any. An email or phone updates every profile that carries it, or is kept
/// as orphaned state (inherited by a profile that later takes it) when none does.
#[derive(ToSchema)]
pub struct V2SetEntry {
    /// An active subscription group of the key's workspace (unknown or archived: 400).
    pub subscription_group_id: String,
    /// The new state.
    pub subscription_state: SubscriptionState,
    /// Profiles by external id.
    #[schema(nullable = false)]
    pub external_ids: Option<ExternalIdList>,
    /// Profiles by email (email groups only).
    #[schema(nullable = false)]
    pub emails: Option<EmailList>,
    /// Profiles by phone (SMS and WhatsApp groups only).
    #[schema(nullable = false)]
    pub phones: Option<PhoneList>,
    /// Recorded on the change records; meaningful only for SMS and WhatsApp groups with
    /// `subscribed`. Defaults to `false`.
    #[schema(nullable = false)]
    pub use_double_opt_in_logic: Option<bool>,
}

/// The body of `POST /subscription/status/set` (V1): one entry at the top level, with singular
/// field names. At least one of `external_id`, `email` and `phone` is required. `email` and
/// `phone` together answer 400 with the message
/// `Either an email address or a phone number should be provided, but not both.`
#[derive(ToSchema)]
#[schema(examples(json!({
    "subscription_group_id": "0199a8a4-4c1e-7c3a-9c55-1f2e3d4c5b6a",
    "subscription_state": "unsubscribed",
    "external_id": "user-123",
    "email": ["jane@example.com"]
})))]
pub struct V1SetRequest {
    /// An active subscription group of the key's workspace (unknown or archived: 400).
    pub subscription_group_id: String,
    /// The new state.
    pub subscription_state: SubscriptionState,
    /// Profiles by external id.
    #[schema(nullable = false)]
    pub external_id: Option<ExternalIdList>,
    /// Profiles by email (email groups only).
    #[schema(nullable = false)]
    pub email: Option<EmailList>,
    /// Profiles by phone (SMS and WhatsApp groups only).
    #[schema(nullable = false)]
    pub phone: Option<PhoneList>,
    /// Recorded on the change records; meaningful only for SMS and WhatsApp groups with
    /// `subscribed`. Defaults to `false`.
    #[schema(nullable = false)]
    pub use_double_opt_in_logic: Option<bool>,
}

/// The body of `POST /users/track`: at least one of `attributes`, `events` and `purchases`.
/// Only `attributes` is acted on; `events`, `purchases` and any other key are accepted and
/// ignored.
#[derive(ToSchema)]
#[schema(examples(json!({"attributes": [{
    "external_id": "user-123",
    "email": "jane@example.com",
    "subscription_groups": [
        {"subscription_group_id": "0199a8a4-4c1e-7c3a-9c55-1f2e3d4c5b6a", "subscription_state": "subscribed"}
    ]
}]})))]
pub struct TrackRequest {
    /// Profiles to create or update, applied in order (a later object for the same external id
    /// wins). More than the limit answers 400; an invalid object is skipped and reported in
    /// the answer's `errors`, and the valid ones are applied together.
    #[schema(max_items = 75, nullable = false)]
    pub attributes: Option<Vec<TrackAttributes>>,
    /// Accepted and ignored.
    #[schema(nullable = false)]
    pub events: Option<Vec<Value>>,
    /// Accepted and ignored.
    #[schema(nullable = false)]
    pub purchases: Option<Vec<Value>>,
}

/// One profile to create or update. Keys other than these (`first_name`, custom attributes, …)
/// are accepted and ignored. An object without `external_id` (identified by `user_alias` or
/// `braze_id`, say) is skipped and reported.
#[derive(ToSchema)]
pub struct TrackAttributes {
    /// The profile; created if unknown.
    pub external_id: ExternalId,
    /// Sets the profile's email; `null` removes it; absent leaves it as it is. A new email
    /// takes the orphaned states it holds (within their retention), unless the profile already
    /// has a newer state in that group.
    pub email: Option<Email>,
    /// Sets the profile's phone; `null` removes it; absent leaves it as it is. A new phone
    /// takes its orphaned states as an email does.
    pub phone: Option<Phone>,
    /// Group states to set, after any inherited ones. An unknown or archived group skips the
    /// whole object.
    #[schema(nullable = false)]
    pub subscription_groups: Option<Vec<TrackSubscriptionGroup>>,
}

/// One group state set through `/users/track`.
#[derive(ToSchema)]
pub struct TrackSubscriptionGroup {
    /// An active subscription group of the key's workspace.
    pub subscription_group_id: String,
    /// The new state.
    pub subscription_state: SubscriptionState,
}

/// The body of `POST /users/delete`. Braze's `braze_ids` and `user_aliases` are not
/// supported: sending either answers 400, even beside `external_ids`.
#[derive(ToSchema)]
#[schema(examples(json!({"external_ids": ["user-123", "user-456"]})))]
pub struct DeleteRequest {
    /// The profiles to delete; unknown ids are ignored.
    pub external_ids: ExternalIdList,
}

/// The query of `GET /subscription/status/get`. Every identifier parameter may be repeated
/// (`external_id=a&external_id=b`) or bracketed (`external_id[]=a`, `external_id%5B%5D=a`).
/// When `external_id` is given, only external ids are looked up and `email`/`phone` are
/// ignored; otherwise `email` or `phone` (not both). Unknown parameters are ignored.
/// (A parameter list has no description of its own in OpenAPI, so the operation's description
/// says this too.)
#[derive(IntoParams)]
#[into_params(parameter_in = Query, style = Form)]
pub struct StatusGetQuery {
    /// The group to read: a subscription group of the key's workspace, archived or not.
    pub subscription_group_id: String,
    /// 1 to 50 external ids.
    #[param(explode, value_type = Option<Vec<ExternalId>>, nullable = false, min_items = 1, max_items = 50)]
    pub external_id: Option<Vec<String>>,
    /// 1 to 50 emails (email groups only).
    #[param(explode, value_type = Option<Vec<Email>>, nullable = false, min_items = 1, max_items = 50)]
    pub email: Option<Vec<String>>,
    /// 1 to 50 phones (SMS and WhatsApp groups only). Encode the `+` as `%2B`; a `+` sent
    /// unencoded arrives as a space and is read back as `+`.
    #[param(explode, value_type = Option<Vec<Phone>>, nullable = false, min_items = 1, max_items = 50)]
    pub phone: Option<Vec<String>>,
    /// Answer as of this instant (RFC 3339, any offset), from the change records: the latest
    /// record of each group at or before it. The identifiers name subjects as they are now: a
    /// deleted profile is unknown at any time.
    #[param(nullable = false, format = DateTime)]
    pub at: Option<String>,
}

/// The query of `GET /subscription/user/status`. At least one of `external_id`, `email` and
/// `phone`; several together are allowed and their matches are united. Each may be repeated
/// or bracketed as on `/subscription/status/get`. Unknown parameters are ignored.
#[derive(IntoParams)]
#[into_params(parameter_in = Query, style = Form)]
pub struct UserStatusQuery {
    /// 1 to 50 external ids.
    #[param(explode, value_type = Option<Vec<ExternalId>>, nullable = false, min_items = 1, max_items = 50)]
    pub external_id: Option<Vec<String>>,
    /// 1 to 50 emails; each lists every profile that carries it.
    #[param(explode, value_type = Option<Vec<Email>>, nullable = false, min_items = 1, max_items = 50)]
    pub email: Option<Vec<String>>,
    /// 1 to 50 phones; each lists every profile that carries it. Encode the `+` as `%2B`.
    #[param(explode, value_type = Option<Vec<Phone>>, nullable = false, min_items = 1, max_items = 50)]
    pub phone: Option<Vec<String>>,
    /// Users per page.
    #[param(nullable = false, minimum = 1, maximum = 100, default = 100)]
    pub limit: Option<u32>,
    /// Users to skip, counted over all the users matched.
    #[param(nullable = false, minimum = 0, default = 0)]
    pub offset: Option<u64>,
    /// List the states as of this instant (RFC 3339, any offset), from the change records;
    /// the users listed are those the identifiers match now.
    #[param(nullable = false, format = DateTime)]
    pub at: Option<String>,
}

/// The fixed `message` of a successful answer.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum SuccessMessage {
    /// `success`
    Success,
}

/// The answer of the two set endpoints.
#[derive(ToSchema)]
#[schema(examples(json!({"message": "success"})))]
pub struct SuccessResponse {
    /// `success`: every change is durably stored.
    pub message: SuccessMessage,
}

/// A state as `/subscription/user/status` spells it: only groups with a state are listed.
#[derive(ToSchema)]
pub enum SubscriptionStatus {
    /// The profile is subscribed.
    Subscribed,
    /// The profile is unsubscribed.
    Unsubscribed,
}
