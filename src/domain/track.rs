//! `POST /users/track`, the subset that serves subscriptions: validation of its attribute
//! objects into a [`TrackCommand`], and [`plan_track`], the one place that decides what they
//! change.
//!
//! Unlike the set endpoints, a problem with one object is not fatal (as in Braze): that object
//! is skipped and reported, and the valid ones are applied together. A profile that takes a new
//! email or phone inherits the orphaned states of that identifier, so a consent given before
//! the person had a profile is not lost.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Map, Value};

use super::change::{ChangeRecord, Contact, Subject};
use super::identifiers::{Email, ExternalId, Phone};
use super::ids::{GroupId, ProfileId};
use super::plan::WriteContext;
use super::subscription::{StateView, SubscriptionState};
use super::validation::{describe, group_field, state_field, GroupDirectory, Problems};

/// Attribute objects in one request, as Braze allows.
pub const MAX_ATTRIBUTE_OBJECTS: usize = 75;

/// What an object does to one of a profile's identifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldUpdate<T> {
    /// The key is absent: leave it as it is.
    Keep,
    /// The key is `null`: remove it, as Braze does for a null attribute.
    Clear,
    /// Set it.
    Set(T),
}

/// One valid attribute object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackAttributes {
    /// The profile, created if unknown.
    pub external_id: ExternalId,
    /// Its email.
    pub email: FieldUpdate<Email>,
    /// Its phone.
    pub phone: FieldUpdate<Phone>,
    /// Group states to set, in order; the global email state (`email_subscribe`) comes last,
    /// under [`super::email::GLOBAL`].
    pub groups: Vec<(GroupId, SubscriptionState)>,
}

/// A skipped object, reported in Braze's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TrackError {
    /// What is wrong, naming the field and the value.
    #[serde(rename = "type")]
    pub kind: String,
    /// Always `attributes`.
    #[schema(examples("attributes"))]
    pub input_array: &'static str,
    /// The object's index in `attributes`.
    #[schema(minimum = 0)]
    pub index: usize,
}

/// A validated request: the valid objects in order, and the skipped ones.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrackCommand {
    /// Objects to apply, in request order.
    pub objects: Vec<TrackAttributes>,
    /// Objects skipped, with why.
    pub errors: Vec<TrackError>,
}

/// Validates a `/users/track` body. The request as a whole fails only when it is not an object,
/// carries nothing to track, or has more than [`MAX_ATTRIBUTE_OBJECTS`] objects; each object is
/// otherwise judged on its own.
pub fn parse_track(body: &Value, groups: &dyn GroupDirectory) -> Result<TrackCommand, Problems> {
    let mut problems = Problems::default();
    let Some(top) = body.as_object() else {
        problems.push("request body", format!("expected a JSON object, got {}", describe(body)));
        return Err(problems);
    };
    let attributes = match top.get("attributes") {
        None | Some(Value::Null) => {
            // Braze accepts a request of events or purchases alone; this service keeps only
            // subscription data, so those are acknowledged and ignored.
            if ["events", "purchases"].iter().any(|k| top.get(*k).is_some_and(|v| !v.is_null())) {
                return Ok(TrackCommand::default());
            }
            problems.push("request body", "needs attributes (or events or purchases)");
            return Err(problems);
        }
        Some(Value::Array(items)) => items,
        Some(other) => {
            problems.push("attributes", format!("expected an array of objects, got {}", describe(other)));
            return Err(problems);
        }
    };
    if attributes.len() > MAX_ATTRIBUTE_OBJECTS {
        problems
            .push("attributes", format!("must hold at most {MAX_ATTRIBUTE_OBJECTS} objects, got {}", attributes.len()));
        return Err(problems);
    }
    let mut command = TrackCommand::default();
    for (index, item) in attributes.iter().enumerate() {
        let path = format!("attributes[{index}]");
        let mut found = Problems::default();
        let parsed = match item.as_object() {
            Some(obj) => parse_object(obj, &path, groups, &mut found),
            None => {
                found.push(&path, format!("expected an object, got {}", describe(item)));
                None
            }
        };
        match parsed {
            Some(object) if found.is_empty() => command.objects.push(object),
            _ => {
                command.errors.push(TrackError { kind: found.into_list().join("; "), input_array: "attributes", index })
            }
        }
    }
    Ok(command)
}

