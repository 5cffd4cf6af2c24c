//! The two stores, one behaviour: the same random sequence of set, track and delete requests
//! applied to an embedded app and a PostgreSQL app, at the same (manual) times, must give the
//! same answers, the same states, the same history (ids aside), the same `GET /consent/history`
//! pages, the same answers `at=` any instant, and chains that verify alike. Runs in the
//! PostgreSQL pass of the suite.

use consentry::domain::change::{ChangeRecord, Subject};
use consentry::domain::ids::{GroupId, ProfileId};
use consentry::domain::subscription::Channel;
use consentry::domain::time::Timestamp;
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::consent_history::all_pages;
use crate::helpers::{
    email, manual_clock, spawn_app_on, status_and_json, test_store, TestApp, TestStore, DELETE_PATH, TRACK_PATH,
    V2_PATH,
};

const IDS: [&str; 3] = ["ada", "bob", "cy"];
const EMAILS: [&str; 2] = ["x@example.com", "y@example.com"];
const GROUPS: usize = 2;

/// One request, with groups by index (each app has its own group ids).
#[derive(Debug, Clone)]
enum Op {
    Set { group: usize, subscribe: bool, ids: Vec<usize>, emails: Vec<usize> },
    Track { id: usize, email: Option<Option<usize>>, groups: Vec<(usize, bool)> },
    Delete { ids: Vec<usize> },
}

fn op() -> impl Strategy<Value = Op> {
    let set =
        (0..GROUPS, any::<bool>(), prop::collection::vec(0..IDS.len(), 0..3), prop::collection::vec(0..2usize, 0..3))
            .prop_filter("something to set", |(_, _, ids, emails)| !ids.is_empty() || !emails.is_empty())
            .prop_map(|(group, subscribe, ids, emails)| Op::Set { group, subscribe, ids, emails });
    let track = (
        0..IDS.len(),
        prop::option::of(prop::option::of(0..EMAILS.len())),
        prop::collection::vec((0..GROUPS, any::<bool>()), 0..3),
    )
        .prop_map(|(id, email, groups)| Op::Track { id, email, groups });
    let delete = prop::collection::vec(0..IDS.len(), 1..3).prop_map(|ids| Op::Delete { ids });
    prop_oneof![3 => set, 3 => track, 1 => delete]
}

fn state(subscribe: bool) -> &'static str {
    if subscribe {
        "subscribed"
    } else {
        "unsubscribed"
    }
}

/// Sends `op` to `app`; returns the status and body.
async fn send(app: &TestApp, groups: &[GroupId], op: &Op) -> (u16, Value) {
    let (path, body) = match op {
        Op::Set { group, subscribe, ids, emails } => {
            let ids: Vec<&str> = ids.iter().map(|&i| IDS[i]).collect();
            let emails: Vec<&str> = emails.iter().map(|&i| EMAILS[i]).collect();
            let mut entry =
                json!({ "subscription_group_id": groups[*group].to_string(), "subscription_state": state(*subscribe) });
            if !ids.is_empty() {
                entry["external_ids"] = json!(ids);
            }
            if !emails.is_empty() {
                entry["emails"] = json!(emails);
            }
            (V2_PATH, json!({ "subscription_groups": [entry] }))
        }
        Op::Track { id, email, groups: states } => {
            let mut object = json!({ "external_id": IDS[*id] });
            match email {
                None => {}
                Some(None) => object["email"] = Value::Null,
                Some(Some(e)) => object["email"] = json!(EMAILS[*e]),
            }
            let entries: Vec<Value> = states
                .iter()
                .map(
                    |&(g, s)| json!({ "subscription_group_id": groups[g].to_string(), "subscription_state": state(s) }),
                )
                .collect();
            object["subscription_groups"] = json!(entries);
            (TRACK_PATH, json!({ "attributes": [object] }))
        }
        Op::Delete { ids } => {
            let ids: Vec<&str> = ids.iter().map(|&i| IDS[i]).collect();
            (DELETE_PATH, json!({ "external_ids": ids }))
        }
    };
    let (status, body) = status_and_json(app.post_json(path, &body).await).await;
    (status.as_u16(), body)
}

