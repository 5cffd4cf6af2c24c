//! The preference page: the workspace's public groups of the link's channel and every group the
//! person has a state in, each a checkbox showing the current state. Saving sets every changed
//! group in one atomic write; "unsubscribe from everything" unsubscribes from all of them.
//! The form carries a CSRF token bound to the link and the hour (see
//! [`crate::domain::links::csrf_token`]), so no session is kept.

use std::collections::{HashMap, HashSet};

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use maud::html as markup;

use super::html::{self, Msg};
use super::{invalid_link, message_page, read_form, respond, Language, Link, PageAction, Visitor};
use crate::domain::ids::{GroupId, RequestId};
use crate::domain::links;
use crate::domain::read::ReadState;
use crate::domain::subscription::SubscriptionState;
use crate::domain::tenant::Group;
use crate::http::AppState;

/// `GET|HEAD /preferences/{token}`.
pub async fn show(State(state): State<AppState>, Path(token): Path<String>, request: Request) -> Response {
    let language = Language::of(request.uri().query(), request.headers());
    let Some(link) = Link::resolve(&state, &token) else {
        return invalid_link(language.lang);
    };
    render(&state, &link, &language, None).await
}

/// `POST /preferences/{token}`: save, or unsubscribe from everything.
pub async fn save(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Extension(request_id): Extension<RequestId>,
    request: Request,
) -> Response {
    let language = Language::of(request.uri().query(), request.headers());
    let lang = language.lang;
    let Some(link) = Link::resolve(&state, &token) else {
        return invalid_link(lang);
    };
    let visitor = Visitor::of(&request);
    let (parts, body) = request.into_parts();
    let Some(form) = read_form(&parts.headers, body).await else {
        return message_page(StatusCode::BAD_REQUEST, lang, &link.brand(), &html::BAD_REQUEST);
    };
    let csrf_ok =
        form.get("csrf").is_some_and(|csrf| links::csrf_valid(&link.key(), &link.token, csrf, state.clock.now()));
    if !csrf_ok {
        return message_page(StatusCode::FORBIDDEN, lang, &link.brand(), &html::EXPIRED_FORM);
    }
    let current = match link.states(&state).await {
        Ok(current) => current,
        Err(err) => return super::failure(lang, &link.brand(), err),
    };
    let listed = listed_groups(&state, &link, &current);
    let changes: Vec<(GroupId, SubscriptionState)> = match form.get("action") {
        Some("unsubscribe_all") => {
            let mut all: Vec<_> = listed.iter().map(|g| (g.id, SubscriptionState::Unsubscribed)).collect();
            // For an email, "all email" is also the global email state, which no group shows.
            if matches!(link.claims.subject, links::LinkSubject::Email(_)) {
                all.push((crate::domain::email::GLOBAL, SubscriptionState::Unsubscribed));
            }
            all
        }
        Some("save") | None => {
            let checked: HashSet<&str> = form.all("group").collect();
            listed
                .iter()
                .filter_map(|g| {
                    let now = current.get(&g.id).copied().unwrap_or(ReadState::Unknown);
                    let wanted = checked.contains(g.id.to_string().as_str());
                    // Only what the person changed: an unticked group they never had a state
                    // in stays without one.
                    match (wanted, now) {
                        (true, ReadState::Subscribed) | (false, ReadState::Unsubscribed | ReadState::Unknown) => None,
                        (true, _) => Some((g.id, SubscriptionState::Subscribed)),
                        (false, ReadState::Subscribed) => Some((g.id, SubscriptionState::Unsubscribed)),
                    }
                })
                .collect()
        }
        Some(_) => return message_page(StatusCode::BAD_REQUEST, lang, &link.brand(), &html::BAD_REQUEST),
    };
    if let Err(err) = link.apply(&state, changes, PageAction::PreferencePage, &visitor, request_id).await {
        return super::failure(lang, &link.brand(), err);
    }
    render(&state, &link, &language, Some(&html::SAVED)).await
}

/// The groups the page lists: the link's own group, the public ones and those the person has a
/// state in, on the link's channels, by name.
fn listed_groups(state: &AppState, link: &Link, current: &HashMap<GroupId, ReadState>) -> Vec<Group> {
    link.channel_groups(state)
        .into_iter()
        .chain(link.group.clone().filter(|g| !link.claims.subject.channels().contains(&g.channel)))
        .filter(|g| g.public || current.contains_key(&g.id) || link.group.as_ref().is_some_and(|own| own.id == g.id))
        .collect()
}

async fn render(state: &AppState, link: &Link, language: &Language, notice: Option<&Msg>) -> Response {
    let lang = language.lang;
    let current = match link.states(state).await {
        Ok(current) => current,
        Err(err) => return super::failure(lang, &link.brand(), err),
    };
    let groups = listed_groups(state, link, &current);
    let csrf = links::csrf_token(&link.key(), &link.token, state.clock.now());
    let content = markup! {
        @if let Some(notice) = notice {
            p class="notice" role="status" { (notice.in_(lang)) }
        }
        @if groups.is_empty() {
            p { (html::NOTHING.in_(lang)) }
        } @else {
            p { (html::PREFS_LEAD.in_(lang)) }
            form method="post" {
                input type="hidden" name="csrf" value=(csrf);
                fieldset {
                    legend { (html::PREFS_LEGEND.in_(lang)) }
                    @for group in &groups {
                        @let id = format!("g-{}", group.id);
                        @let described = format!("d-{}", group.id);
                        @let subscribed = current.get(&group.id) == Some(&ReadState::Subscribed);
                        div class="choice" {
                            input type="checkbox" name="group" value=(group.id) id=(id) checked[subscribed]
                                aria-describedby=[group.description.as_ref().map(|_| &described)];
                            label for=(id) {
                                (group.name)
                                @if let Some(description) = &group.description {
                                    span class="description" id=(described) { (description) }
                                }
                            }
                        }
                    }
                }
                button type="submit" name="action" value="save" class="primary" { (html::SAVE.in_(lang)) }
                button type="submit" name="action" value="unsubscribe_all" class="secondary" {
                    (html::UNSUBSCRIBE_ALL.in_(lang))
                }
            }
        }
    };
    respond(StatusCode::OK, html::page(lang, &link.brand(), html::PREFS_TITLE.in_(lang), &language.other(), content))
}
