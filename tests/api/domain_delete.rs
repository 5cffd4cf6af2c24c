//! The delete planner on its own: what deleting profiles removes and which change records it
//! erases, decided from facts as a store would fetch them. The HTTP tests in `users_delete.rs`
//! check that both stores apply it.

use std::collections::HashMap;

use consentry::domain::change::{Actor, ChangeRecord, Contact, Endpoint, Source, Subject, Trace};
use consentry::domain::delete::{parse_delete, plan_delete, DeleteKnown, FoundProfile};
use consentry::domain::identifiers::{Email, ExternalId, Phone};
use consentry::domain::ids::{ApiKeyId, ChangeId, GroupId, OrphanId, ProfileId, RequestId, WorkspaceId};
use consentry::domain::ledger::{ChainGroup, ChainHash};
use consentry::domain::subscription::SubscriptionState;
use consentry::domain::time::Timestamp;
use serde_json::json;

fn id(raw: &str) -> ExternalId {
    ExternalId::parse(raw).unwrap()
}

fn email(raw: &str) -> Contact {
    Contact::Email(Email::parse(raw).unwrap())
}

fn phone(raw: &str) -> Contact {
    Contact::Phone(Phone::parse(raw).unwrap())
}

/// Facts for these profiles, each contact carried by exactly the profiles listed with it.
fn known(profiles: &[(&str, ProfileId, Vec<Contact>)]) -> DeleteKnown {
    let mut carriers: HashMap<Contact, Vec<ProfileId>> = HashMap::new();
    for (_, profile, contacts) in profiles {
        for contact in contacts {
            carriers.entry(contact.clone()).or_default().push(*profile);
        }
    }
    DeleteKnown {
        profiles: profiles
            .iter()
            .map(|(external_id, profile, contacts)| {
                (id(external_id), FoundProfile { id: *profile, contacts: contacts.clone() })
            })
            .collect(),
        carriers,
    }
}

fn record(subject: Subject) -> ChangeRecord {
    ChangeRecord {
        id: ChangeId::generate(),
        at: Timestamp(1_700_000_000_000),
        workspace_id: WorkspaceId::generate(),
        group: ChainGroup::Group(GroupId::generate()),
        subject,
        old: None,
        new: SubscriptionState::Unsubscribed,
        kind: Source::UnsubscribePage,
        trace: Trace::api(ApiKeyId::generate(), Endpoint::V2StatusSet, RequestId::generate()),
        use_double_opt_in_logic: false,
        actor: Some(Actor { ip: "192.0.2.7".into(), user_agent: "Mail/1.0".into() }),
        seq: 1,
        previous_hash: ChainHash::ZERO,
        hash: ChainHash([7; 32]),
    }
}

#[test]
fn a_delete_removes_each_profile_found_once_in_the_order_asked_and_ignores_unknown_ids() {
    let (a, b) = (ProfileId::generate(), ProfileId::generate());
    let facts = known(&[("a", a, vec![]), ("b", b, vec![])]);
    let plan = plan_delete(&[id("b"), id("nobody"), id("a"), id("b")], facts);
    let removed: Vec<_> = plan.profiles.iter().map(|p| (p.external_id.as_str(), p.profile.id)).collect();
    assert_eq!(removed, [("b", b), ("a", a)]);
    assert_eq!(plan.profile_ids(), [b, a]);
    assert!(plan.released.is_empty(), "profiles without email or phone release nothing");
}

#[test]
fn the_last_carrier_of_an_email_and_a_phone_releases_both() {
    let a = ProfileId::generate();
    let contacts = vec![email("ana@example.com"), phone("+14155552671")];
    let plan = plan_delete(&[id("a")], known(&[("a", a, contacts.clone())]));
    assert_eq!(plan.released, contacts);
}

#[test]
fn an_email_another_profile_still_carries_is_not_released() {
    let (a, b) = (ProfileId::generate(), ProfileId::generate());
    let shared = email("shared@example.com");
    let facts = known(&[("a", a, vec![shared.clone(), phone("+14155552671")]), ("b", b, vec![shared])]);
    let plan = plan_delete(&[id("a")], facts);
    assert_eq!(plan.released, [phone("+14155552671")], "b keeps the shared email");
}

#[test]
fn deleting_every_carrier_in_one_request_releases_their_shared_email_once() {
    let (a, b) = (ProfileId::generate(), ProfileId::generate());
    let shared = email("shared@example.com");
    let facts = known(&[("a", a, vec![shared.clone()]), ("b", b, vec![shared.clone()])]);
    let plan = plan_delete(&[id("a"), id("b")], facts);
    assert_eq!(plan.released, [shared]);
}

#[test]
fn a_carrier_the_store_did_not_report_counts_as_none() {
    let a = ProfileId::generate();
    let mut facts = known(&[("a", a, vec![email("ana@example.com")])]);
    facts.carriers.clear();
    assert_eq!(plan_delete(&[id("a")], facts).released, [email("ana@example.com")]);
}

#[test]
fn the_contacts_to_fetch_carriers_for_are_those_of_the_profiles_found_each_once() {
    let shared = email("shared@example.com");
    let facts = known(&[
        ("a", ProfileId::generate(), vec![shared.clone(), phone("+14155552671")]),
        ("b", ProfileId::generate(), vec![shared.clone()]),
    ]);
    let mut contacts = facts.contacts();
    contacts.sort();
    assert_eq!(contacts, [shared, phone("+14155552671")]);
}

#[test]
fn erasing_rewrites_only_the_subject_and_actor_of_records_about_a_released_address() {
    let a = ProfileId::generate();
    let gone = email("ana@example.com");
    let plan = plan_delete(&[id("a")], known(&[("a", a, vec![gone.clone()])]));

    let orphan = OrphanId::generate();
    let mut about_gone = record(Subject::Orphan(orphan, gone));
    let before = about_gone.clone();
    assert!(plan.erase(&mut about_gone));
    assert_eq!(
        about_gone,
        ChangeRecord { subject: Subject::Erased(orphan), actor: None, ..before },
        "the consent, its internal id and its hashes are kept"
    );

    for subject in [
        Subject::Orphan(OrphanId::generate(), email("other@example.com")),
        Subject::Profile(a),
        Subject::Erased(OrphanId::generate()),
    ] {
        let mut untouched = record(subject);
        let before = untouched.clone();
        assert!(!plan.erase(&mut untouched));
        assert_eq!(untouched, before);
    }
}

#[test]
fn stored_identifiers_that_no_longer_parse_are_reported_not_guessed() {
    let found = FoundProfile::from_stored(ProfileId::generate(), Some("ana@example.com"), None).unwrap();
    assert_eq!(found.contacts, [email("ana@example.com")]);
    assert!(FoundProfile::from_stored(ProfileId::generate(), Some("not an email"), None).is_err());
    assert!(FoundProfile::from_stored(ProfileId::generate(), None, Some("12")).is_err());
}

#[test]
fn the_delete_request_is_read_in_the_domain_naming_each_problem() {
    assert_eq!(parse_delete(&json!({"external_ids": ["a", "a", "b"]})).unwrap(), [id("a"), id("b")]);
    assert_eq!(parse_delete(&json!({"external_ids": "a"})).unwrap(), [id("a")]);
    let problems = parse_delete(&json!({"braze_ids": ["x"]})).unwrap_err().into_list();
    assert_eq!(
        problems,
        ["braze_ids: is not supported: name the users to delete by external_ids", "external_ids: is required"]
    );
    assert!(parse_delete(&json!([])).unwrap_err().first().starts_with("request body: expected a JSON object"));
}
