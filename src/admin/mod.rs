//! Administration of the catalog (workspaces, keys, groups), shared by the command line and the
//! running server.
//!
//! The command line opens the embedded store itself when no server holds it; when a server
//! does (the store is locked), it sends the same [`AdminRequest`] to the server over the
//! Unix socket in the data directory ([`socket`]), and the server executes it against its own
//! catalog. Either way the same [`execute`] runs, so the output is the same.

pub mod export;
pub mod socket;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, CatalogError};
use crate::domain::identifiers::{Email, ExternalId, Phone};
use crate::domain::ids::{GroupId, WorkspaceId};
use crate::domain::ledger::{ChainGroup, LedgerCheck};
use crate::domain::links::{self, LinkSubject, PublicUrl, SignedLink};
use crate::domain::rate_limit::Bucket;
use crate::domain::subscription::Channel;
use crate::domain::tenant::{ApiKey, Branding, LedgerRetention, Permission};

/// One admin command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum AdminRequest {
    /// `workspaces create NAME`
    WorkspacesCreate {
        /// Its name.
        name: String,
    },
    /// `workspaces list`
    WorkspacesList,
    /// `workspaces set-limit WORKSPACE BUCKET LIMIT [--window-seconds N]`
    WorkspacesSetLimit {
        /// Workspace name.
        workspace: String,
        /// The bucket.
        bucket: Bucket,
        /// Requests per window; checked by the catalog, so that both ways in (the store
        /// directly and the server's socket) give the same answer.
        requests: u64,
        /// The window's length; `None` keeps the bucket's current window.
        window_seconds: Option<u64>,
    },
    /// `workspaces rotate-link-key WORKSPACE`
    WorkspacesRotateLinkKey {
        /// Workspace name.
        workspace: String,
    },
    /// `workspaces retire-link-key WORKSPACE KEY_ID`
    WorkspacesRetireLinkKey {
        /// Workspace name.
        workspace: String,
        /// The key's id.
        key_id: String,
    },
    /// `workspaces link-keys WORKSPACE`
    WorkspacesLinkKeys {
        /// Workspace name.
        workspace: String,
    },
    /// `workspaces set-branding WORKSPACE [--display-name …] [--logo-url …] [--accent-colour …]`
    WorkspacesSetBranding {
        /// Workspace name.
        workspace: String,
        /// The branding as a whole: what is not given is cleared.
        branding: Branding,
    },
    /// `links sign`
    LinksSign {
        /// Workspace name.
        workspace: String,
        /// `external_id`, `email` or `phone`.
        kind: String,
        /// The identifier.
        identifier: String,
        /// The one group the link unsubscribes from.
        group: Option<String>,
        /// RFC 3339 time after which the link is no longer valid.
        expires_at: Option<String>,
        /// Where the pages are served.
        public_url: String,
    },
    /// `workspaces set-ledger-retention WORKSPACE --days N | --forever`
    WorkspacesSetLedgerRetention {
        /// Workspace name.
        workspace: String,
        /// Days to keep records; `None`: forever. Checked by the catalog's domain type.
        days: Option<u64>,
    },
    /// `keys create`
    KeysCreate {
        /// Workspace name.
        workspace: String,
        /// Permissions.
        permissions: Vec<Permission>,
        /// IP allowlist.
        allowed_ips: Vec<IpNet>,
        /// Label.
        name: String,
    },
    /// `keys list --workspace NAME`
    KeysList {
        /// Workspace name.
        workspace: String,
    },
    /// `keys revoke KEY_ID`
    KeysRevoke {
        /// The key's id.
        id: String,
    },
    /// `groups create`
    GroupsCreate {
        /// Workspace name.
        workspace: String,
        /// Group name.
        name: String,
        /// Channel.
        channel: Channel,
        /// Offered on everyone's preference page.
        #[serde(default)]
        public: bool,
        /// Shown under its name on the preference page.
        #[serde(default)]
        description: Option<String>,
    },
    /// `groups update GROUP_ID [--public true|false] [--description …]`
    GroupsUpdate {
        /// The group's id.
        id: String,
        /// Offered on everyone's preference page; `None` leaves it.
        public: Option<bool>,
        /// The description; `None` leaves it, empty clears it.
        description: Option<String>,
    },
    /// `groups list --workspace NAME`
    GroupsList {
        /// Workspace name.
        workspace: String,
    },
    /// `groups archive GROUP_ID`
    GroupsArchive {
        /// The group's id.
        id: String,
    },
    /// One page of `ledger export`; answered by the socket with the store (see
    /// [`export::page`]), its [`export::ExportPage`] as JSON in `stdout`.
    LedgerExportPage(export::ExportRequest),
    /// `ledger verify [--workspace NAME]`: the server walks its own store's chains (the
    /// embedded store is locked by the server, so only it can read it).
    LedgerVerify {
        /// Workspace name; every workspace when absent.
        workspace: Option<String>,
    },
    /// `webhooks …`: the change stream's destinations.
    Webhooks(crate::stream::admin::WebhooksRequest),
    /// `backup --to DIR`: the server copies a snapshot of its own store (locked by it) into
    /// `to`, an absolute path (the server's working directory is not the caller's).
    Backup {
        /// The backup directory, new or empty.
        to: std::path::PathBuf,
    },
}

