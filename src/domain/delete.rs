//! `POST /users/delete`: reading the request, and deciding what a delete removes.
//!
//! Like [`super::plan`], the decision is pure: a store fetches the profiles a delete names and
//! the carriers of their emails and phones ([`DeleteKnown`]), calls [`plan_delete`], and writes
//! the [`DeletePlan`] atomically. Both stores therefore remove the same things.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::change::{ChangeRecord, Contact, Subject};
use super::identifiers::{Email, ExternalId, IdentifierError, Phone};
use super::ids::ProfileId;
use super::validation::{describe, parse_list, Problems};

/// Reads `{"external_ids": [...]}`: 1 to 50 external ids, without repeats. Braze's other ways
/// of naming users (`braze_ids`, `user_aliases`) are refused rather than ignored: a delete that
/// silently does nothing is worse than an error.
pub fn parse_delete(body: &Value) -> Result<Vec<ExternalId>, Problems> {
    let mut problems = Problems::default();
    let Some(top) = body.as_object() else {
        problems.push("request body", format!("expected a JSON object, got {}", describe(body)));
        return Err(problems);
    };
    for unsupported in ["braze_ids", "user_aliases"] {
        if top.contains_key(unsupported) {
            problems.push(unsupported, "is not supported: name the users to delete by external_ids");
        }
    }
    let external_ids = match top.get("external_ids") {
        None | Some(Value::Null) => {
            problems.push("external_ids", "is required");
            Vec::new()
        }
        Some(value) => parse_list(value, "external_ids", &mut problems, ExternalId::parse),
    };
    if problems.is_empty() {
        Ok(external_ids)
    } else {
        Err(problems)
    }
}

/// A profile a delete names, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundProfile {
    /// Its internal id.
    pub id: ProfileId,
    /// Its email and phone, those it has.
    pub contacts: Vec<Contact>,
}

impl FoundProfile {
    /// A profile from its stored email and phone text; an error means the stored text no
    /// longer parses (a damaged store).
    pub fn from_stored(id: ProfileId, email: Option<&str>, phone: Option<&str>) -> Result<Self, IdentifierError> {
        let mut contacts = Vec::with_capacity(2);
        if let Some(email) = email {
            contacts.push(Contact::Email(Email::parse(email)?));
        }
        if let Some(phone) = phone {
            contacts.push(Contact::Phone(Phone::parse(phone)?));
        }
        Ok(FoundProfile { id, contacts })
    }
}

/// What a store found for a delete, read at the point the plan is applied.
#[derive(Debug, Clone, Default)]
pub struct DeleteKnown {
    /// The profiles of the external ids asked that exist.
    pub profiles: HashMap<ExternalId, FoundProfile>,
    /// For each of [`DeleteKnown::contacts`], every profile that carries it, the profiles
    /// being deleted included. A contact left out has no carrier.
    pub carriers: HashMap<Contact, Vec<ProfileId>>,
}

impl DeleteKnown {
    /// The emails and phones of the profiles found, each once: the contacts whose carriers
    /// the store must fetch once it has found the profiles.
    pub fn contacts(&self) -> Vec<Contact> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for profile in self.profiles.values() {
            for contact in &profile.contacts {
                if seen.insert(contact) {
                    out.push(contact.clone());
                }
            }
        }
        out
    }
}

/// A profile the delete removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedProfile {
    /// The external id it was asked by.
    pub external_id: ExternalId,
    /// Its internal id, email and phone.
    pub profile: FoundProfile,
}

/// Everything a delete removes, to be applied in one atomic commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeletePlan {
    /// Profiles to remove, each once in the order asked, with their states, their internal id
    /// mapping and their email and phone index entries.
    pub profiles: Vec<DeletedProfile>,
    /// Emails and phones whose every carrier goes: they keep nothing behind, so their
    /// orphaned states are removed and the change records about them erased.
    pub released: Vec<Contact>,
}

impl DeletePlan {
    /// The ids of the profiles removed.
    pub fn profile_ids(&self) -> Vec<ProfileId> {
        self.profiles.iter().map(|p| p.profile.id).collect()
    }

    /// Erases `record` if it names a released email or phone, and says whether it did. The
    /// history keeps the consent (the group, the states, the time, the source) but not the
    /// address: the subject is rewritten to [`Subject::Erased`] (its internal id stays, so its
    /// chain still verifies) and the actor is dropped.
    pub fn erase(&self, record: &mut ChangeRecord) -> bool {
        match &record.subject {
            Subject::Orphan(id, contact) if self.released.contains(contact) => {
                record.subject = Subject::Erased(*id);
                record.actor = None;
                true
            }
            _ => false,
        }
    }
}

/// Drops the person (IP address, user agent) from a deleted profile's record, and says whether
/// there was one: the record keeps the change, the person is personal data. Neither is hashed,
/// so the chain still verifies.
pub fn erase_actor(record: &mut ChangeRecord) -> bool {
    record.actor.take().is_some()
}

/// Decides what deleting the profiles of `external_ids` removes.
///
/// An external id that names no profile is no error and removes nothing. An email or phone of a
/// deleted profile that another profile still carries stays as it is; one whose every carrier
/// is deleted is released (see [`DeletePlan::released`]).
pub fn plan_delete(external_ids: &[ExternalId], known: DeleteKnown) -> DeletePlan {
    let DeleteKnown { mut profiles, carriers } = known;
    let mut plan = DeletePlan::default();
    for external_id in external_ids {
        if let Some(profile) = profiles.remove(external_id) {
            plan.profiles.push(DeletedProfile { external_id: external_id.clone(), profile });
        }
    }
    let deleted: HashSet<ProfileId> = plan.profiles.iter().map(|p| p.profile.id).collect();
    for deleted_profile in &plan.profiles {
        for contact in &deleted_profile.profile.contacts {
            let kept = carriers.get(contact).is_some_and(|c| c.iter().any(|id| !deleted.contains(id)));
            if !kept && !plan.released.contains(contact) {
                plan.released.push(contact.clone());
            }
        }
    }
    plan
}
