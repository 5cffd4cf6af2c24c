//! The preference page over HTTP: what it lists, saving in one change, CSRF, languages,
//! branding that cannot inject anything, and groups stored before they could be public.

use consentry::admin::{execute, AdminRequest};
use consentry::catalog::DEFAULT_WORKSPACE;
use consentry::domain::subscription::Channel;
use consentry::domain::subscription::SubscriptionState::{Subscribed, Unsubscribed};
use consentry::domain::tenant::{Branding, Group};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_success, by_external_ids, spawn_app, TestApp};
use crate::pages_links::{get_page, sign};

/// Makes a group public with a description, as `groups update` does.
pub async fn make_public(app: &TestApp, group: consentry::domain::ids::GroupId, description: &str) {
    let request = AdminRequest::GroupsUpdate {
        id: group.to_string(),
        public: Some(true),
        description: Some(description.to_string()),
    };
    execute(&app.catalog, &request).await.expect("the group is updated");
}

/// The CSRF token in a rendered form.
fn csrf_of(page: &str) -> String {
    let start = page.find(r#"name="csrf" value=""#).expect("a CSRF field") + r#"name="csrf" value=""#.len();
    page[start..].split('"').next().unwrap().to_string()
}

/// POSTs a form to `url`.
async fn post_form(app: &TestApp, url: &str, body: &str) -> (StatusCode, String) {
    let response = app
        .client
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

#[tokio::test]
async fn the_page_lists_public_groups_and_the_persons_own_with_their_state_and_no_others() {
    let app = spawn_app().await;
    let news = app.create_group("News", Channel::Email).await;
    let offers = app.create_group("Offers", Channel::Email).await;
    let private = app.create_group("Internal", Channel::Email).await;
    let mine = app.create_group("Beta testers", Channel::Email).await;
    let texts = app.create_group("Texts", Channel::Sms).await;
    make_public(&app, news, "Once a week, <b>no spam</b>").await;
    make_public(&app, offers, "Deals").await;
    make_public(&app, texts, "SMS alerts").await;
    assert_success(app.post_v2(&by_external_ids(news, "subscribed", &["u1"])).await).await;
    assert_success(app.post_v2(&by_external_ids(mine, "unsubscribed", &["u1"])).await).await;
    let link = sign(&app, json!({"external_id": "u1"})).await;
    let (status, page) = get_page(&app, link["preference_url"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    for shown in ["News", "Offers", "Beta testers"] {
        assert!(page.contains(shown), "{shown} is listed: {page}");
    }
    assert!(!page.contains("Internal"), "a private group the person has no state in is not listed");
    assert!(!page.contains("Texts"), "another channel is not listed");
    assert!(page.contains("Once a week, &lt;b&gt;no spam&lt;/b&gt;"), "descriptions are escaped: {page}");
    let checked = |group: consentry::domain::ids::GroupId| {
        let input = page.split("<input").find(|i| i.contains(&format!("value=\"{group}\""))).unwrap();
        input.split('>').next().unwrap().contains("checked")
    };
    assert!(checked(news), "subscribed is ticked");
    assert!(!checked(offers) && !checked(mine), "unknown and unsubscribed are not");
    let _ = private;
}

#[tokio::test]
async fn saving_changes_every_toggled_group_in_one_write_and_nothing_else() {
    let app = spawn_app().await;
    let news = app.create_group("News", Channel::Email).await;
    let offers = app.create_group("Offers", Channel::Email).await;
    let digest = app.create_group("Digest", Channel::Email).await;
    for group in [news, offers, digest] {
        make_public(&app, group, "").await;
    }
    assert_success(app.post_v2(&by_external_ids(news, "subscribed", &["u1"])).await).await;
    assert_success(app.post_v2(&by_external_ids(offers, "subscribed", &["u1"])).await).await;
    let link = sign(&app, json!({"external_id": "u1"})).await;
    let url = link["preference_url"].as_str().unwrap();
    let (_, page) = get_page(&app, url).await;
    let csrf = csrf_of(&page);
    let before = app.changes().await;

    // Untick news, keep offers, tick digest.
    let (status, page) = post_form(&app, url, &format!("csrf={csrf}&group={offers}&group={digest}&action=save")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Your preferences are saved."), "{page}");
    assert_eq!(app.state_of("u1", news).await, Some(Unsubscribed));
    assert_eq!(app.state_of("u1", offers).await, Some(Subscribed));
    assert_eq!(app.state_of("u1", digest).await, Some(Subscribed));
    let after = app.changes().await;
    let new: Vec<_> = after[before.len()..].to_vec();
    assert_eq!(new.len(), 2, "two changes, none for the group left as it was");
    assert!(new.iter().all(|c| c.trace.request_id == new[0].trace.request_id), "one request, one write");
    assert!(new.iter().all(|c| c.kind == consentry::domain::change::Source::PreferencePage));
    assert!(new.iter().all(|c| c.actor.as_ref().is_some_and(|a| a.ip == "127.0.0.1")));

    // Saving the same again changes nothing.
    let (status, _) = post_form(&app, url, &format!("csrf={csrf}&group={offers}&group={digest}&action=save")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.changes().await.len(), after.len());

    // Unsubscribe from everything.
    let (status, _) = post_form(&app, url, &format!("csrf={csrf}&action=unsubscribe_all")).await;
    assert_eq!(status, StatusCode::OK);
    for group in [news, offers, digest] {
        assert_eq!(app.state_of("u1", group).await, Some(Unsubscribed));
    }
}

#[tokio::test]
async fn a_save_without_the_right_csrf_token_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let news = app.create_group("News", Channel::Email).await;
    make_public(&app, news, "").await;
    let link = sign(&app, json!({"external_id": "u1"})).await;
    let other = sign(&app, json!({"external_id": "u2"})).await;
    let url = link["preference_url"].as_str().unwrap();
    let (_, other_page) = get_page(&app, other["preference_url"].as_str().unwrap()).await;
    for body in [
        format!("group={news}&action=save"),
        format!("csrf=forged&group={news}&action=save"),
        format!("csrf={}&group={news}&action=save", csrf_of(&other_page)),
    ] {
        let (status, page) = post_form(&app, url, &body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(page.contains("This form has expired"), "{page}");
    }
    assert!(app.changes().await.is_empty());
}

#[tokio::test]
async fn the_page_speaks_french_by_accept_language_or_query_and_english_otherwise() {
    let app = spawn_app().await;
    let link = sign(&app, json!({"email": "ada@example.com"})).await;
    let url = link["preference_url"].as_str().unwrap();
    let french = |accept: &'static str, query: &'static str| {
        let request = app.client.get(format!("{url}{query}")).header("accept-language", accept);
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    let page = french("fr-FR,fr;q=0.9,en;q=0.8", "").await;
    assert!(page.contains(r#"<html lang="fr">"#) && page.contains("Vos préférences"), "{page}");
    let page = french("en-US,en;q=0.9,fr;q=0.8", "").await;
    assert!(page.contains(r#"<html lang="en">"#) && page.contains("Your preferences"));
    let page = french("en-US", "?lang=fr").await;
    assert!(page.contains("Vos préférences"), "?lang= wins");
    let page = french("fr;q=0, de-DE", "").await;
    assert!(page.contains(r#"<html lang="en">"#), "q=0 refuses French");
    let page = french("de-DE", "").await;
    assert!(page.contains(r#"<html lang="en">"#), "English otherwise");
    let (_, invalid) = get_page(&app, &format!("{}/unsubscribe/nope?lang=fr", app.address)).await;
    assert!(invalid.contains("Ce lien n’est plus valide."), "{invalid}");
}

#[tokio::test]
async fn branding_shows_on_the_pages_and_anything_that_could_inject_is_refused() {
    let app = spawn_app().await;
    let set = |branding: Branding| {
        let request = AdminRequest::WorkspacesSetBranding { workspace: DEFAULT_WORKSPACE.into(), branding };
        let catalog = app.catalog.clone();
        async move { execute(&catalog, &request).await }
    };
    let refused = [
        Branding { accent_colour: Some("#fff\"><script>".into()), ..Branding::default() },
        Branding { accent_colour: Some("red".into()), ..Branding::default() },
        Branding { accent_colour: Some("#12345".into()), ..Branding::default() },
        Branding { logo_url: Some("javascript:alert(1)".into()), ..Branding::default() },
        Branding { logo_url: Some("http://example.com/logo.png".into()), ..Branding::default() },
        Branding { logo_url: Some("https://example.com/a\"onerror=x.png".into()), ..Branding::default() },
        Branding { display_name: Some("a\u{7}b".into()), ..Branding::default() },
    ];
    for branding in refused {
        let err = set(branding.clone()).await.expect_err("refused");
        assert!(!err.to_string().is_empty(), "{branding:?}");
    }
    set(Branding {
        display_name: Some("Acme <Shop> & Co".into()),
        logo_url: Some("https://cdn.example.com/logo.png?v=2&x=1".into()),
        accent_colour: Some("#ffd700".into()),
    })
    .await
    .expect("accepted");
    let link = sign(&app, json!({"email": "ada@example.com"})).await;
    let response = app.client.get(link["unsubscribe_url"].as_str().unwrap()).send().await.unwrap();
    let csp = response.headers()["content-security-policy"].to_str().unwrap().to_string();
    let page = response.text().await.unwrap();
    assert!(page.contains("Acme &lt;Shop&gt; &amp; Co"), "{page}");
    assert!(page.contains(r#"src="https://cdn.example.com/logo.png?v=2&amp;x=1""#), "{page}");
    // A light accent gets black button text, for contrast.
    assert!(page.contains("--accent:#ffd700;--on-accent:#000000"), "{page}");
    // The one inline style is admitted by its hash, and only it.
    let style = page.split("<style>").nth(1).unwrap().split("</style>").next().unwrap();
    use base64::Engine as _;
    use sha2::Digest as _;
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(style.as_bytes()));
    assert!(csp.contains(&format!("'sha256-{hash}'")), "{csp}");
}

#[test]
fn groups_and_workspaces_stored_before_pages_existed_load_private_and_unbranded() {
    let stored = json!({
        "id": "0199a8a4-4c1e-7c3a-9c55-1f2e3d4c5b6a",
        "workspace_id": "0199a8a4-4c1e-7c3a-9c55-1f2e3d4c5b6b",
        "name": "news",
        "channel": "email",
        "status": "active",
        "created_at": 1
    });
    let group: Group = serde_json::from_value(stored.clone()).expect("an old group loads");
    assert!(!group.public && group.description.is_none());
    assert_eq!(serde_json::to_value(&group).unwrap(), stored, "and is written back the same");
    let workspace: consentry::domain::tenant::Workspace = serde_json::from_value(json!({
        "id": "0199a8a4-4c1e-7c3a-9c55-1f2e3d4c5b6b", "name": "default", "created_at": 1
    }))
    .expect("an old workspace loads");
    assert!(workspace.link_keys.is_empty() && workspace.branding == Branding::default());
}

#[tokio::test]
async fn public_groups_and_descriptions_survive_a_restart() {
    let app = spawn_app().await;
    let news = app.create_group("News", Channel::Email).await;
    make_public(&app, news, "Weekly").await;
    let reloaded = consentry::catalog::Catalog::load(app.store.clone(), consentry::domain::time::Clock::system())
        .await
        .expect("the catalog loads");
    let group = reloaded.group(app.workspace, news).unwrap();
    assert!(group.public);
    assert_eq!(group.description.as_deref(), Some("Weekly"));
    let cleared =
        AdminRequest::GroupsUpdate { id: news.to_string(), public: Some(false), description: Some(String::new()) };
    execute(&app.catalog, &cleared).await.unwrap();
    let group = app.catalog.group(app.workspace, news).unwrap();
    assert!(!group.public && group.description.is_none());
    let listed =
        execute(&app.catalog, &AdminRequest::GroupsList { workspace: DEFAULT_WORKSPACE.into() }).await.unwrap();
    assert!(listed.stdout.starts_with("id\tname\tchannel\tstatus\tcreated_at\tpublic\n"), "{}", listed.stdout);
}
