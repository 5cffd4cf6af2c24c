//! The read answers on their own: what an email or phone reads as, and who the user listing
//! shows, decided from views as a store returns them. `status_get.rs` and `user_status.rs`
//! check both stores through HTTP.

use consentry::domain::change::Contact;
use consentry::domain::identifiers::Email;
use consentry::domain::ids::{GroupId, ProfileId};
use consentry::domain::read::{contact_answer, list_users, profile_answer, ContactView, ListedUser, ReadState};
use consentry::domain::subscription::{StateView, SubscriptionState};
use consentry::domain::time::Timestamp;

fn state(group: GroupId, state: SubscriptionState) -> StateView {
    StateView { group_id: group, state, updated_at: Timestamp(1_700_000_000_000) }
}

fn profile(states: Vec<StateView>) -> consentry::domain::read::ProfileView {
    consentry::domain::read::ProfileView {
        id: ProfileId::generate(),
        external_id: None,
        email: Some("ana@example.com".into()),
        phone: None,
        states,
    }
}

#[test]
fn an_email_carried_by_several_profiles_reads_as_the_most_restrictive_of_their_states() {
    let group = GroupId::generate();
    let subscribed = profile(vec![state(group, SubscriptionState::Subscribed)]);
    let unsubscribed = profile(vec![state(group, SubscriptionState::Unsubscribed)]);
    let stateless = profile(vec![]);
    let view = ContactView { carriers: vec![subscribed.clone(), unsubscribed, stateless.clone()], orphans: vec![] };
    assert_eq!(contact_answer(&view, group), ReadState::Unsubscribed);
    let view = ContactView { carriers: vec![stateless.clone(), subscribed], orphans: vec![] };
    assert_eq!(contact_answer(&view, group), ReadState::Subscribed);
    let view = ContactView { carriers: vec![stateless], orphans: vec![] };
    assert_eq!(contact_answer(&view, group), ReadState::Unknown);
}

#[test]
fn an_email_no_profile_carries_reads_as_its_orphaned_state_in_the_group_asked() {
    let (group, other) = (GroupId::generate(), GroupId::generate());
    let view = ContactView { carriers: vec![], orphans: vec![state(other, SubscriptionState::Subscribed)] };
    assert_eq!(contact_answer(&view, group), ReadState::Unknown);
    assert_eq!(contact_answer(&view, other), ReadState::Subscribed);
    assert_eq!(contact_answer(&ContactView::default(), group), ReadState::Unknown);
}

#[test]
fn an_external_id_reads_as_its_profile_state_or_unknown() {
    let group = GroupId::generate();
    let found = profile(vec![state(group, SubscriptionState::Subscribed)]);
    assert_eq!(profile_answer(Some(&found), group), ReadState::Subscribed);
    assert_eq!(profile_answer(Some(&found), GroupId::generate()), ReadState::Unknown);
    assert_eq!(profile_answer(None, group), ReadState::Unknown);
}

#[test]
fn the_listing_shows_each_profile_once_and_an_orphaned_identifier_only_with_state() {
    let group = GroupId::generate();
    let (a, b) = (profile(vec![]), profile(vec![]));
    let email = |raw: &str| Contact::Email(Email::parse(raw).unwrap());
    let orphan_states = vec![state(group, SubscriptionState::Unsubscribed)];
    let users = list_users(
        vec![Some(a.clone()), None],
        vec![
            (email("shared@example.com"), ContactView { carriers: vec![a.clone(), b.clone()], orphans: vec![] }),
            (email("lonely@example.com"), ContactView { carriers: vec![], orphans: orphan_states.clone() }),
            (email("nothing@example.com"), ContactView::default()),
        ],
    );
    assert_eq!(
        users,
        [
            ListedUser::Profile(a),
            ListedUser::Profile(b),
            ListedUser::Orphan { contact: email("lonely@example.com"), states: orphan_states },
        ]
    );
}
