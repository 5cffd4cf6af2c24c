//! The catalog service: workspaces, API keys and groups, held in memory for the request path
//! (every request authenticates and resolves groups, so this must not touch the disk) and
//! written through to the store on every change.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::{Mutex, MutexGuard};

use ipnet::IpNet;

use crate::domain::ids::{ApiKeyId, GroupId, WorkspaceId};
use crate::domain::links::{self, LinkClaims, LinkKey, LinkSubject};
use crate::domain::rate_limit::{Bucket, Limit};
use crate::domain::subscription::Channel;
use crate::domain::tenant::{
    validate_description, validate_name, Admission, ApiKey, Branding, Group, GroupStatus, KeyHash, LedgerRetention,
    LimitChange, Permission, Workspace, WorkspaceChange, DEFAULT_MAX_GROUPS_PER_WORKSPACE,
};
use crate::domain::time::Clock;
use crate::domain::validation::GroupDirectory;
use crate::store::{Store, StoreError};

/// The name of the workspace created on an empty store.
pub const DEFAULT_WORKSPACE: &str = "default";

/// Why a catalog operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The change collides with what exists (a duplicate name, a limit reached).
    #[error("{0}")]
    Conflict(String),
    /// An argument is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A store error, with the store's refusal of an admission as the conflict it is.
fn refusal(err: StoreError) -> CatalogError {
    match err {
        StoreError::Refused(reason) => CatalogError::Conflict(reason),
        other => CatalogError::Store(other),
    }
}

#[derive(Default)]
struct Index {
    workspaces: HashMap<WorkspaceId, Workspace>,
    keys: HashMap<ApiKeyId, Arc<ApiKey>>,
    keys_by_hash: HashMap<KeyHash, ApiKeyId>,
    groups: HashMap<GroupId, Group>,
}

impl Index {
    fn workspace_named(&self, name: &str) -> Result<&Workspace, CatalogError> {
        self.workspaces
            .values()
            .find(|w| w.name == name)
            .ok_or_else(|| CatalogError::NotFound(format!("no workspace named {name:?}")))
    }

    fn add_key(&mut self, key: ApiKey) {
        self.keys_by_hash.insert(key.hash, key.id);
        self.keys.insert(key.id, Arc::new(key));
    }
}

/// Workspaces, keys and groups, cached in memory and written through to the store.
///
/// Changes are serialized by `changes` (held across the store's write, so an async lock) and
/// written to the store before the in-memory index is touched, so the index lock is held only
/// for the instant of the update: a catalog change never makes requests wait for an fsync.
pub struct Catalog {
    store: Store,
    /// Where creation and revocation times come from.
    clock: Clock,
    index: RwLock<Index>,
    changes: Mutex<()>,
    /// Local changes completed; see [`Catalog::reload`].
    generation: AtomicU64,
    max_groups: usize,
}

/// Held while a local change is made; counts the change as completed when dropped.
struct ChangeGuard<'a> {
    _lock: MutexGuard<'a, ()>,
    generation: &'a AtomicU64,
}

