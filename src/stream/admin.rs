//! `consentry webhooks …`: the admin commands of the change stream's destinations, run like
//! the other admin commands (against the store, or through the running server's socket).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::destination::{check_host, check_url, Destination, EventKind, Format, KeptSecret, MAX_BATCH};
use super::sign::Secret;
use super::StreamStore;
use crate::admin::AdminOutput;
use crate::catalog::{Catalog, CatalogError};

/// A webhooks command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "webhooks", rename_all = "snake_case")]
pub enum WebhooksRequest {
    /// `webhooks create`
    Create {
        /// Workspace name.
        workspace: String,
        /// Where to POST.
        url: String,
        /// `standard` or `currents`.
        format: Format,
        /// A `whsec_` secret to use instead of a generated one (`standard`).
        secret: Option<String>,
        /// `Authorization: Bearer` token (`currents`).
        bearer_token: Option<String>,
        /// Event kinds; both when empty.
        events: Vec<EventKind>,
        /// Events per message at most.
        max_batch: Option<usize>,
        /// Accept a URL whose host resolves to a private address: `--allow-private`, or set by
        /// the admin socket of a server running with `--allow-private-webhooks`.
        #[serde(default)]
        allow_private: bool,
    },
    /// `webhooks list`
    List,
    /// `webhooks delete ID`
    Delete {
        /// The destination's id.
        id: String,
    },
    /// `webhooks rotate-secret ID`
    RotateSecret {
        /// The destination's id.
        id: String,
    },
    /// `webhooks replay ID --since T [--until T]`
    Replay {
        /// The destination's id.
        id: String,
        /// RFC 3339 start, included.
        since: String,
        /// RFC 3339 end, excluded; now when absent.
        until: Option<String>,
    },
}

fn parse_id(raw: &str) -> Result<Uuid, CatalogError> {
    Uuid::try_parse(raw).map_err(|_| CatalogError::Invalid(format!("not a destination id: {raw:?}")))
}

async fn find(stream: &StreamStore, id: Uuid) -> Result<Destination, CatalogError> {
    stream
        .list()
        .await?
        .into_iter()
        .map(|(d, _)| d)
        .find(|d| d.id == id)
        .ok_or_else(|| CatalogError::NotFound(format!("no webhook destination {id}")))
}

/// Runs one webhooks command against `catalog`'s store.
pub async fn execute(catalog: &Catalog, request: &WebhooksRequest) -> Result<AdminOutput, CatalogError> {
    let stream = StreamStore::new(catalog.store().clone());
    let now = catalog.clock().now();
    let mut out = AdminOutput::default();
    match request {
        WebhooksRequest::Create { workspace, url, format, secret, bearer_token, events, max_batch, allow_private } => {
            let workspace_id = catalog
                .workspaces()
                .into_iter()
                .find(|w| &w.name == workspace)
                .ok_or_else(|| CatalogError::NotFound(format!("no workspace named {workspace:?}")))?
                .id;
            check_url(url).map_err(CatalogError::Invalid)?;
            check_host(url, *allow_private).await.map_err(CatalogError::Invalid)?;
            let max_batch = max_batch.unwrap_or(if *format == Format::Currents { MAX_BATCH } else { 1 });
            if !(1..=MAX_BATCH).contains(&max_batch) {
                return Err(CatalogError::Invalid(format!("max-batch: 1 to {MAX_BATCH}, not {max_batch}")));
            }
            let secret = match (format, secret) {
                (Format::Standard, Some(text)) => {
                    Some(Secret::parse(text).map_err(|e| CatalogError::Invalid(format!("secret: {e}")))?)
                }
                (Format::Standard, None) => Some(Secret::generate()),
                (Format::Currents, Some(_)) => {
                    return Err(CatalogError::Invalid(
                        "secret: a currents destination is not signed; use --bearer-token".into(),
                    ))
                }
                (Format::Currents, None) => None,
                (Format::Nats, _) => {
                    return Err(CatalogError::Invalid(
                        "format: nats destinations are made by serve --stream nats://host:port".into(),
                    ))
                }
            };
            let events = if events.is_empty() { EventKind::ALL.to_vec() } else { events.clone() };
            let destination = Destination {
                id: Uuid::now_v7(),
                workspace_id,
                url: url.clone(),
                format: *format,
                secrets: secret.iter().map(|s| KeptSecret { secret: s.to_text(), until: None }).collect(),
                bearer_token: bearer_token.clone(),
                events,
                max_batch,
                created_at: now,
            };
            stream.create(&destination).await?;
            out.stdout = format!("{}\n", destination.id);
            if let Some(secret) = secret {
                out.stdout.push_str(&format!("{}\n", secret.to_text()));
            }
            out.stderr = format!("created {} webhook destination in workspace {workspace:?}\n", format.as_str());
        }
        WebhooksRequest::List => {
            let mut rows = String::from("id\tworkspace_id\tformat\turl\tmax_batch\tstatus\tlast_error\n");
            for (d, state) in stream.list().await? {
                let status = match &state.disabled {
                    Some(why) => format!("disabled: {why}"),
                    None => "enabled".into(),
                };
                rows.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                    d.id,
                    d.workspace_id,
                    d.format.as_str(),
                    d.url,
                    d.max_batch,
                    status,
                    state.last_error.as_deref().unwrap_or("-")
                ));
            }
            out.stdout = rows;
        }
        WebhooksRequest::Delete { id } => {
            let id = parse_id(id)?;
            if !stream.delete(id).await? {
                return Err(CatalogError::NotFound(format!("no webhook destination {id}")));
            }
            out.stderr = format!("deleted webhook destination {id}\n");
        }
        WebhooksRequest::RotateSecret { id } => {
            let mut destination = find(&stream, parse_id(id)?).await?;
            if destination.format != Format::Standard {
                return Err(CatalogError::Invalid("only a standard destination has a secret".into()));
            }
            let fresh = destination.rotate(now);
            stream.update(&destination).await?;
            out.stdout = format!("{}\n", fresh.to_text());
            out.stderr = "the previous secret keeps signing for 24 hours, beside the new one\n".into();
        }
        WebhooksRequest::Replay { id, since, until } => {
            let destination = find(&stream, parse_id(id)?).await?;
            let time = |field: &str, raw: &str| {
                crate::domain::history::parse_rfc3339(raw)
                    .map_err(|why| CatalogError::Invalid(format!("{field}: not an RFC 3339 time ({why}): {raw:?}")))
            };
            let since = time("since", since)?;
            let until = match until {
                Some(raw) => time("until", raw)?,
                None => now.plus(std::time::Duration::from_micros(1)),
            };
            if until <= since {
                return Err(CatalogError::Invalid("until: must be after since".into()));
            }
            let n = stream.replay(&destination, since, until).await?;
            out.stdout = format!("{n}\n");
            out.stderr = format!("{n} change records queued again for {}\n", destination.id);
        }
    }
    Ok(out)
}

