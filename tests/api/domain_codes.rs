//! The codes both stores keep states and change subjects as. Stored data outlives releases, so
//! these numbers may never change; each store reads them from the one `code()` of its enum.

use consentry::domain::change::{Contact, ContactKind, Subject};
use consentry::domain::identifiers::{Email, Phone};
use consentry::domain::ids::{OrphanId, ProfileId};
use consentry::domain::subscription::SubscriptionState;

#[test]
fn subscription_states_keep_their_stored_codes_and_read_back() {
    assert_eq!(SubscriptionState::Subscribed.code(), 1);
    assert_eq!(SubscriptionState::Unsubscribed.code(), 2);
    assert_eq!(SubscriptionState::OptedIn.code(), 3, "the global email state's third value");
    for state in [SubscriptionState::Subscribed, SubscriptionState::Unsubscribed, SubscriptionState::OptedIn] {
        assert_eq!(SubscriptionState::from_code(state.code()), Some(state));
    }
    assert_eq!(SubscriptionState::from_code(0), None, "0 spells no state in the embedded store");
    assert_eq!(SubscriptionState::from_code(4), None);
}

#[test]
fn change_subjects_keep_their_stored_codes_and_an_orphan_carries_its_contact_kind() {
    let email = Contact::Email(Email::parse("ana@example.com").unwrap());
    let phone = Contact::Phone(Phone::parse("+14155552671").unwrap());
    assert_eq!(Subject::Profile(ProfileId::generate()).code(), 0);
    assert_eq!(Subject::Orphan(OrphanId::generate(), email.clone()).code(), 1);
    assert_eq!(Subject::Orphan(OrphanId::generate(), phone.clone()).code(), 2);
    assert_eq!(Subject::Erased(OrphanId::generate()).code(), 3);
    for contact in [email, phone] {
        let kind = ContactKind::from_code(contact.kind().code()).unwrap();
        assert_eq!(kind.parse(contact.as_str()).unwrap(), contact);
    }
    assert_eq!(ContactKind::from_code(0), None);
    assert_eq!(ContactKind::from_code(3), None);
}
