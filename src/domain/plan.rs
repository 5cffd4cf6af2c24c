//! What a validated command changes, computed from the facts a store fetched.
//!
//! This is the one place that decides which profiles an identifier reaches, what is a change
//! and what is a no-op, when an orphaned identifier state is written and what every change
//! record says. It is pure: a store fetches the [`Known`] facts for a command's [`Lookups`]
//! (inside its transaction, or inside its single writer), calls [`plan_set_status`], and writes
//! the [`Plan`] atomically. Both stores therefore behave the same by construction.

use std::collections::{HashMap, HashSet};

use super::change::{ChangeRecord, ChangeSource, Contact, Subject};
use super::identifiers::ExternalId;
use super::ids::{ChangeId, GroupId, ProfileId, WorkspaceId};
use super::set_status::SetStatusCommand;
use super::subscription::SubscriptionState;
use super::time::Timestamp;

/// Who is writing: the caller's workspace and the source stamped on every change record.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    /// The caller's workspace.
    pub workspace_id: WorkspaceId,
    /// The key, endpoint and request.
    pub source: ChangeSource,
}

/// Who is writing, and when the store applies it. The store, not the handler, picks the time,
/// so that change times follow the order in which changes were applied.
#[derive(Debug, Clone, Copy)]
pub struct WriteContext {
    /// The caller's workspace.
    pub workspace_id: WorkspaceId,
    /// The key, endpoint and request.
    pub source: ChangeSource,
    /// The time the request is applied.
    pub at: Timestamp,
}

impl Origin {
    /// The context of applying this origin's request at `at`.
    pub fn at(self, at: Timestamp) -> WriteContext {
        WriteContext { workspace_id: self.workspace_id, source: self.source, at }
    }
}

/// The facts a store must fetch before planning a command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lookups {
    /// Profiles to find by external id.
    pub external_ids: Vec<ExternalId>,
    /// Emails and phones whose carriers, and whose orphaned states, are needed.
    pub contacts: Vec<Contact>,
    /// The groups whose states of those profiles and contacts are needed.
    pub groups: Vec<GroupId>,
}

/// What a store found for a command's [`Lookups`], read at the point the plan is applied.
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// External id to profile, for the external ids asked that exist.
    pub profiles_by_external_id: HashMap<ExternalId, ProfileId>,
    /// Contact to the profiles that carry it, for the contacts asked that any profile carries.
    pub carriers: HashMap<Contact, Vec<ProfileId>>,
    /// Current states of the profiles found, in the groups asked (absent: `Unknown`).
    pub states: HashMap<(ProfileId, GroupId), SubscriptionState>,
    /// Current orphaned states of the contacts asked, in the groups asked.
    pub orphan_states: HashMap<(Contact, GroupId), SubscriptionState>,
}

/// A profile the plan creates for an unknown external id, so that no consent signal is dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProfile {
    /// Its new id.
    pub id: ProfileId,
    /// The external id it was created for.
    pub external_id: ExternalId,
}

/// Everything a command changes, to be written in one atomic commit.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Profiles to create.
    pub new_profiles: Vec<NewProfile>,
    /// Final state of every (profile, group) the command changed.
    pub profile_states: Vec<(ProfileId, GroupId, SubscriptionState)>,
    /// Final state of every (contact, group) orphaned state the command changed.
    pub orphan_states: Vec<(Contact, GroupId, SubscriptionState)>,
    /// One record per change, in the order applied.
    pub changes: Vec<ChangeRecord>,
}

impl Plan {
    /// Whether the command changes nothing at all (every entry was a no-op).
    pub fn is_empty(&self) -> bool {
        self.new_profiles.is_empty() && self.changes.is_empty()
    }
}

impl SetStatusCommand {
    /// The facts needed to plan this command, each asked once.
    pub fn lookups(&self) -> Lookups {
        let mut lookups = Lookups::default();
        let mut seen_ids = HashSet::new();
        let mut seen_contacts = HashSet::new();
        for entry in &self.entries {
            if !lookups.groups.contains(&entry.group_id) {
                lookups.groups.push(entry.group_id);
            }
            for id in &entry.external_ids {
                if seen_ids.insert(id) {
                    lookups.external_ids.push(id.clone());
                }
            }
            for contact in &entry.contacts {
                if seen_contacts.insert(contact) {
                    lookups.contacts.push(contact.clone());
                }
            }
        }
        lookups
    }
}

/// Whose state an entry sets.
enum Target {
    Profile(ProfileId),
    Orphan(Contact),
}

/// Applies the command's entries in order to the known facts and returns what changed.
///
/// An email or phone reaches every profile that carries it; one that no profile carries gets
/// orphaned identifier state. An unknown external id creates a profile. A profile reached twice
/// in one entry (by external id and by email, say) changes once. Setting a state to what it is
/// records nothing.
pub fn plan_set_status(command: &SetStatusCommand, known: Known, ctx: &WriteContext) -> Plan {
    let Known { mut profiles_by_external_id, carriers, mut states, mut orphan_states } = known;
    let mut plan = Plan::default();
    let mut touched_states = Vec::new();
    let mut touched_orphans = Vec::new();
    let mut targets = Vec::new();
    let mut reached = HashSet::new();

    for entry in &command.entries {
        let group = entry.group_id;
        targets.clear();
        reached.clear();
        for external_id in &entry.external_ids {
            let id = *profiles_by_external_id.entry(external_id.clone()).or_insert_with(|| {
                let id = ProfileId::generate();
                plan.new_profiles.push(NewProfile { id, external_id: external_id.clone() });
                id
            });
            if reached.insert(id) {
                targets.push(Target::Profile(id));
            }
        }
        for contact in &entry.contacts {
            match carriers.get(contact).filter(|c| !c.is_empty()) {
                Some(profiles) => {
                    for &id in profiles {
                        if reached.insert(id) {
                            targets.push(Target::Profile(id));
                        }
                    }
                }
                None => targets.push(Target::Orphan(contact.clone())),
            }
        }

        for target in targets.drain(..) {
            let old = match &target {
                Target::Profile(id) => states.insert((*id, group), entry.state),
                Target::Orphan(contact) => orphan_states.insert((contact.clone(), group), entry.state),
            };
            if old == Some(entry.state) {
                continue;
            }
            let subject = match target {
                Target::Profile(id) => {
                    touched_states.push((id, group));
                    Subject::Profile(id)
                }
                Target::Orphan(contact) => {
                    touched_orphans.push((contact.clone(), group));
                    Subject::Orphan(contact)
                }
            };
            plan.changes.push(ChangeRecord {
                id: ChangeId::generate(),
                at: ctx.at,
                workspace_id: ctx.workspace_id,
                group_id: group,
                subject,
                old,
                new: entry.state,
                source: ctx.source,
                use_double_opt_in_logic: entry.use_double_opt_in_logic,
            });
        }
    }

    let mut written = HashSet::new();
    for key in touched_states {
        if written.insert(key) {
            plan.profile_states.push((key.0, key.1, states[&key]));
        }
    }
    let mut written = HashSet::new();
    for key in touched_orphans {
        if written.insert(key.clone()) {
            let state = orphan_states[&key];
            plan.orphan_states.push((key.0, key.1, state));
        }
    }
    plan
}
