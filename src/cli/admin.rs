//! `consentry workspaces|keys|groups …`: the admin commands. They run against the store
//! directly when no server holds it, or through the running server's admin socket.

use clap::Subcommand;
use ipnet::IpNet;

use crate::admin::{self, socket, AdminOutput, AdminRequest};
use crate::catalog::Catalog;
use crate::domain::catalog::Permission;
use crate::domain::rate_limit::Bucket;
use crate::domain::subscription::Channel;
use crate::domain::time::Clock;
use crate::store::{DatabaseLocation, Policy, Store, StoreError, StoreOptions};

/// `consentry workspaces …`
#[derive(Debug, Subcommand)]
pub enum WorkspacesCommand {
    /// Create a workspace; prints its id.
    Create {
        /// Its name, unique.
        name: String,
    },
    /// List workspaces, with the rate limit in force for each bucket (REQUESTS/WINDOWs).
    List,
    /// Set a workspace's rate limit for one bucket; takes effect on the next request.
    SetLimit {
        /// Workspace name.
        workspace: String,
        /// The bucket: set (both set endpoints), get (both GET endpoints), track (users/track)
        /// or delete (users/delete).
        #[arg(value_parser = parse_bucket)]
        bucket: Bucket,
        /// Requests allowed per window (1 to 1,000,000,000).
        limit: u64,
        /// The window's length in seconds (1 to 86,400); default: keep the bucket's current window.
        #[arg(long)]
        window_seconds: Option<u64>,
    },
    /// Set how long a workspace keeps its change records (default: forever). Records older
    /// than N days are deleted, but for the latest of each chain, which still verifies from
    /// the anchor the deleted records leave.
    SetLedgerRetention {
        /// Workspace name.
        workspace: String,
        /// Keep records this many days (1 to 36,500).
        #[arg(long, required_unless_present = "forever", conflicts_with = "forever")]
        days: Option<u64>,
        /// Keep every record forever.
        #[arg(long)]
        forever: bool,
    },
}

/// `consentry keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a REST API key; prints the key, which is shown only this once.
    Create {
        /// Workspace name.
        #[arg(long)]
        workspace: String,
        /// A permission (repeat for several): subscription.status.set, subscription.status.get,
        /// subscription.groups.get, users.track, users.delete.
        #[arg(long = "permission", required = true, value_parser = parse_permission)]
        permissions: Vec<Permission>,
        /// An address or network the key may be used from (repeat for several); default: anywhere.
        #[arg(long = "allow-ip", value_parser = parse_network)]
        allowed_ips: Vec<IpNet>,
        /// A label for people.
        #[arg(long, default_value = "api key")]
        name: String,
    },
    /// List a workspace's keys (never their secrets).
    List {
        /// Workspace name.
        #[arg(long)]
        workspace: String,
    },
    /// Revoke a key by its id.
    Revoke {
        /// The key's id, as `keys list` shows it.
        key_id: String,
    },
}

/// `consentry groups …`
#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// Create a subscription group; prints its id.
    Create {
        /// Workspace name.
        #[arg(long)]
        workspace: String,
        /// Group name, unique in the workspace.
        #[arg(long)]
        name: String,
        /// email, sms or whatsapp.
        #[arg(long, value_parser = parse_channel)]
        channel: Channel,
    },
    /// List a workspace's groups.
    List {
        /// Workspace name.
        #[arg(long)]
        workspace: String,
    },
    /// Archive a group: it keeps its history but refuses changes.
    Archive {
        /// The group's id.
        group_id: String,
    },
}

impl From<WorkspacesCommand> for AdminRequest {
    fn from(command: WorkspacesCommand) -> Self {
        match command {
            WorkspacesCommand::Create { name } => AdminRequest::WorkspacesCreate { name },
            WorkspacesCommand::List => AdminRequest::WorkspacesList,
            WorkspacesCommand::SetLimit { workspace, bucket, limit, window_seconds } => {
                AdminRequest::WorkspacesSetLimit { workspace, bucket, requests: limit, window_seconds }
            }
            WorkspacesCommand::SetLedgerRetention { workspace, days, forever: _ } => {
                AdminRequest::WorkspacesSetLedgerRetention { workspace, days }
            }
        }
    }
}

impl From<KeysCommand> for AdminRequest {
    fn from(command: KeysCommand) -> Self {
        match command {
            KeysCommand::Create { workspace, permissions, allowed_ips, name } => {
                AdminRequest::KeysCreate { workspace, permissions, allowed_ips, name }
            }
            KeysCommand::List { workspace } => AdminRequest::KeysList { workspace },
            KeysCommand::Revoke { key_id } => AdminRequest::KeysRevoke { id: key_id },
        }
    }
}

impl From<GroupsCommand> for AdminRequest {
    fn from(command: GroupsCommand) -> Self {
        match command {
            GroupsCommand::Create { workspace, name, channel } => {
                AdminRequest::GroupsCreate { workspace, name, channel }
            }
            GroupsCommand::List { workspace } => AdminRequest::GroupsList { workspace },
            GroupsCommand::Archive { group_id } => AdminRequest::GroupsArchive { id: group_id },
        }
    }
}

/// Runs one admin command and prints its output, on one runtime for the whole command.
///
/// Through a running server, the server's own group limit applies.
pub fn run(database: &DatabaseLocation, max_groups: usize, request: AdminRequest) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let output = runtime.block_on(async {
        match Store::open(database, &StoreOptions::default(), &Policy::default()).await {
            Ok(store) => {
                let result = execute_on(&store, max_groups, &request).await;
                store.close().await;
                result
            }
            Err(StoreError::Locked(dir)) => {
                // The socket is a few hundred bytes each way: a blocking exchange is fine here.
                socket::call(&dir, &request).map_err(anyhow::Error::msg)?.map_err(anyhow::Error::msg)
            }
            Err(other) => Err(other.into()),
        }
    })?;
    print(&output);
    Ok(())
}

/// Runs `request` against the catalog of `store`.
async fn execute_on(store: &Store, max_groups: usize, request: &AdminRequest) -> anyhow::Result<AdminOutput> {
    let catalog = Catalog::load(store.clone(), Clock::system()).await?.with_max_groups(max_groups);
    Ok(admin::execute(&catalog, request).await?)
}

fn print(output: &AdminOutput) {
    eprint!("{}", output.stderr);
    print!("{}", output.stdout);
}

fn parse_permission(raw: &str) -> Result<Permission, String> {
    Permission::parse(raw).ok_or_else(|| {
        let names: Vec<&str> = Permission::ALL.iter().map(|p| p.as_str()).collect();
        format!("unknown permission {raw:?}; use one of {}", names.join(", "))
    })
}

fn parse_bucket(raw: &str) -> Result<Bucket, String> {
    Bucket::parse(raw).ok_or_else(|| {
        let names: Vec<&str> = Bucket::ALL.iter().map(|b| b.as_str()).collect();
        format!("unknown rate-limit bucket {raw:?}; use one of {}", names.join(", "))
    })
}

fn parse_network(raw: &str) -> Result<IpNet, String> {
    raw.parse::<IpNet>()
        .or_else(|_| raw.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{raw:?} is not an IP address or CIDR network (e.g. 10.0.0.0/8)"))
}

fn parse_channel(raw: &str) -> Result<Channel, String> {
    Channel::parse(raw).ok_or_else(|| format!("unknown channel {raw:?}; use email, sms or whatsapp"))
}
