//! The ledger's pure rules: sealing, verifying and cutting chains, without a store.

use consentry::domain::change::{ChangeRecord, Endpoint};
use consentry::domain::change::{Source, Subject, Trace};
use consentry::domain::ids::{ApiKeyId, ProfileId, RequestId};
use consentry::domain::ids::{ChangeId, GroupId, WorkspaceId};
use consentry::domain::ledger::*;
use consentry::domain::subscription::SubscriptionState;
use consentry::domain::time::Timestamp;
use uuid::Uuid;

fn record(profile: ProfileId, new: SubscriptionState) -> ChangeRecord {
    ChangeRecord {
        id: ChangeId::generate(),
        at: Timestamp(1_764_460_800_000_000),
        workspace_id: WorkspaceId(Uuid::from_u128(1)),
        group: ChainGroup::Group(GroupId(Uuid::from_u128(2))),
        subject: Subject::Profile(profile),
        old: None,
        new,
        kind: Source::Api,
        trace: Trace::api(ApiKeyId::generate(), Endpoint::V2StatusSet, RequestId::generate()),
        use_double_opt_in_logic: false,
        actor: None,
        seq: 0,
        previous_hash: ChainHash::ZERO,
        hash: ChainHash::ZERO,
    }
}

fn chain(n: usize) -> (Vec<ChangeRecord>, ChainHead) {
    let profile = ProfileId::generate();
    let mut head = ChainHead::default();
    let records = (0..n)
        .map(|i| {
            let state = if i % 2 == 0 { SubscriptionState::Subscribed } else { SubscriptionState::Unsubscribed };
            let mut r = record(profile, state);
            seal(&mut r, &mut head);
            r
        })
        .collect();
    (records, head)
}

#[test]
fn a_sealed_chain_verifies_and_starts_from_zeros() {
    let (records, head) = chain(4);
    assert_eq!(records[0].previous_hash, ChainHash::ZERO);
    assert_eq!(records[0].seq, 1);
    assert_eq!(records[3].previous_hash, records[2].hash);
    assert_eq!(verify_chain(&records, Anchor::default(), Some(&head)), Ok(()));
}

#[test]
fn an_altered_field_names_the_altered_record() {
    let (mut records, head) = chain(4);
    records[2].use_double_opt_in_logic = true;
    let bad = verify_chain(&records, Anchor::default(), Some(&head)).unwrap_err();
    assert_eq!(bad, BadRecord { id: records[2].id, why: Break::Hash });
}

#[test]
fn a_removed_record_breaks_the_sequence_at_the_next_one() {
    let (mut records, head) = chain(4);
    records.remove(1);
    let bad = verify_chain(&records, Anchor::default(), Some(&head)).unwrap_err();
    assert_eq!(bad, BadRecord { id: records[1].id, why: Break::Sequence });
}

#[test]
fn a_missing_tail_is_seen_against_the_head() {
    let (mut records, head) = chain(3);
    records.pop();
    let bad = verify_chain(&records, Anchor::default(), Some(&head)).unwrap_err();
    assert_eq!(bad, BadRecord { id: records[1].id, why: Break::Truncated });
}

#[test]
fn a_chain_cut_by_retention_verifies_from_its_anchor() {
    let (records, head) = chain(5);
    let anchor = Anchor { seq: records[2].seq, hash: records[2].hash };
    assert_eq!(verify_chain(&records[3..], anchor, Some(&head)), Ok(()));
    assert!(verify_chain(&records[3..], Anchor::default(), Some(&head)).is_err());
}

#[test]
fn erasing_an_actor_or_an_identifier_keeps_the_hash() {
    let mut r = record(ProfileId::generate(), SubscriptionState::Subscribed);
    r.actor = Some(consentry::domain::change::Actor { ip: "192.0.2.1".into(), user_agent: "x".into() });
    let id = consentry::domain::ids::OrphanId::generate();
    r.subject = Subject::Orphan(id, consentry::domain::change::Contact::Email("a@example.com".parse().unwrap()));
    let before = hash(&r);
    r.actor.as_mut().unwrap().ip.clear();
    r.subject = Subject::Erased(id);
    assert_eq!(hash(&r), before);
}

#[test]
fn hashes_read_back_from_their_hex_form() {
    let (records, _) = chain(1);
    let text = records[0].hash.to_string();
    assert_eq!(text.len(), 64);
    assert_eq!(text, text.to_lowercase());
    assert_eq!(ChainHash::parse_hex(&text), Some(records[0].hash));
    assert_eq!(ChainHash::ZERO.to_string(), "0".repeat(64));
}