/// Group states as `(group index, state)`, sorted.
type States = Vec<(usize, String)>;

/// What an app holds, in terms both apps share: groups by index, profiles by external id,
/// profile subjects by order of first appearance.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    profiles: Vec<(String, Option<String>, States)>,
    carriers: Vec<(String, Vec<String>)>,
    orphans: Vec<(String, States)>,
    changes: Vec<String>,
}

async fn observe(app: &TestApp, groups: &[GroupId]) -> Observed {
    let index = |g: GroupId| groups.iter().position(|&x| x == g).expect("one of the test's groups");
    let mut profiles = Vec::new();
    for id in IDS {
        if let Some(p) = app.profile(id).await {
            let mut states: Vec<(usize, String)> =
                p.states.iter().map(|s| (index(s.group_id), s.state.as_str().to_string())).collect();
            states.sort();
            profiles.push((id.to_string(), p.email.clone(), states));
        }
    }
    let mut carriers = Vec::new();
    let mut orphans = Vec::new();
    for address in EMAILS {
        let mut ids: Vec<String> =
            app.carriers(&email(address)).await.into_iter().filter_map(|p| p.external_id).collect();
        ids.sort();
        carriers.push((address.to_string(), ids));
        let mut states: Vec<(usize, String)> = app
            .store
            .inspect()
            .orphan_states(app.workspace, &email(address))
            .await
            .unwrap()
            .into_iter()
            .map(|s| (index(s.group_id), s.state.as_str().to_string()))
            .collect();
        states.sort();
        orphans.push((address.to_string(), states));
    }
    let mut seen: Vec<ProfileId> = Vec::new();
    let changes = app
        .changes()
        .await
        .iter()
        .map(|c: &ChangeRecord| {
            let subject = match &c.subject {
                Subject::Profile(id) => {
                    let n = seen.iter().position(|x| x == id).unwrap_or_else(|| {
                        seen.push(*id);
                        seen.len() - 1
                    });
                    format!("profile#{n}")
                }
                Subject::Orphan(_, contact) => format!("orphan {}", contact.as_str()),
                Subject::Erased(_) => "erased".into(),
            };
            format!(
                "{subject} g{} {:?}->{:?} {} {}",
                index(c.group.storage_id()),
                c.old,
                c.new,
                c.trace.endpoint.unwrap().path(),
                c.use_double_opt_in_logic
            )
        })
        .collect();
    Observed { profiles, carriers, orphans, changes }
}

/// The same text from both apps: each app's group ids replaced by their index, and group
/// names dropped (groups are named in creation order, indexed in id order).
fn by_index(value: &Value, groups: &[GroupId]) -> String {
    let mut text = value.to_string();
    for (i, g) in groups.iter().enumerate() {
        text = text.replace(&g.to_string(), &format!("g{i}"));
    }
    for g in 0..GROUPS {
        text = text.replace(&format!("\"name\":\"g{g}\""), "\"name\":\"…\"");
    }
    text
}

/// What the ledger's reads answer on `app` after the run: every subject's history (pages of
/// two, so that cursors are compared too) without the generated ids and the hashes over them,
/// the reads `at=` each instant in `instants`, and what `verify` finds.
async fn observe_ledger(app: &TestApp, groups: &[GroupId], instants: &[Timestamp]) -> Vec<String> {
    let mut seen = Vec::new();
    let subjects: Vec<String> =
        IDS.iter().map(|id| format!("external_id={id}")).chain(EMAILS.iter().map(|e| format!("email={e}"))).collect();
    for subject in &subjects {
        let mut records = all_pages(app, subject, 2).await;
        for record in &mut records {
            for field in ["id", "hash", "previous_hash", "request_id", "api_key_id"] {
                record.as_object_mut().expect("an object").remove(field);
            }
        }
        seen.push(format!("history {subject}: {}", by_index(&Value::Array(records), groups)));
    }
    for at in instants {
        let at = at.to_rfc3339();
        for subject in &subjects {
            let (status, body) = app.user_status(&format!("{subject}&at={at}")).await;
            // Groups are listed by name, and names follow creation order, not id order:
            // compare them in id order.
            let mut body: Value = serde_json::from_str(&by_index(&body, groups)).expect("JSON");
            for user in body["users"].as_array_mut().into_iter().flatten() {
                if let Some(list) = user["subscription_groups"].as_array_mut() {
                    list.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
                }
            }
            seen.push(format!("user/status {subject} at {at}: {status} {body}"));
        }
        for (i, &group) in groups.iter().enumerate() {
            let (status, body) = app.status_get(group, &format!("external_id=ada&external_id=bob&at={at}")).await;
            seen.push(format!("status/get g{i} at {at}: {status} {}", by_index(&body, groups)));
            let (status, body) =
                app.status_get(group, &format!("email={}&email={}&at={at}", EMAILS[0], EMAILS[1])).await;
            seen.push(format!("status/get g{i} emails at {at}: {status} {}", by_index(&body, groups)));
        }
    }
    let check = app
        .store
        .verify_ledger(None, std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0)))
        .await
        .expect("the walk reads the store");
    seen.push(format!("verify: {} chains, {} records, first bad {:?}", check.chains, check.records, check.first_bad));
    seen
}

