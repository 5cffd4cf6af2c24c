//! `consentry ledger export`, one page at a time: the same page whether the command line reads
//! the store itself or asks the running server that holds it (over the admin socket, one
//! request per page, so that neither side ever holds more than a page: constant memory).

use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::domain::change::{Contact, Subject};
use crate::domain::history::{self, HistorySubject, Position, Window};
use crate::domain::identifiers::{Email, ExternalId, Phone};
use crate::domain::ids::{ChangeId, ProfileId};
use crate::domain::subscription::Channel;
use crate::domain::time::Timestamp;
use crate::store::{LedgerRead, LedgerSources, Store};

/// Records per page of an export.
pub const EXPORT_PAGE: usize = 1000;

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// One JSON record per line (the objects of `GET /consent/history`).
    Jsonl,
    /// CSV with a header row, RFC 4180 quoting.
    Csv,
}

/// One page to export, as the command line asks it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRequest {
    /// Workspace name.
    pub workspace: String,
    /// Only this external id's records.
    pub external_id: Option<String>,
    /// Only this email's records.
    pub email: Option<String>,
    /// Only this phone's records.
    pub phone: Option<String>,
    /// Only records at or after this time (µs since the epoch).
    pub since: Option<i64>,
    /// Only records before this time (µs since the epoch).
    pub until: Option<i64>,
    /// Start after this record: (time µs, record id).
    pub after: Option<(i64, String)>,
    /// The format of the lines.
    pub format: ExportFormat,
}

/// One page of an export: its lines, and where the next page starts (`None`: the last).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportPage {
    /// The records, as lines of the format (no header).
    pub text: String,
    /// How many records `text` holds.
    pub records: usize,
    /// Where the next page starts.
    pub next: Option<(i64, String)>,
}

/// Reads one page. Errors are messages for the operator.
pub async fn page(store: &Store, catalog: &Catalog, request: &ExportRequest) -> Result<ExportPage, String> {
    let workspace = catalog
        .workspaces()
        .into_iter()
        .find(|w| w.name == request.workspace)
        .ok_or_else(|| format!("no workspace named {:?}", request.workspace))?
        .id;
    let subject = match (&request.external_id, &request.email, &request.phone) {
        (None, None, None) => None,
        (Some(id), None, None) => {
            Some(HistorySubject::ExternalId(ExternalId::parse(id).map_err(|e| format!("--external-id: {e}"))?))
        }
        (None, Some(e), None) => {
            Some(HistorySubject::Contact(Contact::Email(Email::parse(e).map_err(|e| format!("--email: {e}"))?)))
        }
        (None, None, Some(p)) => {
            Some(HistorySubject::Contact(Contact::Phone(Phone::parse(p).map_err(|e| format!("--phone: {e}"))?)))
        }
        _ => return Err("give at most one of --external-id, --email and --phone".into()),
    };
    let after = match &request.after {
        None => None,
        Some((at, id)) => Some(Position {
            at: Timestamp(*at),
            id: ChangeId::parse(id).ok_or_else(|| format!("bad page position {id:?}"))?,
        }),
    };
    let window = Window { since: request.since.map(Timestamp), until: request.until.map(Timestamp), after };
    let sources = match &subject {
        None => LedgerSources::Workspace,
        Some(subject) => {
            let (profiles, contacts) = store.ledger_subject(workspace, subject).await.map_err(|e| e.to_string())?;
            if profiles.is_empty() && contacts.is_empty() {
                return Ok(ExportPage { text: String::new(), records: 0, next: None });
            }
            LedgerSources::Subjects { profiles: profiles.iter().map(|p| p.id).collect(), contacts }
        }
    };
    let read = LedgerRead { sources, groups: None, window, limit: EXPORT_PAGE + 1 };
    let fetched = store.ledger_records(workspace, read).await.map_err(|e| e.to_string())?;
    let (records, last) = history::page(fetched, EXPORT_PAGE);
    let profiles: Vec<ProfileId> = records
        .iter()
        .filter_map(|r| match r.subject {
            Subject::Profile(id) => Some(id),
            _ => None,
        })
        .collect();
    let external_ids = store.external_ids_of(workspace, &profiles).await.map_err(|e| e.to_string())?;
    let mut text = String::with_capacity(records.len() * 400);
    for record in &records {
        let channel =
            record.group.group_id().and_then(|id| catalog.group(workspace, id)).map_or(Channel::Email, |g| g.channel);
        let external_id = match record.subject {
            Subject::Profile(id) => external_ids.get(&id).map(String::as_str),
            _ => None,
        };
        let view = history::record_view(record, channel, external_id);
        match request.format {
            ExportFormat::Jsonl => {
                text.push_str(&serde_json::to_string(&view).map_err(|e| e.to_string())?);
                text.push('\n');
            }
            ExportFormat::Csv => text.push_str(&view.csv_line()),
        }
    }
    Ok(ExportPage { text, records: records.len(), next: last.map(|p| (p.at.0, p.id.to_string())) })
}