/// What a command prints: `stdout` is for scripts (only the new id or key for `create`, a
/// tab-separated table for `list`), `stderr` for people.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminOutput {
    /// For scripts.
    pub stdout: String,
    /// For people.
    pub stderr: String,
    /// Whether the command found what it checks not to hold (`ledger verify`): the command
    /// line then exits non-zero.
    #[serde(default)]
    pub failed: bool,
}

/// What `backup` prints: on stdout `ok`, the sequence number and the entries copied,
/// tab-separated; a sentence on stderr.
pub fn backup_report(to: &std::path::Path, manifest: &crate::store::embedded::backup::Manifest) -> AdminOutput {
    AdminOutput {
        stdout: format!("ok\t{}\t{}\n", manifest.seqno, manifest.entries()),
        stderr: format!(
            "backed up a snapshot of the store ({} entries, taken {}) into {}\n",
            crate::cli::thousands(manifest.entries()),
            manifest.taken_at,
            to.display()
        ),
        failed: false,
    }
}

/// The workspace id of `name`, or every workspace when `None`.
pub fn workspace_filter(catalog: &Catalog, name: Option<&str>) -> Result<Option<WorkspaceId>, CatalogError> {
    match name {
        None => Ok(None),
        Some(name) => catalog
            .workspaces()
            .into_iter()
            .find(|w| w.name == name)
            .map(|w| Some(w.id))
            .ok_or_else(|| CatalogError::NotFound(format!("no workspace named {name:?}"))),
    }
}

/// What `ledger verify` prints: on stdout `ok` or `broken`, the chains and records walked, and
/// for a broken chain the record, its chain and why, tab-separated; a sentence on stderr.
pub fn ledger_report(check: &LedgerCheck) -> AdminOutput {
    let mut out = AdminOutput::default();
    match &check.first_bad {
        None => {
            out.stdout = format!("ok\t{}\t{}\n", check.chains, check.records);
            out.stderr = format!(
                "every chain holds: {} chains, {} records\n",
                crate::cli::thousands(check.chains),
                crate::cli::thousands(check.records)
            );
        }
        Some((chain, bad)) => {
            out.failed = true;
            let group = match chain.group {
                ChainGroup::Group(id) => id.to_string(),
                ChainGroup::Global => "global".into(),
            };
            out.stdout = format!(
                "broken\t{}\t{}\t{}\t{}\t{}\t{:?}\n",
                bad.id, chain.workspace_id, group, chain.subject, check.records, bad.why
            );
            out.stderr = format!(
                "change record {} does not hold: {} (workspace {}, group {group}, subject {}; {} records checked before it)\n",
                bad.id, bad.why, chain.workspace_id, chain.subject, check.records
            );
        }
    }
    out
}

