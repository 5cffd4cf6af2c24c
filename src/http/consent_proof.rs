//! `GET /consent/proof`: one JSON document about one subject that a company can hand to an
//! auditor or to the person: who the subject is, its states now, and every record of every
//! chain it has, each chain verified. Reads only.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::Uri;
use axum::Json;
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use super::auth::{Authorized, HistoryGet, Required};
use super::consent_history::Subjects;
use super::error::ApiError;
use super::openapi::{AuthErrors, QueryErrors, StoreErrors};
use super::schema::SuccessMessage;
use super::AppState;
use crate::domain::change::{ChangeRecord, Contact};
use crate::domain::history::{self, HistorySubject, LedgerRecord, Window};
use crate::domain::ledger::{self, Anchor, ChainHead, ChainKey};
use crate::domain::read::{self, QueryParams};
use crate::domain::subscription::StateView;

/// The query of `GET /consent/proof`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query, style = Form)]
pub struct ProofParams {
    /// The subject by external id. Exactly one of `external_id`, `email`, `phone`.
    pub external_id: Option<String>,
    /// The subject by email.
    pub email: Option<String>,
    /// The subject by phone (E.164; encode the `+` as `%2B`).
    pub phone: Option<String>,
}

/// The subject of a proof: as asked, and the profiles it covers now.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ProofSubject)]
pub struct SubjectView {
    /// The external id asked, if the subject was asked by external id.
    #[schema(required = true)]
    pub external_id: Option<String>,
    /// The email asked, if the subject was asked by email.
    #[schema(required = true)]
    pub email: Option<String>,
    /// The phone asked, if the subject was asked by phone.
    #[schema(required = true)]
    pub phone: Option<String>,
    /// The profiles the subject covers now, with their identifiers.
    pub profiles: Vec<ProfileEntry>,
}

/// A profile of the subject.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileEntry {
    /// External id.
    pub external_id: Option<String>,
    /// Email.
    #[schema(required = true)]
    pub email: Option<String>,
    /// Phone.
    #[schema(required = true)]
    pub phone: Option<String>,
}

/// A state now, of a profile or of an orphaned email or phone.
#[derive(Debug, Serialize, ToSchema)]
pub struct StateEntry {
    /// The group.
    pub subscription_group_id: String,
    /// Its channel.
    pub channel: &'static str,
    /// The profile's external id; `null` for an orphaned identifier's state.
    #[schema(required = true)]
    pub external_id: Option<String>,
    /// The orphaned email, for an orphaned email's state.
    #[schema(required = true)]
    pub email: Option<String>,
    /// The orphaned phone, for an orphaned phone's state.
    #[schema(required = true)]
    pub phone: Option<String>,
    /// `subscribed` or `unsubscribed`.
    pub state: &'static str,
    /// When it last changed (RFC 3339, UTC, microseconds).
    pub updated_at: String,
}

/// One chain: the records of one group and one subject (a profile, or an orphaned email or
/// phone), oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChainEntry {
    /// The group.
    #[schema(required = true)]
    pub subscription_group_id: Option<String>,
    /// The profile's external id, for a profile's chain.
    #[schema(required = true)]
    pub external_id: Option<String>,
    /// The email, for an orphaned email's chain.
    #[schema(required = true)]
    pub email: Option<String>,
    /// The phone, for an orphaned phone's chain.
    #[schema(required = true)]
    pub phone: Option<String>,
    /// Every record of the chain.
    pub records: Vec<LedgerRecord>,
    /// Whether every record's hash and link to the one before hold.
    pub verified: bool,
}

/// The proof document.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProofResponse {
    /// `success`.
    #[schema(value_type = SuccessMessage)]
    pub message: &'static str,
    /// Who the proof is about.
    pub subject: SubjectView,
    /// When the document was made (RFC 3339, UTC, microseconds).
    pub generated_at: String,
    /// The subject's states now.
    pub states: Vec<StateEntry>,
    /// Every chain of the subject.
    pub chains: Vec<ChainEntry>,
    /// Whether every chain verifies.
    pub verified: bool,
}