fn parse_object(
    obj: &Map<String, Value>,
    path: &str,
    groups: &dyn GroupDirectory,
    problems: &mut Problems,
) -> Option<TrackAttributes> {
    let external_id = match obj.get("external_id") {
        None | Some(Value::Null) => {
            let other = ["user_alias", "braze_id"].into_iter().find(|k| obj.contains_key(*k));
            match other {
                Some(other) => problems.push(
                    &format!("{path}.external_id"),
                    format!("is required: objects identified by {other} are not supported"),
                ),
                None => problems.push(&format!("{path}.external_id"), "is required"),
            }
            None
        }
        Some(Value::String(raw)) => {
            ExternalId::parse(raw).map_err(|e| problems.push(&format!("{path}.external_id"), e)).ok()
        }
        Some(other) => {
            problems.push(&format!("{path}.external_id"), format!("expected a string, got {}", describe(other)));
            None
        }
    };
    let email = field_update(obj.get("email"), &format!("{path}.email"), problems, Email::parse);
    let phone = field_update(obj.get("phone"), &format!("{path}.phone"), problems, Phone::parse);

    let mut states = Vec::new();
    match obj.get("subscription_groups") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            let mut item_path = String::new();
            for (i, item) in items.iter().enumerate() {
                item_path.clear();
                let _ = write!(item_path, "{path}.subscription_groups[{i}]");
                let Some(entry) = item.as_object() else {
                    problems.push(&item_path, format!("expected an object, got {}", describe(item)));
                    continue;
                };
                let group = group_field(
                    entry.get("subscription_group_id"),
                    &format!("{item_path}.subscription_group_id"),
                    groups,
                    problems,
                );
                let state =
                    state_field(entry.get("subscription_state"), &format!("{item_path}.subscription_state"), problems);
                if let (Some((group, _)), Some(state)) = (group, state) {
                    states.push((group, state));
                }
            }
        }
        Some(other) => problems.push(
            &format!("{path}.subscription_groups"),
            format!("expected an array of objects, got {}", describe(other)),
        ),
    }
    match obj.get("email_subscribe") {
        None | Some(Value::Null) => {}
        value => {
            if let Some(state) = super::email::global_state_field(value, &format!("{path}.email_subscribe"), problems) {
                states.push((super::email::GLOBAL, state));
            }
        }
    }
    Some(TrackAttributes { external_id: external_id?, email: email?, phone: phone?, groups: states })
}

fn field_update<T, E: std::fmt::Display>(
    value: Option<&Value>,
    path: &str,
    problems: &mut Problems,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Option<FieldUpdate<T>> {
    match value {
        None => Some(FieldUpdate::Keep),
        Some(Value::Null) => Some(FieldUpdate::Clear),
        Some(Value::String(raw)) => match parse(raw) {
            Ok(parsed) => Some(FieldUpdate::Set(parsed)),
            Err(err) => {
                problems.push(path, err);
                None
            }
        },
        Some(other) => {
            problems.push(path, format!("expected a string or null, got {}", describe(other)));
            None
        }
    }
}

/// A profile as planning needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileSnapshot {
    /// Internal id.
    pub id: ProfileId,
    /// Normalized email.
    pub email: Option<String>,
    /// E.164 phone.
    pub phone: Option<String>,
    /// States, one per group.
    pub states: Vec<StateView>,
}

impl ProfileSnapshot {
    fn state(&self, group: GroupId) -> Option<&StateView> {
        self.states.iter().find(|s| s.group_id == group)
    }

    fn set_state(&mut self, view: StateView) {
        match self.states.iter_mut().find(|s| s.group_id == view.group_id) {
            Some(slot) => *slot = view,
            None => self.states.push(view),
        }
    }
}

/// What a store found for a track command, read where the plan is applied.
#[derive(Debug, Clone, Default)]
pub struct TrackKnown {
    /// The profiles of the command's external ids that exist.
    pub profiles: HashMap<ExternalId, ProfileSnapshot>,
    /// For each email or phone the command sets that no profile carries: its orphaned states
    /// still inside their retention.
    pub orphans: HashMap<Contact, Vec<StateView>>,
}

/// One profile the command touches: as it was (`None`: created) and as it will be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedProfile {
    /// Its external id.
    pub external_id: ExternalId,
    /// Before the command.
    pub before: Option<ProfileSnapshot>,
    /// After it.
    pub after: ProfileSnapshot,
}

/// Everything a track command changes, to be written in one atomic commit.
#[derive(Debug, Clone, Default)]
pub struct TrackPlan {
    /// Profiles created or changed (unchanged ones are left out), in first-touched order.
    pub profiles: Vec<TrackedProfile>,
    /// Emails and phones whose orphaned states moved to a profile, to be deleted.
    pub orphans_moved: Vec<Contact>,
    /// One record per net change of a (profile, group), in the order of their first change;
    /// not yet sealed.
    pub changes: Vec<ChangeRecord>,
    /// What the unsubscribe index records for the global state's changes (see
    /// [`super::email`]).
    pub unsubscribes: Vec<super::email::UnsubscribeUpdate>,
}

impl TrackCommand {
    /// The external ids whose profiles are needed, each once.
    pub fn external_ids(&self) -> Vec<&ExternalId> {
        let mut out: Vec<&ExternalId> = Vec::with_capacity(self.objects.len());
        for object in &self.objects {
            if !out.contains(&&object.external_id) {
                out.push(&object.external_id);
            }
        }
        out
    }

