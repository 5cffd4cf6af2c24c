//! The person's side: the pages behind signed links and RFC 8058 one-click unsubscribe.
//!
//! No API key: the signed token in the path is the only credential (see
//! [`crate::domain::links`]). A GET or HEAD never changes anything, so a link scanner that
//! follows every link changes nothing; a change is a POST, and every change goes through the
//! same planner and store path as the API ([`crate::store::Store::set_status`]), so it gets its
//! change record like any other. Every response carries the headers of [`secure_headers`];
//! every request counts against the per-address limit of [`limit`]. The token never reaches a
//! log: the access log writes the route template (`/unsubscribe/{token}`), nothing else here
//! logs a path.

pub mod form;
pub mod html;
pub mod limit;
pub mod links_api;
mod preferences;
mod unsubscribe;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::html as markup;

use crate::domain::change::{Actor, Source, Trace};
use crate::domain::ids::{GroupId, RequestId};
use crate::domain::links::{self, LinkClaims, LinkSubject, PublicUrl};
use crate::domain::plan::Origin;
use crate::domain::read::{self, ReadState};
use crate::domain::set_status::{SetEntry, SetStatusCommand};
use crate::domain::subscription::SubscriptionState;
use crate::domain::tenant::{Group, GroupStatus, Workspace};
use crate::http::AppState;
use crate::store::StoreError;
use html::{Brand, Lang, Rendered};

/// What the pages need beyond the API's state.
#[derive(Debug)]
pub struct PagesState {
    /// Where the pages are reached, for the links `POST /consent/links` returns.
    pub public_url: PublicUrl,
    /// Requests per client address.
    pub limiter: limit::PublicLimiter,
}

/// The public routes. HEAD is answered by the GET handlers, without a body.
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/unsubscribe/{token}", get(unsubscribe::show).post(unsubscribe::submit))
        .route("/preferences/{token}", get(preferences::show).post(preferences::save))
        .route("/pages/style.css", get(stylesheet))
        .layer(axum::middleware::from_fn_with_state(state, guard))
}

/// Counts the request against its address's limit, then sets the headers every page carries.
async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(ip) = client_ip(&request) {
        if let Err(retry_after) = state.pages.limiter.admit(ip) {
            let lang = Lang::choose(request.uri().query(), accept_language(request.headers())).0;
            let mut response = message_page(StatusCode::TOO_MANY_REQUESTS, lang, &neutral_brand(), &html::TOO_MANY);
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            secure_headers(response.headers_mut());
            return response;
        }
    }
    let mut response = next.run(request).await;
    secure_headers(response.headers_mut());
    response
}

/// The headers of every page: no framing, no referrer (the token is in the URL), no caching
/// (a page shows a person's choices), no sniffing, and a default CSP for responses that did not
/// set their own.
fn secure_headers(headers: &mut HeaderMap) {
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'; base-uri 'none'"));
}

async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], html::STYLESHEET).into_response()
}

/// The connection's address (the server does not trust forwarding headers).
fn client_ip(request: &Request) -> Option<IpAddr> {
    request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip())
}

fn accept_language(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok())
}

/// Which page or link a change came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageAction {
    /// An RFC 8058 `List-Unsubscribe=One-Click` POST.
    OneClick,
    /// The button of the unsubscribe page.
    UnsubscribePage,
    /// The preference page's form.
    PreferencePage,
}

/// The person behind a change, as far as the server can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visitor {
    /// The connection's address.
    pub ip: Option<IpAddr>,
    /// The `User-Agent`, cut to [`MAX_USER_AGENT`] characters.
    pub user_agent: String,
}

/// The longest user agent kept on a change record.
pub const MAX_USER_AGENT: usize = 256;

impl Visitor {
    fn of(request: &Request) -> Visitor {
        let user_agent = request
            .headers()
            .get(header::USER_AGENT)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).chars().take(MAX_USER_AGENT).collect())
            .unwrap_or_default();
        Visitor { ip: client_ip(request), user_agent }
    }
}