/// Runs an admin command against the catalog.
pub async fn execute(catalog: &Catalog, request: &AdminRequest) -> Result<AdminOutput, CatalogError> {
    let mut out = AdminOutput::default();
    match request {
        AdminRequest::WorkspacesCreate { name } => {
            let workspace = catalog.create_workspace(name).await?;
            out.stdout = format!("{}\n", workspace.id);
            out.stderr = format!("created workspace {name:?}\n");
        }
        AdminRequest::WorkspacesList => {
            // The limit columns come after the original ones, so that scripts reading columns
            // by position keep working; each shows the limit in force, default or not.
            let mut header = vec!["id", "name", "created_at"];
            let limit_columns: Vec<String> = Bucket::ALL.iter().map(|b| format!("{b}_limit")).collect();
            header.extend(limit_columns.iter().map(String::as_str));
            header.push("ledger_retention");
            out.stdout = table(
                &header,
                catalog.workspaces().into_iter().map(|w| {
                    let mut row = vec![w.id.to_string(), w.name.clone(), w.created_at.to_rfc3339()];
                    row.extend(Bucket::ALL.iter().map(|&b| w.rate_limit(b).to_string()));
                    row.push(w.ledger_retention.to_string());
                    row
                }),
            );
        }
        AdminRequest::WorkspacesSetLedgerRetention { workspace, days } => {
            let retention = match days {
                None => LedgerRetention::Forever,
                Some(days) => LedgerRetention::days(*days).map_err(CatalogError::Invalid)?,
            };
            catalog.set_ledger_retention(workspace, retention).await?;
            out.stderr = match retention {
                LedgerRetention::Forever => format!("workspace {workspace:?} now keeps its change records forever\n"),
                LedgerRetention::Days(days) => format!(
                    "workspace {workspace:?} now keeps its change records {days} days, and the latest of each chain \
                     forever; older ones are deleted within the hour\n"
                ),
            };
        }
        AdminRequest::WorkspacesSetLimit { workspace, bucket, requests, window_seconds } => {
            let limit =
                catalog.set_rate_limit(workspace, *bucket, *requests, *window_seconds).await?.rate_limit(*bucket);
            out.stderr = format!(
                "workspace {workspace:?} may now make {} requests per {} seconds to {} (bucket {:?})\n",
                limit.requests(),
                limit.window_seconds(),
                bucket.endpoints(),
                bucket.as_str()
            );
        }
        AdminRequest::KeysCreate { workspace, permissions, allowed_ips, name } => {
            let (key, secret) = catalog.create_key(workspace, permissions.clone(), allowed_ips.clone(), name).await?;
            out.stdout = format!("{secret}\n");
            out.stderr = format!(
                "created API key {} ({name:?}) in workspace {workspace:?} with {}; the key is shown only this once\n",
                key.id,
                permission_list(&key)
            );
        }
        AdminRequest::KeysList { workspace } => {
            out.stdout = table(
                &["id", "name", "permissions", "allowed_ips", "created_at", "revoked_at"],
                catalog.keys(workspace)?.into_iter().map(|k| {
                    vec![
                        k.id.to_string(),
                        k.name.clone(),
                        permission_list(&k),
                        if k.allowed_ips.is_empty() {
                            "any".into()
                        } else {
                            k.allowed_ips.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
                        },
                        k.created_at.to_rfc3339(),
                        k.revoked_at.map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into()),
                    ]
                }),
            );
        }
        AdminRequest::KeysRevoke { id } => {
            let key = catalog.revoke_key(id).await?;
            out.stderr = format!("revoked API key {} ({:?})\n", key.id, key.name);
        }
        AdminRequest::GroupsCreate { workspace, name, channel, public, description } => {
            if let Some(description) = description {
                crate::domain::tenant::validate_description(description).map_err(CatalogError::Invalid)?;
            }
            let mut group = catalog.create_group(workspace, name, *channel).await?;
            if *public || description.is_some() {
                let id = group.id.to_string();
                group = catalog.update_group(&id, Some(*public), description.clone()).await?;
            }
            out.stdout = format!("{}\n", group.id);
            out.stderr = format!("created {} group {name:?} in workspace {workspace:?}\n", channel.as_str());
        }
        AdminRequest::GroupsUpdate { id, public, description } => {
            let group = catalog.update_group(id, *public, description.clone()).await?;
            out.stderr = format!(
                "group {} ({:?}) is {}\n",
                group.id,
                group.name,
                if group.public { "public" } else { "not public" }
            );
        }
        AdminRequest::WorkspacesRotateLinkKey { workspace } => {
            let key = catalog.rotate_link_key(workspace).await?;
            out.stdout = format!("{}\t{}\n", key.id, hex(&key.secret));
            out.stderr = format!(
                "link key {} now signs the links of workspace {workspace:?}; older keys keep working until \
                 retired. Its secret (above) mints links offline, see docs/links.md\n",
                key.id
            );
        }
        AdminRequest::WorkspacesRetireLinkKey { workspace, key_id } => {
            let key = catalog.retire_link_key(workspace, key_id).await?;
            out.stderr = format!("retired link key {}: the links it signed no longer work\n", key.id);
        }
        AdminRequest::WorkspacesLinkKeys { workspace } => {
            let id = catalog.workspace_id(workspace)?;
            let keys = catalog.workspace(id).map(|w| w.link_keys).unwrap_or_default();
            out.stdout = table(
                &["id", "created_at", "retired_at"],
                keys.into_iter().map(|k| {
                    vec![
                        k.id,
                        k.created_at.to_rfc3339(),
                        k.retired_at.map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into()),
                    ]
                }),
            );
        }
        AdminRequest::WorkspacesSetBranding { workspace, branding } => {
            catalog.set_branding(workspace, branding.clone()).await?;
            out.stderr = format!("branding of workspace {workspace:?} set\n");
        }
        AdminRequest::LinksSign { workspace, kind, identifier, group, expires_at, public_url } => {
            let base = PublicUrl::parse(public_url).map_err(CatalogError::Invalid)?;
            let invalid = |e: crate::domain::identifiers::IdentifierError| CatalogError::Invalid(e.to_string());
            let subject = match kind.as_str() {
                "external_id" => LinkSubject::ExternalId(ExternalId::parse(identifier).map_err(invalid)?),
                "email" => LinkSubject::Email(Email::parse(identifier).map_err(invalid)?),
                "phone" => LinkSubject::Phone(Phone::parse(identifier).map_err(invalid)?),
                other => return Err(CatalogError::Invalid(format!("unknown identifier kind {other:?}"))),
            };
            let group = match group {
                Some(raw) => Some(
                    GroupId::parse(raw)
                        .ok_or_else(|| CatalogError::Invalid(format!("{raw:?} is not a subscription group id")))?,
                ),
                None => None,
            };
            let expires_at = match expires_at {
                Some(raw) => Some(links::parse_rfc3339(raw).ok_or_else(|| {
                    CatalogError::Invalid(format!(
                        "expiry {raw:?} is not an RFC 3339 time such as 2026-12-31T23:59:59Z"
                    ))
                })?),
                None => None,
            };
            let token = catalog.sign_link(catalog.workspace_id(workspace)?, subject, group, expires_at).await?;
            let link = SignedLink::new(&base, &token);
            out.stdout = format!(
                "unsubscribe_url\t{}\npreference_url\t{}\nList-Unsubscribe: {}\nList-Unsubscribe-Post: {}\n",
                link.unsubscribe_url, link.preference_url, link.list_unsubscribe, link.list_unsubscribe_post
            );
        }
        AdminRequest::GroupsList { workspace } => {
            out.stdout = table(
                &["id", "name", "channel", "status", "created_at", "public"],
                catalog.groups(workspace)?.into_iter().map(|g| {
                    vec![
                        g.id.to_string(),
                        g.name,
                        g.channel.as_str().into(),
                        match g.status {
                            crate::domain::tenant::GroupStatus::Active => "active".into(),
                            crate::domain::tenant::GroupStatus::Archived => "archived".into(),
                        },
                        g.created_at.to_rfc3339(),
                        if g.public { "public".into() } else { "-".into() },
                    ]
                }),
            );
        }
        AdminRequest::GroupsArchive { id } => {
            let group = catalog.archive_group(id).await?;
            out.stderr = format!("archived group {} ({:?})\n", group.id, group.name);
        }
        // Both read the whole store for long: the admin socket answers them itself, a page or
        // a progress report at a time (see `socket::serve`).
        AdminRequest::LedgerExportPage(_) | AdminRequest::LedgerVerify { .. } | AdminRequest::Backup { .. } => {
            return Err(CatalogError::Invalid("the store is read whole through the admin socket".into()))
        }
        AdminRequest::Webhooks(request) => out = crate::stream::admin::execute(catalog, request).await?,
    }
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn permission_list(key: &ApiKey) -> String {
    key.permissions.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(",")
}

/// A header line and one tab-separated line per row: easy for `cut` and `awk`, and names never
/// hold tabs (they may not hold control characters).
fn table(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let mut out = header.join("\t");
    out.push('\n');
    for row in rows {
        out.push_str(&row.join("\t"));
        out.push('\n');
    }
    out
}