    /// The emails and phones the command sets, each once: those that may bring orphaned state.
    pub fn contacts_set(&self) -> Vec<Contact> {
        let mut out = Vec::new();
        for object in &self.objects {
            if let FieldUpdate::Set(email) = &object.email {
                out.push(Contact::Email(email.clone()));
            }
            if let FieldUpdate::Set(phone) = &object.phone {
                out.push(Contact::Phone(phone.clone()));
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// Applies the objects in order to the known facts and returns what changed.
///
/// A profile that takes a new email or phone inherits each orphaned state of it unless its own
/// state in that group is newer; the orphaned states then belong to the profile and are
/// deleted, so no later profile inherits a state that has since moved on. The object's own
/// `subscription_groups` are applied last, so they win over inherited states.
///
/// A (profile, group) changed several times gets one record of its net change, and none (its
/// state and its time left as they were) when it ends where it began.
pub fn plan_track(command: &TrackCommand, known: TrackKnown, ctx: &WriteContext) -> TrackPlan {
    let TrackKnown { mut profiles, mut orphans } = known;
    let mut plan = TrackPlan::default();
    let mut touched: Vec<TrackedProfile> = Vec::new();
    let mut net: Vec<NetChange> = Vec::new();

    for object in &command.objects {
        let slot = match touched.iter().position(|t| t.external_id == object.external_id) {
            Some(i) => i,
            None => {
                let before = profiles.remove(&object.external_id);
                let after = before.clone().unwrap_or_else(|| ProfileSnapshot {
                    id: ProfileId::generate(),
                    email: None,
                    phone: None,
                    states: Vec::new(),
                });
                touched.push(TrackedProfile { external_id: object.external_id.clone(), before, after });
                touched.len() - 1
            }
        };
        let profile = &mut touched[slot].after;

        let mut inherit = Vec::new();
        match &object.email {
            FieldUpdate::Keep => {}
            FieldUpdate::Clear => profile.email = None,
            FieldUpdate::Set(email) if profile.email.as_deref() != Some(email.as_str()) => {
                profile.email = Some(email.as_str().to_string());
                inherit.push(Contact::Email(email.clone()));
            }
            FieldUpdate::Set(_) => {}
        }
        match &object.phone {
            FieldUpdate::Keep => {}
            FieldUpdate::Clear => profile.phone = None,
            FieldUpdate::Set(phone) if profile.phone.as_deref() != Some(phone.as_str()) => {
                profile.phone = Some(phone.as_str().to_string());
                inherit.push(Contact::Phone(phone.clone()));
            }
            FieldUpdate::Set(_) => {}
        }
        for contact in inherit {
            let Some(states) = orphans.remove(&contact) else { continue };
            plan.orphans_moved.push(contact);
            for orphan in states {
                let own = profile.state(orphan.group_id).copied();
                if own.is_some_and(|own| own.updated_at > orphan.updated_at) {
                    continue;
                }
                change(&mut net, profile, orphan.group_id, orphan.state, ctx);
            }
        }
        for &(group, state) in &object.groups {
            change(&mut net, profile, group, state, ctx);
        }
    }

    for change in net {
        let profile = &mut touched.iter_mut().find(|t| t.after.id == change.profile).expect("a touched profile").after;
        let new = profile.state(change.group).expect("set by the change").state;
        match change.old {
            Some(old) if old.state == new => profile.set_state(old),
            old => {
                let record =
                    ctx.record(change.group, Subject::Profile(change.profile), old.map(|o| o.state), new, false);
                let email = profile.email.as_deref().and_then(|e| Email::parse(e).ok());
                if let Some(update) = email.and_then(|email| super::email::unsubscribe_update(&record, &email)) {
                    plan.unsubscribes.push(update);
                }
                plan.changes.push(record);
            }
        }
    }
    plan.profiles = touched.into_iter().filter(|t| t.before.as_ref() != Some(&t.after)).collect();
    plan
}

/// A (profile, group) the command changed, with its state before the command.
struct NetChange {
    profile: ProfileId,
    group: GroupId,
    old: Option<StateView>,
}

/// Sets `profile`'s state in `group` unless it already is `state`, remembering the state it had
/// before the command the first time the command changes it.
fn change(
    net: &mut Vec<NetChange>,
    profile: &mut ProfileSnapshot,
    group: GroupId,
    state: SubscriptionState,
    ctx: &WriteContext,
) {
    let old = profile.state(group).copied();
    if old.map(|o| o.state) == Some(state) {
        return;
    }
    if !net.iter().any(|n| n.profile == profile.id && n.group == group) {
        net.push(NetChange { profile: profile.id, group, old });
    }
    profile.set_state(StateView { group_id: group, state, updated_at: ctx.at });
}