/// The origin stamped on a page's change records: the kind of page, the request, and the
/// person (address and user agent) in the record's `actor`.
fn origin(workspace: &Workspace, action: PageAction, visitor: &Visitor, request_id: RequestId) -> Origin {
    let kind = match action {
        PageAction::OneClick => Source::OneClick,
        PageAction::UnsubscribePage => Source::UnsubscribePage,
        PageAction::PreferencePage => Source::PreferencePage,
    };
    Origin {
        workspace_id: workspace.id,
        kind,
        trace: Trace { request_id: Some(request_id), ..Trace::default() },
        actor: Some(Actor {
            ip: visitor.ip.map(|ip| ip.to_string()).unwrap_or_default(),
            user_agent: visitor.user_agent.clone(),
        }),
    }
}

/// A checked link: what its token says, with the workspace and group it names.
struct Link {
    token: String,
    claims: LinkClaims,
    workspace: Workspace,
    group: Option<Group>,
}

impl Link {
    /// Checks `token`; `None` for anything forged, altered, expired, signed by a retired key or
    /// naming a workspace or group that is not (or no longer) there.
    fn resolve(state: &AppState, token: &str) -> Option<Link> {
        let claims = links::verify(token, state.clock.now(), |workspace, key| state.catalog.link_key(workspace, key))?;
        let workspace = state.catalog.workspace(claims.workspace_id)?;
        let group = match claims.group_id {
            Some(id) => Some(state.catalog.group(workspace.id, id).filter(|g| g.status == GroupStatus::Active)?),
            None => None,
        };
        Some(Link { token: token.to_string(), claims, workspace, group })
    }

    fn key(&self) -> [u8; 32] {
        self.workspace.verifying_key(&self.claims.key_id).expect("a resolved link's key is active")
    }

    fn brand(&self) -> Brand {
        let branding = &self.workspace.branding;
        Brand {
            name: branding.display_name.clone().unwrap_or_else(|| self.workspace.name.clone()),
            logo_url: branding.logo_url.clone(),
            accent: branding.accent_colour.clone().unwrap_or_else(|| html::DEFAULT_ACCENT.to_string()),
        }
    }

    /// The active groups of the workspace on the link's channels.
    fn channel_groups(&self, state: &AppState) -> Vec<Group> {
        let channels = self.claims.subject.channels();
        state
            .catalog
            .workspace_groups(self.workspace.id)
            .into_iter()
            .filter(|g| g.status == GroupStatus::Active && channels.contains(&g.channel))
            .collect()
    }

    /// The person's current state in every group they have one in, as the read endpoints
    /// answer it (an email carried by several profiles: the most restrictive).
    async fn states(&self, state: &AppState) -> Result<HashMap<GroupId, ReadState>, StoreError> {
        let mut states = HashMap::new();
        match &self.claims.subject {
            LinkSubject::ExternalId(id) => {
                let profile = state.store.read_profiles(self.workspace.id, &[id]).await?.pop().flatten();
                for s in profile.iter().flat_map(|p| &p.states) {
                    states.insert(s.group_id, ReadState::of(Some(s.state)));
                }
            }
            LinkSubject::Email(_) | LinkSubject::Phone(_) => {
                let contact = self.claims.subject.contact().expect("an email or phone subject");
                let mut view =
                    state.store.read_contacts(self.workspace.id, &[&contact]).await?.pop().unwrap_or_default();
                view.orphans = read::live_orphans(view.orphans, state.clock.now(), state.orphan_retention);
                let groups: Vec<GroupId> = view
                    .carriers
                    .iter()
                    .flat_map(|p| p.states.iter().map(|s| s.group_id))
                    .chain(view.orphans.iter().map(|s| s.group_id))
                    .collect();
                for group in groups {
                    states.insert(group, read::contact_answer(&view, group));
                }
            }
        }
        Ok(states)
    }

