//! What a validated command changes, computed from the facts a store fetched.
//!
//! This is the one place that decides which profiles an identifier reaches, what is a change
//! and what is a no-op, when an orphaned identifier state is written and what every change
//! record says. It is pure: a store fetches the [`Known`] facts for a command's [`Lookups`]
//! (inside its transaction, or inside its single writer), calls [`plan_set_status`], and writes
//! the [`Plan`] atomically. Both stores therefore behave the same by construction.

use std::collections::{HashMap, HashSet};

use super::change::{Actor, ChangeRecord, Contact, Source, Subject, Trace};
use super::identifiers::ExternalId;
use super::ids::{ChangeId, GroupId, OrphanId, ProfileId, WorkspaceId};
use super::ledger::{ChainGroup, ChainHash};
use super::set_status::SetStatusCommand;
use super::subscription::SubscriptionState;
use super::time::Timestamp;

/// Who is writing: the caller's workspace and what every change record says of its origin.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The caller's workspace.
    pub workspace_id: WorkspaceId,
    /// How the change happens.
    pub kind: Source,
    /// The key, endpoint and request.
    pub trace: Trace,
    /// The person, for changes made through a page or link.
    pub actor: Option<Actor>,
}

impl Origin {
    /// An API call with `key` to `endpoint`, in request `request`.
    pub fn api(
        workspace_id: WorkspaceId,
        key: super::ids::ApiKeyId,
        endpoint: super::change::Endpoint,
        request: super::ids::RequestId,
    ) -> Self {
        Origin { workspace_id, kind: Source::Api, trace: Trace::api(key, endpoint, request), actor: None }
    }

    /// The context of applying this origin's request at `at`.
    pub fn at(&self, at: Timestamp) -> WriteContext {
        WriteContext {
            workspace_id: self.workspace_id,
            kind: self.kind,
            trace: self.trace,
            actor: self.actor.clone(),
            at,
        }
    }
}

/// Who is writing, and when the store applies it. The store, not the handler, picks the time,
/// so that change times follow the order in which changes were applied.
#[derive(Debug, Clone)]
pub struct WriteContext {
    /// The caller's workspace.
    pub workspace_id: WorkspaceId,
    /// How the change happens.
    pub kind: Source,
    /// The key, endpoint and request.
    pub trace: Trace,
    /// The person, for changes made through a page or link.
    pub actor: Option<Actor>,
    /// The time the request is applied.
    pub at: Timestamp,
}

impl WriteContext {
    /// A change record of this context, not yet sealed into its chain (the store does that,
    /// since only it knows the chain's head).
    pub fn record(
        &self,
        group_id: GroupId,
        subject: Subject,
        old: Option<SubscriptionState>,
        new: SubscriptionState,
        use_double_opt_in_logic: bool,
    ) -> ChangeRecord {
        ChangeRecord {
            id: ChangeId::generate(),
            at: self.at,
            workspace_id: self.workspace_id,
            group: ChainGroup::from_storage(group_id),
            subject,
            old,
            new,
            kind: self.kind,
            trace: self.trace,
            use_double_opt_in_logic,
            actor: self.actor.clone(),
            seq: 0,
            previous_hash: ChainHash::ZERO,
            hash: ChainHash::ZERO,
        }
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
    /// The internal ids of the contacts asked that have orphaned state in any group.
    pub orphan_ids: HashMap<Contact, OrphanId>,
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
    /// Final state of every (contact, group) orphaned state the command changed, with the
    /// contact's internal id (new if it had no orphaned state).
    pub orphan_states: Vec<(Contact, OrphanId, GroupId, SubscriptionState)>,
    /// One record per net change of a (subject, group), in the order of their first change;
    /// not yet sealed.
    pub changes: Vec<ChangeRecord>,
    /// What the unsubscribe index records for the global state's changes (see
    /// [`super::email`]).
    pub unsubscribes: Vec<super::email::UnsubscribeUpdate>,
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
#[derive(Clone, PartialEq, Eq, Hash)]
enum Target {
    Profile(ProfileId),
    Orphan(Contact),
}

/// A (subject, group) the command changed: its state before the command, and after.
struct NetChange {
    target: Target,
    group: GroupId,
    old: Option<SubscriptionState>,
    new: SubscriptionState,
    use_double_opt_in_logic: bool,
}

/// Applies the command's entries in order to the known facts and returns what changed.
///
/// An email or phone reaches every profile that carries it; one that no profile carries gets
/// orphaned identifier state. An unknown external id creates a profile. A profile reached twice
/// in one entry (by external id and by email, say) changes once. A (subject, group) changed by
/// several entries gets one record of its net change, from its state before the request to its
/// state after, and none when it ends where it began: the ledger records what the request did,
/// not how it spelled it.
pub fn plan_set_status(command: &SetStatusCommand, known: Known, ctx: &WriteContext) -> Plan {
    let Known { mut profiles_by_external_id, carriers, mut states, mut orphan_states, mut orphan_ids } = known;
    let mut plan = Plan::default();
    let mut net: Vec<NetChange> = Vec::new();
    let mut net_index: HashMap<(Target, GroupId), usize> = HashMap::new();
    let mut targets = Vec::new();
    let mut reached = HashSet::new();
    // The email through which a profile was reached: the address its global state is listed
    // under in the unsubscribe index.
    let mut reached_by: HashMap<ProfileId, Contact> = HashMap::new();

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
                        reached_by.entry(id).or_insert_with(|| contact.clone());
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
            match net_index.get(&(target.clone(), group)) {
                Some(&i) => {
                    net[i].new = entry.state;
                    net[i].use_double_opt_in_logic = entry.use_double_opt_in_logic;
                }
                None => {
                    net_index.insert((target.clone(), group), net.len());
                    net.push(NetChange {
                        target,
                        group,
                        old,
                        new: entry.state,
                        use_double_opt_in_logic: entry.use_double_opt_in_logic,
                    });
                }
            }
        }
    }

    for change in net {
        if change.old == Some(change.new) {
            continue;
        }
        let email = match &change.target {
            Target::Profile(id) => reached_by.get(id),
            Target::Orphan(contact) => Some(contact),
        };
        let email = match email {
            Some(Contact::Email(email)) => Some(email.clone()),
            _ => None,
        };
        let subject = match change.target {
            Target::Profile(id) => {
                plan.profile_states.push((id, change.group, change.new));
                Subject::Profile(id)
            }
            Target::Orphan(contact) => {
                let id = *orphan_ids.entry(contact.clone()).or_insert_with(OrphanId::generate);
                plan.orphan_states.push((contact.clone(), id, change.group, change.new));
                Subject::Orphan(id, contact)
            }
        };
        let record = ctx.record(change.group, subject, change.old, change.new, change.use_double_opt_in_logic);
        if let Some(update) = email.and_then(|email| super::email::unsubscribe_update(&record, &email)) {
            plan.unsubscribes.push(update);
        }
        plan.changes.push(record);
    }
    plan
}
