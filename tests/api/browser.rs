//! The preference page in a real browser: headless Chromium driven over WebDriver by
//! chromedriver (both from Debian's packages). A person opens a link, toggles, saves, reloads
//! and sees the new state, once with JavaScript and once without; the pages are photographed at
//! 375 and 1280 px wide into `target/screenshots/`, and axe-core (npm, pinned in
//! tests/client) runs in them and must find no serious or critical violation.
//!
//! The WebDriver client is the dozen W3C endpoints this test needs, over the reqwest the suite
//! already has: a WebDriver crate would add its own HTTP and TLS stack for the same calls.
//! Under `CI=true` a missing browser, driver or axe-core fails the test; elsewhere it is skipped
//! with a message.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use consentry::admin::{execute, AdminRequest};
use consentry::catalog::DEFAULT_WORKSPACE;
use consentry::domain::subscription::Channel;
use consentry::domain::subscription::SubscriptionState::{Subscribed, Unsubscribed};
use consentry::domain::tenant::Branding;
use serde_json::{json, Value};

use crate::helpers::{assert_success, by_external_ids, spawn_app};
use crate::pages_links::sign;
use crate::pages_preferences::make_public;

/// The browser and driver, from the environment or Debian's paths.
fn tools() -> Option<(PathBuf, PathBuf, PathBuf)> {
    let chromium = std::env::var_os("CONSENTRY_CHROMIUM").map(PathBuf::from).unwrap_or("/usr/bin/chromium".into());
    let driver =
        std::env::var_os("CONSENTRY_CHROMEDRIVER").map(PathBuf::from).unwrap_or("/usr/bin/chromedriver".into());
    let axe = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/client/node_modules/axe-core/axe.min.js");
    let missing: Vec<String> =
        [&chromium, &driver, &axe].iter().filter(|p| !p.exists()).map(|p| p.display().to_string()).collect();
    if missing.is_empty() {
        return Some((chromium, driver, axe));
    }
    let message = format!(
        "the browser test needs {} (apt-get install chromium chromium-driver; npm ci --prefix tests/client)",
        missing.join(", ")
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{message}");
    }
    eprintln!("skipped: {message}");
    None
}

/// chromedriver on a free loopback port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
    http: reqwest::Client,
}

impl Driver {
    async fn start(path: &Path) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(path)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Driver { child, url: format!("http://127.0.0.1:{port}"), http: crate::helpers::client() };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = driver.http.get(format!("{}/status", driver.url)).send().await;
            if let Ok(response) = ready {
                if response.json::<Value>().await.is_ok_and(|v| v["value"]["ready"] == true) {
                    return driver;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A headless Chromium session, with or without JavaScript.
    async fn session(&self, chromium: &Path, javascript: bool) -> Session {
        let mut options = json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900", "--lang=en-US"],
        });
        if !javascript {
            options["prefs"] = json!({ "profile.managed_default_content_settings.javascript": 2 });
        }
        let body =
            json!({ "capabilities": { "alwaysMatch": { "browserName": "chrome", "goog:chromeOptions": options } } });
        let answer: Value =
            self.http.post(format!("{}/session", self.url)).json(&body).send().await.unwrap().json().await.unwrap();
        let id = answer["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {answer}"));
        Session { base: format!("{}/session/{id}", self.url), http: self.http.clone() }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session: the W3C WebDriver calls the test makes.
struct Session {
    base: String,
    http: reqwest::Client,
}

impl Session {
    async fn try_call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, Value> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        match answer["value"]["error"].is_string() {
            true => Err(answer["value"].clone()),
            false => Ok(answer["value"].clone()),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body).await.unwrap_or_else(|e| panic!("WebDriver {path}: {e}"))
    }

