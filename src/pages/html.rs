//! The pages' HTML: maud templates (compiled with the code, every value escaped), the English
//! and French messages, and the per-response `Content-Security-Policy` that admits exactly the
//! one `<style>` element carrying the workspace's colours (by its hash) and nothing inline else.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use sha2::{Digest, Sha256};

/// The language of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// English, the default.
    En,
    /// French.
    Fr,
}

impl Lang {
    /// `?lang=` wins; then the first of English and French in `Accept-Language` by quality;
    /// English otherwise.
    pub fn choose(query: Option<&str>, accept_language: Option<&str>) -> (Lang, bool) {
        let asked = query
            .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "lang").map(|(_, v)| v.into_owned()));
        match asked.as_deref() {
            Some("fr") => return (Lang::Fr, true),
            Some("en") => return (Lang::En, true),
            _ => {}
        }
        let mut best = (Lang::En, -1.0f32);
        for item in accept_language.unwrap_or_default().split(',') {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let quality =
                parts.find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.parse::<f32>().ok())).unwrap_or(1.0);
            let lang = match tag.split('-').next() {
                Some("fr") => Lang::Fr,
                Some("en") => Lang::En,
                _ => continue,
            };
            // q=0 means "not this language".
            if quality > 0.0 && quality > best.1 {
                best = (lang, quality);
            }
        }
        (best.0, false)
    }

    /// The `lang` attribute.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Fr => "fr",
        }
    }
}

/// One message in both languages.
pub struct Msg {
    en: &'static str,
    fr: &'static str,
}

impl Msg {
    /// The message in `lang`.
    pub fn in_(&self, lang: Lang) -> &'static str {
        match lang {
            Lang::En => self.en,
            Lang::Fr => self.fr,
        }
    }
}

macro_rules! messages {
    ($($name:ident: $en:literal, $fr:literal;)*) => {
        $(
            #[doc = $en]
            pub const $name: Msg = Msg { en: $en, fr: $fr };
        )*
    };
}

messages! {
    INVALID_TITLE: "This link is no longer valid.", "Ce lien n’est plus valide.";
    INVALID_BODY: "It may have expired or been replaced. Use the link in a more recent message.",
        "Il a peut-être expiré ou été remplacé. Utilisez le lien d’un message plus récent.";
    CONFIRM_TITLE: "Unsubscribe", "Se désinscrire";
    CONFIRM_LEAD: "Do you want to stop receiving:", "Voulez-vous ne plus recevoir :";
    ALL_EMAIL: "all our emails", "tous nos e-mails";
    ALL_TEXT: "all our text messages", "tous nos SMS et messages WhatsApp";
    CONFIRM_BUTTON: "Unsubscribe", "Me désinscrire";
    MANAGE: "Manage my preferences instead", "Gérer plutôt mes préférences";
    DONE_TITLE: "You are unsubscribed", "Votre désinscription est enregistrée";
    DONE_BODY: "You will no longer receive these messages.", "Vous ne recevrez plus ces messages.";
    DONE_MANAGE: "Changed your mind? Manage your preferences", "Vous avez changé d’avis ? Gérez vos préférences";
    PREFS_TITLE: "Your preferences", "Vos préférences";
    PREFS_LEAD: "Choose what you want to receive, then save.", "Choisissez ce que vous souhaitez recevoir, puis enregistrez.";
    PREFS_LEGEND: "Messages", "Messages";
    SAVE: "Save my preferences", "Enregistrer mes préférences";
    UNSUBSCRIBE_ALL: "Unsubscribe from everything", "Me désinscrire de tout";
    SAVED: "Your preferences are saved.", "Vos préférences sont enregistrées.";
    NOTHING: "There is nothing to choose here.", "Il n’y a rien à choisir ici.";
    EXPIRED_FORM: "This form has expired. Reload the page and try again.",
        "Ce formulaire a expiré. Rechargez la page et réessayez.";
    BAD_REQUEST: "This request was not understood.", "Cette requête n’a pas été comprise.";
    TOO_MANY: "Too many requests. Please try again in a minute.", "Trop de requêtes. Réessayez dans une minute.";
    ERROR: "Something went wrong on our side. Please try again later.",
        "Une erreur s’est produite de notre côté. Réessayez plus tard.";
    OTHER_LANG: "Français", "English";
}

/// The look of a workspace's pages, from its branding (already validated).
#[derive(Debug, Clone)]
pub struct Brand {
    /// Shown in the header and the title.
    pub name: String,
    /// An `https://` logo.
    pub logo_url: Option<String>,
    /// `#rrggbb`.
    pub accent: String,
}