impl Drop for ChangeGuard<'_> {
    fn drop(&mut self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

impl Index {
    fn from_data(data: crate::store::CatalogData) -> Index {
        let mut index = Index::default();
        for workspace in data.workspaces {
            index.workspaces.insert(workspace.id, workspace);
        }
        for key in data.api_keys {
            index.add_key(key);
        }
        for group in data.groups {
            index.groups.insert(group.id, group);
        }
        index
    }
}

impl Catalog {
    /// Loads the whole catalog from the store; times it records come from `clock`.
    pub async fn load(store: Store, clock: Clock) -> Result<Catalog, CatalogError> {
        let index = Index::from_data(store.load_catalog().await?);
        Ok(Catalog {
            store,
            clock,
            index: RwLock::new(index),
            changes: Mutex::new(()),
            generation: AtomicU64::new(0),
            max_groups: DEFAULT_MAX_GROUPS_PER_WORKSPACE,
        })
    }

    /// Reads the catalog from the store again, taking in changes made by other processes
    /// sharing it (admin commands and other nodes on PostgreSQL).
    ///
    /// A local change that completes while the store is read may be missing from what was
    /// read, so the result is then dropped (the next reload takes it in) rather than allowed
    /// to undo that change in memory.
    pub async fn reload(&self) -> Result<(), CatalogError> {
        let before = self.generation.load(Ordering::Acquire);
        let fresh = Index::from_data(self.store.load_catalog().await?);
        let _change = self.change().await;
        if self.generation.load(Ordering::Acquire) == before {
            *self.write() = fresh;
        }
        Ok(())
    }

    /// Sets the most active groups a workspace may have (Braze's 450 by default).
    pub fn with_max_groups(mut self, max_groups: usize) -> Self {
        self.max_groups = max_groups;
        self
    }

    async fn change(&self) -> ChangeGuard<'_> {
        ChangeGuard { _lock: self.changes.lock().await, generation: &self.generation }
    }

    /// Refuses `admission` if it collides with the catalog held in memory (the store checks
    /// it again against what is stored).
    fn admit(&self, admission: &Admission) -> Result<(), CatalogError> {
        let index = self.read();
        admission.check(index.workspaces.values(), index.groups.values()).map_err(CatalogError::Conflict)
    }

    /// The store behind the catalog.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The clock the catalog reads.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// On a store without workspaces, creates the `default` workspace and a key with every
    /// permission, and returns that key's secret (to be shown once). Otherwise returns `None`.
    ///
    /// Nodes started together on an empty database all try: one creates the workspace and
    /// its key, the others find it created and take in the catalog as it now is.
    pub async fn bootstrap(&self) -> Result<Option<(ApiKey, String)>, CatalogError> {
        if !self.read().workspaces.is_empty() {
            return Ok(None);
        }
        match self.create_workspace(DEFAULT_WORKSPACE).await {
            Ok(_) => {}
            Err(CatalogError::Conflict(_)) => {
                let fresh = Index::from_data(self.store.load_catalog().await?);
                let _change = self.change().await;
                *self.write() = fresh;
                return Ok(None);
            }
            Err(other) => return Err(other),
        }
        let created = self.create_key(DEFAULT_WORKSPACE, Permission::ALL.to_vec(), Vec::new(), "bootstrap").await?;
        Ok(Some(created))
    }

    /// The active key with this secret, if any. Revoked and unknown keys both answer `None`.
    pub fn authenticate(&self, secret: &str) -> Option<Arc<ApiKey>> {
        let hash = KeyHash::of(secret);
        let index = self.read();
        let key = index.keys.get(index.keys_by_hash.get(&hash)?)?;
        key.revoked_at.is_none().then(|| Arc::clone(key))
    }

    /// Runs `f` with the workspace's groups, as the request validators see them.
    pub fn with_groups<R>(&self, workspace: WorkspaceId, f: impl FnOnce(&dyn GroupDirectory) -> R) -> R {
        let index = self.read();
        f(&WorkspaceGroups { index: &index, workspace })
    }

    /// The group with this id, if the caller's workspace has it (archived or not).
    pub fn group(&self, workspace: WorkspaceId, id: GroupId) -> Option<Group> {
        self.read().groups.get(&id).filter(|g| g.workspace_id == workspace).cloned()
    }

    /// Creates a workspace.
    pub async fn create_workspace(&self, name: &str) -> Result<Workspace, CatalogError> {
        validate_name("workspace", name).map_err(CatalogError::Invalid)?;
        let _change = self.change().await;
        let admission = Admission::Workspace { name: name.to_string() };
        self.admit(&admission)?;
        let workspace = Workspace {
            id: WorkspaceId::generate(),
            name: name.to_string(),
            created_at: self.clock.now(),
            rate_limits: BTreeMap::new(),
            link_keys: Vec::new(),
            branding: Branding::default(),
            ledger_retention: LedgerRetention::Forever,
        };
        self.store.insert_workspace(&workspace, &admission).await.map_err(refusal)?;
        self.write().workspaces.insert(workspace.id, workspace.clone());
        Ok(workspace)
    }

    /// All workspaces, by name.
    pub fn workspaces(&self) -> Vec<Workspace> {
        let mut list: Vec<_> = self.read().workspaces.values().cloned().collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// Sets the named workspace's limit for `bucket` to `requests` per `window_seconds`, or per
    /// the window that applies now when `window_seconds` is `None` (so raising a limit does not
    /// silently change its window). Takes effect on the next request; counts already made in
    /// the current window still count.
    pub async fn set_rate_limit(
        &self,
        workspace: &str,
        bucket: Bucket,
        requests: u64,
        window_seconds: Option<u64>,
    ) -> Result<Workspace, CatalogError> {
        let _change = self.change().await;
        let mut changed = self.read().workspace_named(workspace)?.clone();
        let change = WorkspaceChange::Limit(LimitChange { bucket, requests, window_seconds });
        self.change_workspace(&mut changed, &change).await
    }

    /// Sets how long a workspace keeps its change records; the ledger retention job applies it
    /// on its next run.
    pub async fn set_ledger_retention(
        &self,
        workspace: &str,
        retention: LedgerRetention,
    ) -> Result<Workspace, CatalogError> {
        let _change = self.change().await;
        let mut changed = self.read().workspace_named(workspace)?.clone();
        let change = WorkspaceChange::LedgerRetention(retention);
        self.change_workspace(&mut changed, &change).await
    }

    /// The limit of `bucket` for a workspace, on every request: one read-locked map lookup.
    /// An unknown workspace (which no authenticated key can name) gets the default.
    pub fn rate_limit(&self, workspace: WorkspaceId, bucket: Bucket) -> Limit {
        self.read().workspaces.get(&workspace).map_or(bucket.default_limit(), |w| w.rate_limit(bucket))
    }

    /// Creates an API key in the named workspace and returns it with its secret.
    pub async fn create_key(
        &self,
        workspace: &str,
        permissions: Vec<Permission>,
        allowed_ips: Vec<IpNet>,
        name: &str,
    ) -> Result<(ApiKey, String), CatalogError> {
        validate_name("key", name).map_err(CatalogError::Invalid)?;
        if permissions.is_empty() {
            return Err(CatalogError::Invalid("a key needs at least one --permission".into()));
        }
        let _change = self.change().await;
        let workspace_id = self.read().workspace_named(workspace)?.id;
        let (key, secret) =
            ApiKey::generate(workspace_id, name.to_string(), permissions, allowed_ips, self.clock.now());
        self.store.put_api_key(&key).await?;
        self.write().add_key(key.clone());
        Ok((key, secret))
    }

    /// The named workspace's keys, oldest first.
    pub fn keys(&self, workspace: &str) -> Result<Vec<ApiKey>, CatalogError> {
        let index = self.read();
        let workspace_id = index.workspace_named(workspace)?.id;
        let mut list: Vec<ApiKey> =
            index.keys.values().filter(|k| k.workspace_id == workspace_id).map(|k| (**k).clone()).collect();
        list.sort_by_key(|k| (k.created_at, k.id));
        Ok(list)
    }

    /// Revokes a key; it authenticates nothing from now on. Revoking twice is not an error.
    pub async fn revoke_key(&self, id: &str) -> Result<ApiKey, CatalogError> {
        let _change = self.change().await;
        let mut revoked = ApiKeyId::parse(id)
            .and_then(|id| self.read().keys.get(&id).map(|k| (**k).clone()))
            .ok_or_else(|| CatalogError::NotFound(format!("no API key with id {id:?}")))?;
        if revoked.revoked_at.is_none() {
            revoked.revoked_at = Some(self.clock.now());
            self.store.put_api_key(&revoked).await?;
            self.write().add_key(revoked.clone());
        }
        Ok(revoked)
    }

    /// Creates a subscription group in the named workspace.
    pub async fn create_group(&self, workspace: &str, name: &str, channel: Channel) -> Result<Group, CatalogError> {
        validate_name("group", name).map_err(CatalogError::Invalid)?;
        let _change = self.change().await;
        let workspace_id = self.read().workspace_named(workspace)?.id;
        let admission = Admission::Group {
            workspace: workspace_id,
            workspace_name: workspace.to_string(),
            name: name.to_string(),
            max_active: self.max_groups,
        };
        self.admit(&admission)?;
        let group = Group {
            id: GroupId::generate(),
            workspace_id,
            name: name.to_string(),
            channel,
            status: GroupStatus::Active,
            created_at: self.clock.now(),
            public: false,
            description: None,
        };
        self.store.insert_group(&group, &admission).await.map_err(refusal)?;
        self.write().groups.insert(group.id, group.clone());
        Ok(group)
    }

    /// The named workspace's groups, by name.
    pub fn groups(&self, workspace: &str) -> Result<Vec<Group>, CatalogError> {
        let index = self.read();
        let workspace_id = index.workspace_named(workspace)?.id;
        let mut list: Vec<Group> = index.groups.values().filter(|g| g.workspace_id == workspace_id).cloned().collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(list)
    }

    /// Archives a group: it keeps its states and history but refuses changes.
    pub async fn archive_group(&self, id: &str) -> Result<Group, CatalogError> {
        let _change = self.change().await;
        let mut archived = GroupId::parse(id)
            .and_then(|id| self.read().groups.get(&id).cloned())
            .ok_or_else(|| CatalogError::NotFound(format!("no subscription group with id {id:?}")))?;
        if archived.status != GroupStatus::Archived {
            archived.status = GroupStatus::Archived;
            self.store.put_group(&archived).await?;
            self.write().groups.insert(archived.id, archived.clone());
        }
        Ok(archived)
    }
}

/// The person's side: link keys, branding and what the preference page offers.
impl Catalog {
    /// The id of the named workspace.
    pub fn workspace_id(&self, name: &str) -> Result<WorkspaceId, CatalogError> {
        Ok(self.read().workspace_named(name)?.id)
    }

    /// The workspace with this id.
    pub fn workspace(&self, id: WorkspaceId) -> Option<Workspace> {
        self.read().workspaces.get(&id).cloned()
    }

    /// The secret of the workspace's active link key `key_id`: what a token names must be
    /// found in that workspace, so a token of one workspace never verifies in another.
    pub fn link_key(&self, workspace: WorkspaceId, key_id: &str) -> Option<[u8; 32]> {
        self.read().workspaces.get(&workspace)?.verifying_key(key_id)
    }

    /// The key that signs the workspace's new links, created on first use.
    pub async fn signing_key(&self, workspace: WorkspaceId) -> Result<LinkKey, CatalogError> {
        if let Some(key) = self.read().workspaces.get(&workspace).and_then(|w| w.signing_key().cloned()) {
            return Ok(key);
        }
        let _change = self.change().await;
        let mut changed = self
            .read()
            .workspaces
            .get(&workspace)
            .cloned()
            .ok_or_else(|| CatalogError::NotFound(format!("no workspace with id {workspace}")))?;
        // Another request may have created it while this one waited for the lock.
        if let Some(key) = changed.signing_key() {
            return Ok(key.clone());
        }
        let key = LinkKey::generate(self.clock.now());
        let changed = self.change_workspace(&mut changed, &WorkspaceChange::AddLinkKey(key)).await?;
        changed.signing_key().cloned().ok_or_else(|| CatalogError::Conflict("the link key was not kept".into()))
    }

    /// Signs a link for `subject` in `workspace` with its signing key, created on first use.
    /// A group must be one of the workspace's active groups, on the subject's channel (an
    /// email on an email group, a phone on an SMS or WhatsApp group).
    pub async fn sign_link(
        &self,
        workspace: WorkspaceId,
        subject: LinkSubject,
        group: Option<GroupId>,
        expires_at: Option<i64>,
    ) -> Result<String, CatalogError> {
        if let Some(id) = group {
            let channel = match self.read().groups.get(&id).filter(|g| g.workspace_id == workspace) {
                Some(g) if g.status == GroupStatus::Active => g.channel,
                Some(_) => return Err(CatalogError::Invalid(format!("subscription group {id} is archived"))),
                None => return Err(CatalogError::NotFound(format!("no subscription group with id {id}"))),
            };
            if !subject.addresses(channel) {
                return Err(CatalogError::Invalid(format!(
                    "subscription group {id} is on the {} channel, which this identifier does not address",
                    channel.as_str()
                )));
            }
        }
        let key = self.signing_key(workspace).await?;
        let claims = LinkClaims { workspace_id: workspace, key_id: key.id, subject, group_id: group, expires_at };
        Ok(links::sign(&claims, &key.secret))
    }

    /// Adds a new link key to the named workspace; it signs new links from now on, and the
    /// older keys keep verifying until they are retired.
    pub async fn rotate_link_key(&self, workspace: &str) -> Result<LinkKey, CatalogError> {
        let _change = self.change().await;
        let mut changed = self.read().workspace_named(workspace)?.clone();
        let key = LinkKey::generate(self.clock.now());
        self.change_workspace(&mut changed, &WorkspaceChange::AddLinkKey(key.clone())).await?;
        Ok(key)
    }

    /// Retires a link key of the named workspace: every link it signed stops working at once.
    pub async fn retire_link_key(&self, workspace: &str, key_id: &str) -> Result<LinkKey, CatalogError> {
        let _change = self.change().await;
        let mut changed = self.read().workspace_named(workspace)?.clone();
        let change = WorkspaceChange::RetireLinkKey { id: key_id.to_string(), at: self.clock.now() };
        let changed = self.change_workspace(&mut changed, &change).await?;
        Ok(changed.link_keys.into_iter().find(|k| k.id == key_id).expect("the retired key is kept"))
    }

    /// Replaces the named workspace's branding, once checked.
    pub async fn set_branding(&self, workspace: &str, branding: Branding) -> Result<Workspace, CatalogError> {
        branding.validate().map_err(CatalogError::Invalid)?;
        let _change = self.change().await;
        let mut changed = self.read().workspace_named(workspace)?.clone();
        self.change_workspace(&mut changed, &WorkspaceChange::Branding(branding)).await
    }

    /// Sets whether a group is public and its description (`None`: left as they are;
    /// `Some("")` clears the description).
    pub async fn update_group(
        &self,
        id: &str,
        public: Option<bool>,
        description: Option<String>,
    ) -> Result<Group, CatalogError> {
        if let Some(description) = &description {
            validate_description(description).map_err(CatalogError::Invalid)?;
        }
        let _change = self.change().await;
        let mut group = GroupId::parse(id)
            .and_then(|id| self.read().groups.get(&id).cloned())
            .ok_or_else(|| CatalogError::NotFound(format!("no subscription group with id {id:?}")))?;
        if let Some(public) = public {
            group.public = public;
        }
        if let Some(description) = description {
            group.description = (!description.is_empty()).then_some(description);
        }
        self.store.put_group(&group).await?;
        self.write().groups.insert(group.id, group.clone());
        Ok(group)
    }

    /// The workspace's groups, for the preference page.
    pub fn workspace_groups(&self, workspace: WorkspaceId) -> Vec<Group> {
        let mut list: Vec<Group> =
            self.read().groups.values().filter(|g| g.workspace_id == workspace).cloned().collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// Applies `change` to `changed` (the catalog's copy, under the change lock) and to the
    /// stored workspace, and takes in the stored result.
    async fn change_workspace(
        &self,
        changed: &mut Workspace,
        change: &WorkspaceChange,
    ) -> Result<Workspace, CatalogError> {
        change.apply(changed).map_err(CatalogError::Invalid)?;
        let changed = self.store.change_workspace(changed, change).await.map_err(refusal)?;
        self.write().workspaces.insert(changed.id, changed.clone());
        Ok(changed)
    }
}

/// One workspace's view of the groups: another workspace's group is simply not there.
struct WorkspaceGroups<'a> {
    index: &'a Index,
    workspace: WorkspaceId,
}

impl GroupDirectory for WorkspaceGroups<'_> {
    fn find(&self, id: GroupId) -> Option<(Channel, GroupStatus)> {
        self.index.groups.get(&id).filter(|g| g.workspace_id == self.workspace).map(|g| (g.channel, g.status))
    }
}