async fn run_case(ops: Vec<Op>) -> Result<(), TestCaseError> {
    // The same manual time on both apps, a second further for each request, so that records'
    // times and `at=` instants are the same on both.
    let (embedded_clock, postgres_clock) = (manual_clock(), manual_clock());
    let embedded = spawn_app_on(TestStore::Embedded, |s| s.clock = embedded_clock.clone()).await;
    let postgres = spawn_app_on(TestStore::Postgres, |s| s.clock = postgres_clock.clone()).await;
    // Sorted: where the stores order by group id (a profile's states, the orphaned states an
    // address hands over), group index i must be the i-th id in both apps.
    async fn group_ids(app: &TestApp) -> Vec<GroupId> {
        let mut ids = Vec::new();
        for g in 0..GROUPS {
            ids.push(app.create_group(&format!("g{g}"), Channel::Email).await);
        }
        ids.sort();
        ids
    }
    let (embedded_groups, postgres_groups) = (group_ids(&embedded).await, group_ids(&postgres).await);
    let second = std::time::Duration::from_secs(1);
    // Before any record, then half a second after each request.
    let mut instants = vec![Timestamp(embedded_clock.now().0 - 1_000_000)];
    for (n, op) in ops.iter().enumerate() {
        let a = send(&embedded, &embedded_groups, op).await;
        let b = send(&postgres, &postgres_groups, op).await;
        instants.push(Timestamp(embedded_clock.now().0 + 500_000));
        for clock in [&embedded_clock, &postgres_clock] {
            clock.advance(second);
        }
        prop_assert_eq!(&a.0, &b.0, "status of request {} {:?}", n, op);
        if a.0 >= 300 {
            // Error texts name the app's own group ids: compare their shape only.
            prop_assert_eq!(a.1.as_object().map(|o| o.len()), b.1.as_object().map(|o| o.len()));
        } else {
            prop_assert_eq!(&a.1, &b.1, "answer to request {} {:?}", n, op);
        }
    }
    prop_assert_eq!(observe(&embedded, &embedded_groups).await, observe(&postgres, &postgres_groups).await);
    let (a, b) = (
        observe_ledger(&embedded, &embedded_groups, &instants).await,
        observe_ledger(&postgres, &postgres_groups, &instants).await,
    );
    prop_assert!(a.last().is_some_and(|v| v.ends_with("first bad None")), "{:?}", a.last());
    for (a, b) in a.iter().zip(&b) {
        prop_assert_eq!(a, b);
    }
    let _ = embedded.shutdown().await;
    let _ = postgres.shutdown().await;
    Ok(())
}

#[test]
fn random_request_sequences_leave_both_stores_in_the_same_state_with_the_same_history() {
    if test_store() != TestStore::Postgres {
        return; // needs PostgreSQL: runs in the suite's PostgreSQL pass
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let config = ProptestConfig { cases: 40, failure_persistence: None, ..ProptestConfig::default() };
    let strategy = prop::collection::vec(op(), 1..10);
    proptest::test_runner::TestRunner::new(config).run(&strategy, |ops| runtime.block_on(run_case(ops))).unwrap();
}