/// The accent when a workspace sets none: a blue that white text reads on (contrast 5.2:1).
pub const DEFAULT_ACCENT: &str = "#1a5fb4";

/// A rendered page: its HTML and the CSP that goes with it.
pub struct Rendered {
    /// The document.
    pub html: String,
    /// The `Content-Security-Policy` header value.
    pub csp: String,
}

/// Lays out a page: the workspace's header, `content`, and a link to the other language.
/// `path_to_root` leads from the page's URL to the server's root (`../`), so that the
/// stylesheet is found under any public URL prefix.
pub fn page(lang: Lang, brand: &Brand, title: &str, other_lang_href: &str, content: Markup) -> Rendered {
    let theme = theme_css(&brand.accent);
    let hash = STANDARD.encode(Sha256::digest(theme.as_bytes()));
    let markup = html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                meta name="robots" content="noindex, nofollow";
                title { (title) " · " (brand.name) }
                link rel="stylesheet" href="../pages/style.css";
                style { (PreEscaped(&theme)) }
            }
            body {
                header {
                    @if let Some(logo) = &brand.logo_url {
                        img src=(logo) alt="" class="logo" referrerpolicy="no-referrer";
                    }
                    span class="brand" { (brand.name) }
                }
                main id="main" {
                    h1 { (title) }
                    (content)
                }
                footer {
                    a href=(other_lang_href) lang=(match lang { Lang::En => "fr", Lang::Fr => "en" }) {
                        (OTHER_LANG.in_(lang))
                    }
                }
            }
        }
    };
    let csp = format!(
        "default-src 'none'; style-src 'self' 'sha256-{hash}'; img-src https:; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    Rendered { html: markup.into_string(), csp }
}

/// The one inline style: the accent and the text colour that reads best on it.
fn theme_css(accent: &str) -> String {
    format!(":root{{--accent:{accent};--on-accent:{}}}", on_accent(accent))
}

/// Black or white, whichever contrasts more with `accent` (WCAG relative luminance), so that
/// any colour a workspace picks gives a readable button.
pub fn on_accent(accent: &str) -> &'static str {
    let channel = |i: usize| {
        let c = f64::from(u8::from_str_radix(accent.get(i..i + 2).unwrap_or("00"), 16).unwrap_or(0)) / 255.0;
        if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    let luminance = 0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5);
    let with_white = 1.05 / (luminance + 0.05);
    let with_black = (luminance + 0.05) / 0.05;
    if with_white >= with_black {
        "#ffffff"
    } else {
        "#000000"
    }
}

/// The stylesheet served at `/pages/style.css`: readable from 320 px up, visible focus,
/// text contrast well above 4.5:1.
pub const STYLESHEET: &str = r#"*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1b1b;background:#f6f6f6}
header{display:flex;align-items:center;gap:.75rem;padding:1rem;background:#fff;border-top:6px solid var(--accent)}
.logo{max-height:40px;max-width:160px}
.brand{font-weight:600;font-size:1.1rem}
main{max-width:40rem;margin:1rem auto;padding:1.25rem;background:#fff;border-radius:8px}
h1{font-size:1.5rem;margin:0 0 1rem}
p{margin:0 0 1rem}
fieldset{border:0;margin:0 0 1rem;padding:0}
legend{font-weight:600;margin-bottom:.5rem}
.choice{display:flex;gap:.75rem;align-items:flex-start;padding:.75rem 0;border-bottom:1px solid #d0d0d0}
.choice input{width:1.5rem;height:1.5rem;margin:.1rem 0 0;flex:none;accent-color:var(--accent)}
.choice label{font-weight:600;cursor:pointer}
.choice .description{display:block;color:#4a4a4a;font-weight:400}
.state{display:block;color:#4a4a4a;font-size:.9rem}
button{font:inherit;font-weight:600;padding:.75rem 1.25rem;border-radius:6px;border:2px solid var(--accent);cursor:pointer;min-height:44px;margin:0 .5rem .5rem 0}
button.primary{background:var(--accent);color:var(--on-accent)}
button.secondary{background:#fff;color:#1b1b1b}
a{color:#0b4a8b}
:focus-visible{outline:3px solid #1b1b1b;outline-offset:2px}
.notice{padding:.75rem 1rem;border-left:4px solid #2e7d32;background:#edf7ee;margin-bottom:1rem}
.problem{padding:.75rem 1rem;border-left:4px solid #b3261e;background:#fdecea;margin-bottom:1rem}
footer{max-width:40rem;margin:0 auto 2rem;padding:0 1.25rem}
@media (max-width:480px){main{margin:0;border-radius:0}button{width:100%;margin-right:0}}
"#;