    /// Sets `changes` for the link's subject in one atomic write, through the API's path.
    async fn apply(
        &self,
        state: &AppState,
        changes: Vec<(GroupId, SubscriptionState)>,
        action: PageAction,
        visitor: &Visitor,
        request_id: RequestId,
    ) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let (external_ids, contacts) = match (&self.claims.subject, self.claims.subject.contact()) {
            (LinkSubject::ExternalId(id), _) => (vec![id.clone()], Vec::new()),
            (_, Some(contact)) => (Vec::new(), vec![contact]),
            _ => unreachable!("a subject is an external id or a contact"),
        };
        let entries = changes
            .into_iter()
            .map(|(group_id, state)| SetEntry {
                group_id,
                state,
                external_ids: external_ids.clone(),
                contacts: contacts.clone(),
                use_double_opt_in_logic: false,
            })
            .collect();
        let origin = origin(&self.workspace, action, visitor, request_id);
        state.store.set_status(origin, SetStatusCommand { entries }).await?;
        Ok(())
    }

    /// What "unsubscribe" means for this link: its group; for an email without a group, the
    /// global email state (unsubscribed from all email, as Braze's unsubscribe link does); else
    /// every group of its channel.
    fn unsubscribe_changes(&self, state: &AppState) -> Vec<(GroupId, SubscriptionState)> {
        match &self.group {
            Some(group) => vec![(group.id, SubscriptionState::Unsubscribed)],
            None if matches!(self.claims.subject, LinkSubject::Email(_)) => {
                vec![(crate::domain::email::GLOBAL, SubscriptionState::Unsubscribed)]
            }
            None => self.channel_groups(state).into_iter().map(|g| (g.id, SubscriptionState::Unsubscribed)).collect(),
        }
    }
}

/// The look of a page whose link did not check: nothing that names a workspace.
fn neutral_brand() -> Brand {
    Brand { name: String::new(), logo_url: None, accent: html::DEFAULT_ACCENT.to_string() }
}

/// The page's language and the `?lang=` to keep on the page's own links and forms.
struct Language {
    lang: Lang,
    /// `?lang=xx` when the query chose it, else empty.
    query: String,
}

impl Language {
    fn of(request_query: Option<&str>, headers: &HeaderMap) -> Language {
        let (lang, from_query) = Lang::choose(request_query, accept_language(headers));
        let query = if from_query { format!("?lang={}", lang.code()) } else { String::new() };
        Language { lang, query }
    }

    /// The same page in the other language.
    fn other(&self) -> String {
        match self.lang {
            Lang::En => "?lang=fr".into(),
            Lang::Fr => "?lang=en".into(),
        }
    }
}

fn respond(status: StatusCode, rendered: Rendered) -> Response {
    let mut response = (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], rendered.html).into_response();
    if let Ok(csp) = HeaderValue::from_str(&rendered.csp) {
        response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    response
}

/// A page that only says one thing.
fn message_page(status: StatusCode, lang: Lang, brand: &Brand, message: &html::Msg) -> Response {
    let other = match lang {
        Lang::En => "?lang=fr",
        Lang::Fr => "?lang=en",
    };
    respond(status, html::page(lang, brand, message.in_(lang), other, markup! {}))
}

/// The one answer to a link that does not check, whatever was wrong with it: 404, "This link is
/// no longer valid.", nothing that tells a forger which part failed.
fn invalid_link(lang: Lang) -> Response {
    let body = markup! { p { (html::INVALID_BODY.in_(lang)) } };
    let other = match lang {
        Lang::En => "?lang=fr",
        Lang::Fr => "?lang=en",
    };
    respond(StatusCode::NOT_FOUND, html::page(lang, &neutral_brand(), html::INVALID_TITLE.in_(lang), other, body))
}

/// A store failure: logged without the link, answered without detail.
fn failure(lang: Lang, brand: &Brand, err: StoreError) -> Response {
    tracing::error!(error = %crate::store::report(&err), "a page's read or write failed");
    let status = match err {
        StoreError::ShuttingDown | StoreError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    message_page(status, lang, brand, &html::ERROR)
}

/// Reads a page's form body, at most [`form::MAX_FORM_BYTES`].
async fn read_form(headers: &HeaderMap, body: Body) -> Option<form::Form> {
    let bytes = axum::body::to_bytes(body, form::MAX_FORM_BYTES).await.ok()?;
    form::Form::parse(headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()), &bytes)
}