    async fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url }))).await;
    }

    async fn find(&self, css: &str) -> String {
        let element =
            self.call(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css}))).await;
        element.as_object().unwrap().values().next().unwrap().as_str().unwrap().to_string()
    }

    async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{id}/click"), Some(json!({}))).await;
    }

    async fn selected(&self, css: &str) -> bool {
        let id = self.find(css).await;
        self.call(reqwest::Method::GET, &format!("/element/{id}/selected"), None).await.as_bool().unwrap()
    }

    /// Waits until the page (the one a click may still be loading) shows `needle`.
    async fn wait_for_text(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = String::new();
        while Instant::now() < deadline {
            let body = self
                .try_call(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": "body"})))
                .await;
            if let Ok(Some(id)) =
                body.map(|b| b.as_object().and_then(|o| o.values().next()).and_then(|v| v.as_str()).map(String::from))
            {
                if let Ok(text) = self.try_call(reqwest::Method::GET, &format!("/element/{id}/text"), None).await {
                    last = text.as_str().unwrap_or_default().to_string();
                    if last.contains(needle) {
                        return;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the page never showed {needle:?}; it shows {last:?}");
    }

    async fn width(&self, width: u32) {
        self.call(reqwest::Method::POST, "/window/rect", Some(json!({"width": width, "height": 900}))).await;
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let data = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD.decode(data.as_str().unwrap()).unwrap();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Runs axe-core in the page; the serious and critical violations, as `id: target…` lines.
    async fn axe(&self, source: &str) -> Vec<String> {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": format!("{source}\nreturn true;"), "args": []})),
        )
        .await;
        let script = "const done = arguments[arguments.length - 1];\
            axe.run(document, { resultTypes: ['violations'] })\
              .then(r => done(JSON.stringify(r.violations)), e => done('error: ' + e));";
        let result =
            self.call(reqwest::Method::POST, "/execute/async", Some(json!({"script": script, "args": []}))).await;
        let text = result.as_str().unwrap();
        let violations: Vec<Value> = serde_json::from_str(text).unwrap_or_else(|_| panic!("axe failed: {text}"));
        violations
            .iter()
            .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
            .map(|v| format!("{}: {}", v["id"], v["nodes"].as_array().map(|n| n.len()).unwrap_or(0)))
            .collect()
    }

    async fn quit(self) {
        let _ = self.http.delete(&self.base).send().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_toggles_saves_and_sees_the_new_state_in_chromium_with_and_without_javascript() {
    let Some((chromium, driver_path, axe_path)) = tools() else {
        return;
    };
    let axe = std::fs::read_to_string(&axe_path).unwrap();
    let app = spawn_app().await;
    let news = app.create_group("Weekly news", Channel::Email).await;
    let offers = app.create_group("Offers and discounts", Channel::Email).await;
    make_public(&app, news, "The week's articles, every Monday.").await;
    make_public(&app, offers, "At most twice a month.").await;
    let branding =
        Branding { display_name: Some("Acme Coffee".into()), logo_url: None, accent_colour: Some("#8a3b12".into()) };
    execute(&app.catalog, &AdminRequest::WorkspacesSetBranding { workspace: DEFAULT_WORKSPACE.into(), branding })
        .await
        .unwrap();
    for person in ["with-js", "without-js"] {
        assert_success(app.post_v2(&by_external_ids(news, "subscribed", &[person])).await).await;
    }
    let driver = Driver::start(&driver_path).await;

    for (person, javascript) in [("with-js", true), ("without-js", false)] {
        let link = sign(&app, json!({"external_id": person})).await;
        let preferences = link["preference_url"].as_str().unwrap();
        let session = driver.session(&chromium, javascript).await;
        session.go(preferences).await;
        let (news_box, offers_box) = (format!("input[value=\"{news}\"]"), format!("input[value=\"{offers}\"]"));
        assert!(session.selected(&news_box).await, "{person}: subscribed shows ticked");
        assert!(!session.selected(&offers_box).await);
        if javascript {
            for width in [375, 1280] {
                session.width(width).await;
                session.screenshot(&format!("preferences-{width}.png")).await;
            }
            let violations = session.axe(&axe).await;
            assert!(violations.is_empty(), "axe on the preference page: {violations:?}");
            // The check can fail: the same page with its labels taken away is reported.
            let strip = "document.querySelectorAll('label').forEach(l => l.remove()); return true;";
            session.call(reqwest::Method::POST, "/execute/sync", Some(json!({"script": strip, "args": []}))).await;
            let violations = session.axe(&axe).await;
            assert!(
                violations.iter().any(|v| v.starts_with("\"label\"")),
                "axe misses unlabelled boxes: {violations:?}"
            );
            session.go(preferences).await;
        }
        // Clicking the label toggles the box (labels are tied to their inputs).
        session.click(&format!("label[for=\"g-{news}\"]")).await;
        session.click(&offers_box).await;
        session.click("button[value=\"save\"]").await;
        session.wait_for_text("Your preferences are saved.").await;
        session.go(preferences).await;
        assert!(!session.selected(&news_box).await, "{person}: news unticked after reload");
        assert!(session.selected(&offers_box).await, "{person}: offers ticked after reload");
        assert_eq!(app.state_of(person, news).await, Some(Unsubscribed));
        assert_eq!(app.state_of(person, offers).await, Some(Subscribed));

        // The unsubscribe page: its one button, then the way back to the preferences.
        session.go(link["unsubscribe_url"].as_str().unwrap()).await;
        if javascript {
            session.width(375).await;
            session.screenshot("unsubscribe-375.png").await;
            let violations = session.axe(&axe).await;
            assert!(violations.is_empty(), "axe on the unsubscribe page: {violations:?}");
            session.width(1280).await;
        }
        session.click("button[type=\"submit\"]").await;
        session.wait_for_text("You are unsubscribed").await;
        assert_eq!(app.state_of(person, offers).await, Some(Unsubscribed));
        session.click("main a").await;
        session.wait_for_text("Your preferences").await;
        session.quit().await;
    }
}
