//! The unsubscribe URL. GET and HEAD show a confirmation page and change nothing; POST with
//! `List-Unsubscribe=One-Click` (RFC 8058, from a mailbox provider) unsubscribes and answers
//! 200 with an empty body; POST from the page's button unsubscribes and answers the page that
//! says so. Both are idempotent: a second POST finds nothing to change.

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use maud::html as markup;

use super::html::{self, Lang};
use super::{invalid_link, message_page, read_form, respond, Language, Link, PageAction, Visitor};
use crate::domain::ids::RequestId;
use crate::domain::subscription::Channel;
use crate::http::AppState;

/// `GET|HEAD /unsubscribe/{token}`: the confirmation page, with one button that POSTs.
pub async fn show(State(state): State<AppState>, Path(token): Path<String>, request: Request) -> Response {
    let language = Language::of(request.uri().query(), request.headers());
    let Some(link) = Link::resolve(&state, &token) else {
        return invalid_link(language.lang);
    };
    let lang = language.lang;
    let target = match &link.group {
        Some(group) => group.name.clone(),
        None if link.claims.subject.channels().contains(&Channel::Email) => html::ALL_EMAIL.in_(lang).to_string(),
        None => html::ALL_TEXT.in_(lang).to_string(),
    };
    let preferences = format!("../preferences/{}{}", link.token, language.query);
    let content = markup! {
        p { (html::CONFIRM_LEAD.in_(lang)) " " strong { (target) } }
        form method="post" {
            input type="hidden" name="confirm" value="unsubscribe";
            button type="submit" class="primary" { (html::CONFIRM_BUTTON.in_(lang)) }
        }
        p { a href=(preferences) { (html::MANAGE.in_(lang)) } }
    };
    respond(StatusCode::OK, html::page(lang, &link.brand(), html::CONFIRM_TITLE.in_(lang), &language.other(), content))
}

/// `POST /unsubscribe/{token}`: one-click or the page's button.
pub async fn submit(
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
    let action = if form.is_one_click() {
        PageAction::OneClick
    } else if form.get("confirm") == Some("unsubscribe") {
        PageAction::UnsubscribePage
    } else {
        return message_page(StatusCode::BAD_REQUEST, lang, &link.brand(), &html::BAD_REQUEST);
    };
    let changes = link.unsubscribe_changes(&state);
    if let Err(err) = link.apply(&state, changes, action, &visitor, request_id).await {
        return super::failure(lang, &link.brand(), err);
    }
    match action {
        // RFC 8058: the mailbox provider only reads the status; no body, no redirect.
        PageAction::OneClick => StatusCode::OK.into_response(),
        _ => done(&link, &language),
    }
}

/// "You are unsubscribed", with the way back to the preference page.
fn done(link: &Link, language: &Language) -> Response {
    let lang: Lang = language.lang;
    let preferences = format!("../preferences/{}{}", link.token, language.query);
    let content = markup! {
        p class="notice" role="status" { (html::DONE_BODY.in_(lang)) }
        p { a href=(preferences) { (html::DONE_MANAGE.in_(lang)) } }
    };
    respond(StatusCode::OK, html::page(lang, &link.brand(), html::DONE_TITLE.in_(lang), &language.other(), content))
}