/// Answers the proof document of one subject.
#[utoipa::path(
    get,
    path = "/consent/proof",
    tag = "consent",
    operation_id = "getConsentProof",
    summary = "Prove one subject's consent",
    description = "One document about one subject, named by exactly one of `external_id`, `email` or `phone` (the \
        same subjects as `/consent/history`): the profiles it covers now, its states now, and every record of every \
        chain it has (one chain per group and profile or orphaned identifier), with each chain's verification: \
        every record's `hash` recomputed from its canonical encoding, every `previous_hash` linking to the record \
        before. `verified` is true when every chain holds. An unknown subject answers an empty proof.",
    params(ProofParams),
    responses(
        (status = 200, description = "The proof.", body = ProofResponse),
        QueryErrors, AuthErrors, StoreErrors,
    ),
    security(("bearerAuth" = [])),
    extensions(("x-permission" = json!(HistoryGet::PERMISSION.as_str()))),
)]
pub async fn handle(
    State(state): State<AppState>,
    caller: Authorized<HistoryGet>,
    uri: Uri,
) -> Result<Json<ProofResponse>, ApiError> {
    let workspace = caller.key.workspace_id;
    let params = QueryParams::parse(uri.query())?;
    let asked = history::parse_subject(&params)?;
    let generated = state.clock.now();
    let subjects = Subjects::resolve(&state, workspace, &asked).await?;
    let records = state.store.ledger_records(workspace, subjects.read_all(Window::default())).await?;
    let chains = by_chain(records);
    // Each chain is proved up to its stored head, from its anchor: a record missing at the end
    // of a chain is seen, and a chain whose oldest records ledger retention removed still
    // proves. A head ahead of the records read is a write that landed in between, or a missing
    // record: the records are read again, after the heads, and each chain is cut at its head,
    // so that only a record really missing fails the proof.
    let keys: Vec<ChainKey> = chains.keys().copied().collect();
    let heads = state.store.chain_heads(workspace, &keys).await?;
    let ahead = chains
        .iter()
        .any(|(key, records)| heads.get(key).is_some_and(|head| records.last().is_none_or(|last| head.seq > last.seq)));
    let chains = if ahead {
        by_chain(state.store.ledger_records(workspace, subjects.read_all(Window::default())).await?)
    } else {
        chains
    };

    let mut subject = SubjectView { external_id: None, email: None, phone: None, profiles: Vec::new() };
    match &asked {
        HistorySubject::ExternalId(id) => subject.external_id = Some(id.as_str().to_string()),
        HistorySubject::Contact(Contact::Email(e)) => subject.email = Some(e.as_str().to_string()),
        HistorySubject::Contact(Contact::Phone(p)) => subject.phone = Some(p.as_str().to_string()),
    }
    let mut states = Vec::new();
    for profile in &subjects.profiles {
        subject.profiles.push(ProfileEntry {
            external_id: profile.external_id.clone(),
            email: profile.email.clone(),
            phone: profile.phone.clone(),
        });
        for view in &profile.states {
            states.push(state_entry(&state, workspace, view, profile.external_id.clone(), None));
        }
    }
    if subjects.profiles.is_empty() {
        // An identifier no profile carries: its orphaned states, as the live reads see them.
        for contact in &subjects.contacts {
            let view = state.store.read_contacts(workspace, &[contact]).await?.pop().unwrap_or_default();
            for view in read::live_orphans(view.orphans, generated, state.orphan_retention) {
                states.push(state_entry(&state, workspace, &view, None, Some(contact)));
            }
        }
    }

    // The chains in the order of their first records.
    let mut chains: Vec<(Option<ChainHead>, Vec<ChangeRecord>)> = chains
        .into_iter()
        .map(|(key, mut records)| {
            let head = heads.get(&key).copied();
            if let Some(head) = head {
                records.retain(|r| r.seq <= head.seq);
            }
            (head, records)
        })
        .filter(|(_, records)| !records.is_empty())
        .collect();
    chains.sort_by_key(|(_, chain)| chain.iter().map(history::Position::of).min());
    let chains: Vec<ChainEntry> = chains
        .into_iter()
        .map(|(head, records)| {
            // A chain without a head began after the heads were read: it is proved from the
            // zero anchor as far as it was read.
            let verified = match &head {
                Some(head) => ledger::verify_chain(&records, head.anchor, Some(head)).is_ok(),
                None => ledger::verify_chain(&records, Anchor::default(), None).is_ok(),
            };
            let views = subjects.views(&state.catalog, workspace, &records);
            let first = &views[0];
            ChainEntry {
                subscription_group_id: first.subscription_group_id.clone(),
                external_id: first.external_id.clone(),
                email: first.email.clone(),
                phone: first.phone.clone(),
                records: views,
                verified,
            }
        })
        .collect();
    let verified = chains.iter().all(|c| c.verified);
    Ok(Json(ProofResponse {
        message: "success",
        subject,
        generated_at: generated.to_rfc3339(),
        states,
        chains,
        verified,
    }))
}

/// Records by chain, each chain in its own order (`seq`).
fn by_chain(records: Vec<ChangeRecord>) -> BTreeMap<ChainKey, Vec<ChangeRecord>> {
    let mut chains: BTreeMap<ChainKey, Vec<ChangeRecord>> = BTreeMap::new();
    for record in records {
        chains.entry(record.chain()).or_default().push(record);
    }
    for chain in chains.values_mut() {
        chain.sort_by_key(|r| r.seq);
    }
    chains
}

fn state_entry(
    state: &AppState,
    workspace: crate::domain::ids::WorkspaceId,
    view: &StateView,
    external_id: Option<String>,
    orphan: Option<&Contact>,
) -> StateEntry {
    let channel = state.catalog.group(workspace, view.group_id).map_or("email", |g| g.channel.as_str());
    let group = crate::domain::ledger::ChainGroup::from_storage(view.group_id);
    StateEntry {
        subscription_group_id: group
            .group_id()
            .map_or(crate::domain::history::GLOBAL_GROUP.to_string(), |id| id.to_string()),
        channel,
        external_id,
        email: match orphan {
            Some(Contact::Email(e)) => Some(e.as_str().to_string()),
            _ => None,
        },
        phone: match orphan {
            Some(Contact::Phone(p)) => Some(p.as_str().to_string()),
            _ => None,
        },
        state: view.state.as_str(),
        updated_at: view.updated_at.to_rfc3339(),
    }
}
