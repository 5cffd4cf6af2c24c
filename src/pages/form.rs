//! The bodies the pages accept: `application/x-www-form-urlencoded` (browsers, and most
//! mailbox providers' one-click POST) and `multipart/form-data` (RFC 8058 allows either, and
//! some providers send it). Only small text fields are read; nothing else is accepted.

/// Largest body read: a preference form with a few hundred group ids fits.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// The fields of a form, in order; a name may repeat (checkboxes).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Form(Vec<(String, String)>);

impl Form {
    /// Reads `body` according to its `Content-Type`; `None` for another type or a body that
    /// does not parse.
    pub fn parse(content_type: Option<&str>, body: &[u8]) -> Option<Form> {
        let content_type = content_type.unwrap_or_default();
        let (mime, params) = content_type.split_once(';').unwrap_or((content_type, ""));
        match mime.trim().to_ascii_lowercase().as_str() {
            "application/x-www-form-urlencoded" => {
                Some(Form(form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()))
            }
            "multipart/form-data" => {
                let boundary = params.split(';').find_map(|p| {
                    let (name, value) = p.trim().split_once('=')?;
                    name.trim().eq_ignore_ascii_case("boundary").then(|| value.trim().trim_matches('"').to_string())
                })?;
                multipart(body, &boundary).map(Form)
            }
            _ => None,
        }
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every value of `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Whether this is the RFC 8058 one-click request: a field `List-Unsubscribe` whose value
    /// is `One-Click`.
    pub fn is_one_click(&self) -> bool {
        self.get("List-Unsubscribe") == Some("One-Click")
    }
}

/// The text fields of a `multipart/form-data` body (RFC 7578). A part without a name is
/// skipped; a malformed body is `None`.
fn multipart(body: &[u8], boundary: &str) -> Option<Vec<(String, String)>> {
    if boundary.is_empty() || boundary.len() > 70 {
        return None;
    }
    let delimiter = format!("--{boundary}");
    let text = std::str::from_utf8(body).ok()?;
    let mut fields = Vec::new();
    let mut sections = text.split(delimiter.as_str());
    sections.next()?; // the preamble
    for section in sections {
        if section.starts_with("--") {
            return Some(fields);
        }
        let section = section.strip_prefix("\r\n").or_else(|| section.strip_prefix('\n'))?;
        let (head, value) = section.split_once("\r\n\r\n").or_else(|| section.split_once("\n\n"))?;
        let value = value.strip_suffix("\r\n").or_else(|| value.strip_suffix('\n')).unwrap_or(value);
        let name = head.lines().find_map(|line| {
            let (header, rest) = line.split_once(':')?;
            if !header.trim().eq_ignore_ascii_case("content-disposition") {
                return None;
            }
            rest.split(';').find_map(|p| {
                let (key, v) = p.trim().split_once('=')?;
                (key.trim() == "name").then(|| v.trim().trim_matches('"').to_string())
            })
        });
        if let Some(name) = name {
            fields.push((name, value.to_string()));
        }
    }
    // No closing delimiter: a truncated body.
    None
}