/// `consentry webhooks …`
#[derive(Debug, clap::Subcommand)]
pub enum WebhooksCommand {
    /// Create a destination; prints its id, then (standard) its `whsec_` secret on the last line.
    Create {
        /// Workspace name.
        #[arg(long)]
        workspace: String,
        /// https:// or http:// URL to POST to; no user name or password in it.
        #[arg(long)]
        url: String,
        /// standard (Standard Webhooks, signed) or currents (Braze Currents' HTTP connector).
        #[arg(long, value_parser = Format::parse)]
        format: Format,
        /// The whsec_ secret to sign with (standard); default: a new random one.
        #[arg(long)]
        secret: Option<String>,
        /// Sent as `Authorization: Bearer` (currents).
        #[arg(long)]
        bearer_token: Option<String>,
        /// Event kinds, comma-separated: state_change, global_state_change, user_delete;
        /// default: all.
        #[arg(long, value_delimiter = ',', value_parser = EventKind::parse)]
        events: Vec<EventKind>,
        /// Events per message, 1 to 100 (default 1 for standard, 100 for currents).
        #[arg(long)]
        max_batch: Option<usize>,
        /// Accept a URL whose host resolves to a loopback, private, link-local or metadata
        /// address (for a server on the same machine or network). The server sends there only
        /// if it runs with --allow-private-webhooks; through the admin socket of such a server
        /// this flag is implied.
        #[arg(long)]
        allow_private: bool,
    },
    /// List destinations, with their state and last error.
    List,
    /// Delete a destination and what it has not delivered yet.
    Delete {
        /// The destination's id.
        id: String,
    },
    /// Make a new signing secret; the previous one also signs for 24 hours. Prints the new one.
    RotateSecret {
        /// The destination's id.
        id: String,
    },
    /// Send the records of a time range again (same event ids); prints how many.
    Replay {
        /// The destination's id.
        id: String,
        /// RFC 3339 start, included.
        #[arg(long)]
        since: String,
        /// RFC 3339 end, excluded; default: now.
        #[arg(long)]
        until: Option<String>,
    },
}

impl From<WebhooksCommand> for crate::admin::AdminRequest {
    fn from(command: WebhooksCommand) -> Self {
        crate::admin::AdminRequest::Webhooks(match command {
            WebhooksCommand::Create {
                workspace,
                url,
                format,
                secret,
                bearer_token,
                events,
                max_batch,
                allow_private,
            } => WebhooksRequest::Create {
                workspace,
                url,
                format,
                secret,
                bearer_token,
                events,
                max_batch,
                allow_private,
            },
            WebhooksCommand::List => WebhooksRequest::List,
            WebhooksCommand::Delete { id } => WebhooksRequest::Delete { id },
            WebhooksCommand::RotateSecret { id } => WebhooksRequest::RotateSecret { id },
            WebhooksCommand::Replay { id, since, until } => WebhooksRequest::Replay { id, since, until },
        })
    }
}
