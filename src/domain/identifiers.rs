//! The three ways a request can name a user: external id, email address and phone number.
//!
//! Each is a newtype that can only be built by its `parse` function, so a value of the type is
//! proof that the identifier was checked and normalized once, at the edge. Everything past the
//! HTTP layer (matching, storage, orphaned-state lookup) can then compare plain strings.
//!
//! Parsing sits on the hot path (up to 50 identifiers per list, thousands of requests per
//! second), so the checks are hand-written byte loops: no regex, and no allocation except the
//! normalized `String` that a successful parse returns. Failures are the cold path; their
//! messages go verbatim into API error bodies as `<field path>: <message>`, which is why they
//! quote only a bounded, escaped excerpt of the caller's value.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

/// Longest accepted external id, in UTF-8 bytes (the contract counts bytes, not characters).
pub const MAX_EXTERNAL_ID_BYTES: usize = 512;
/// Longest accepted email address after trimming; the SMTP path limit (RFC 5321) minus the
/// angle brackets.
pub const MAX_EMAIL_CHARS: usize = 254;
/// Most digits an E.164 number may have, country calling code included (ITU-T E.164).
pub const MAX_PHONE_DIGITS: usize = 15;

/// RFC 5321 §4.5.3.1.1.
const MAX_LOCAL_PART_CHARS: usize = 64;
/// DNS names are at most 255 octets on the wire, which is 253 characters in text form.
const MAX_DOMAIN_CHARS: usize = 253;
/// RFC 1035 §2.3.4.
const MAX_LABEL_CHARS: usize = 63;
/// A country calling code plus at least one subscriber digit.
const MIN_PHONE_DIGITS: usize = 2;
/// How much of a rejected value an error message repeats: enough to recognise it, never a
/// megabyte of hostile input in a response or a log line.
const MAX_QUOTED_CHARS: usize = 64;

/// A caller-chosen user id: opaque, compared byte for byte.
///
/// Deliberately not trimmed or case-folded: two ids that differ only in case or padding may
/// belong to two different users of the caller's system.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExternalId(String);

/// An email address in normalized form: trimmed, lower-cased, ASCII.
///
/// Lower-casing the local part is not RFC-correct in theory (RFC 5321 lets a server treat it
/// case-sensitively), but the contract asks for case-insensitive matching, and storing one
/// spelling makes that a plain string comparison.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Email(String);

/// A phone number in E.164 form (`+` and 2 to 15 digits), exactly as the caller wrote it.
///
/// Only canonical input is accepted, so the stored form and the written form are the same
/// string and no reformatting can make two spellings of one number diverge.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Phone(String);

/// Why an identifier was rejected. `Display` is the message used in API error bodies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    /// An external id must name someone.
    #[error("external id is empty")]
    EmptyExternalId,
    /// An external id over [`MAX_EXTERNAL_ID_BYTES`].
    #[error("external id is {bytes} bytes long; the limit is {MAX_EXTERNAL_ID_BYTES}")]
    ExternalIdTooLong {
        /// Length of the rejected id in UTF-8 bytes.
        bytes: usize,
    },
    /// Control characters would corrupt logs, CSV exports and terminal output downstream.
    #[error("external id contains a control character ({})", CodePoint(*.character))]
    ExternalIdControlCharacter {
        /// The first control character found.
        character: char,
    },
    /// The value is not an acceptable email address.
    #[error("{value} is not a valid email address: {problem}")]
    InvalidEmail {
        /// The caller's value (before trimming), bounded and escaped.
        value: QuotedValue,
        /// The first rule it broke.
        problem: EmailProblem,
    },
    /// The value is not an acceptable E.164 phone number.
    #[error("{value} is not an E.164 phone number: {problem}")]
    InvalidPhone {
        /// The caller's value, bounded and escaped.
        value: QuotedValue,
        /// The first rule it broke.
        problem: PhoneProblem,
    },
}

/// The rule an email address broke; `Display` is the clause after the colon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EmailProblem {
    /// Nothing left after trimming.
    Empty,
    /// SMTPUTF8 addresses are out of scope; internationalized domains must be punycode.
    NotAscii,
    /// Longer than [`MAX_EMAIL_CHARS`] after trimming.
    TooLong {
        /// Length after trimming.
        chars: usize,
    },
    /// A quoted local part (`"john doe"@example.com`): legal in RFC 5322, refused by Braze.
    QuotedLocalPart,
    /// No `@` at all.
    MissingAt,
    /// More than one `@` (only possible in quoted local parts, which are refused).
    SeveralAts,
    /// Nothing before the `@`.
    EmptyLocalPart,
    /// Local part over 64 characters.
    LocalPartTooLong {
        /// Length of the local part.
        chars: usize,
    },
    /// A character outside RFC 5322 `atext` and `.` in the local part.
    LocalPartCharacter(char),
    /// The local part starts or ends with a dot.
    LocalPartEdgeDot,
    /// The local part contains `..`.
    LocalPartDoubleDot,
    /// Nothing after the `@`.
    EmptyDomain,
    /// `user@[192.0.2.1]`: delivery to bare addresses is a spam/abuse vector and Braze refuses it.
    IpLiteralDomain,
    /// Domain over 253 characters.
    DomainTooLong {
        /// Length of the domain.
        chars: usize,
    },
    /// A single-label domain such as `localhost` cannot receive mail from the internet.
    SingleLabelDomain,
    /// `a@.com`, `a@b..com`, `a@b.com.`.
    EmptyDomainLabel,
    /// A domain label over 63 characters.
    DomainLabelTooLong,
    /// A character other than letters, digits, `-` and `.` in the domain.
    DomainCharacter(char),
    /// A domain label starting or ending with `-`.
    DomainLabelHyphen,
    /// An all-digit top-level label, which is how a mistyped IP address looks.
    NumericTopLevelDomain,
}

/// The rule a phone number broke; `Display` is the clause after the colon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PhoneProblem {
    /// Empty string.
    Empty,
    /// E.164 is the international form, so the `+` is required.
    MissingPlus,
    /// A space, dash, letter, extension marker or anything else that is not a digit.
    NonDigit(char),
    /// Fewer than 2 or more than 15 digits.
    DigitCount {
        /// Number of digits after the `+`.
        digits: usize,
    },
    /// No country calling code starts with 0.
    LeadingZero,
    /// The leading digits are not a country calling code in libphonenumber's metadata.
    UnknownCountryCode,
    /// No number under this country calling code has this many digits.
    ImpossibleLength {
        /// The country calling code found.
        country_code: u16,
        /// Digits after the country calling code.
        national_digits: usize,
    },
}

/// A rejected value as error messages show it: at most 64 characters, quoted and escaped.
///
/// Built only from the caller's raw input so that no error can echo more than a bounded
/// excerpt, however large the hostile string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotedValue {
    excerpt: String,
    truncated: bool,
}

impl QuotedValue {
    /// Keeps the first 64 characters of `raw` (cut on a char boundary).
    pub fn new(raw: &str) -> Self {
        let cut = raw.char_indices().nth(MAX_QUOTED_CHARS).map_or(raw.len(), |(index, _)| index);
        QuotedValue { excerpt: raw[..cut].to_owned(), truncated: cut < raw.len() }
    }

    /// The kept prefix of the value, unescaped.
    pub fn excerpt(&self) -> &str {
        &self.excerpt
    }

    /// Whether the value was longer than what is kept.
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }
}

impl fmt::Display for QuotedValue {
    /// JSON-style escaping, but stricter than `serde_json`: DEL, C1 controls and bidi overrides
    /// are escaped too, so a message can never reorder or hide text in a log viewer.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write as _;
        f.write_char('"')?;
        for c in self.excerpt.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if c.is_control() || is_bidi_control(c) => write!(f, "\\u{:04x}", c as u32)?,
                c => f.write_char(c)?,
            }
        }
        if self.truncated {
            f.write_char('…')?;
        }
        f.write_char('"')
    }
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Renders a char as `U+0007`: never the raw character, which may be invisible.
struct CodePoint(char);

impl fmt::Display for CodePoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "U+{:04X}", self.0 as u32)
    }
}

/// Renders an offending char as `'x'`, or as `U+00A0` when printing it would not show it.
struct ShownChar(char);

impl fmt::Display for ShownChar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        if c == ' ' {
            f.write_str("a space")
        } else if c.is_control() || c.is_whitespace() || is_bidi_control(c) || is_invisible(c) {
            write!(f, "{}", CodePoint(c))
        } else {
            write!(f, "'{c}'")
        }
    }
}

/// Format characters that render as nothing; `std` cannot ask for the `Cf` category itself.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{00ad}' | '\u{200b}'..='\u{200d}' | '\u{2060}'..='\u{2064}' | '\u{feff}')
}

impl fmt::Display for EmailProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EmailProblem::Empty => f.write_str("it is empty"),
            EmailProblem::NotAscii => f.write_str(
                "it contains a non-ASCII character (internationalized domains must be written \
                 in punycode, xn--…)",
            ),
            EmailProblem::TooLong { chars } => {
                write!(f, "it is {chars} characters long; the limit is {MAX_EMAIL_CHARS}")
            }
            EmailProblem::QuotedLocalPart => f.write_str("quoted local parts are not accepted"),
            EmailProblem::MissingAt => f.write_str("it has no @"),
            EmailProblem::SeveralAts => f.write_str("it has more than one @"),
            EmailProblem::EmptyLocalPart => f.write_str("nothing comes before the @"),
            EmailProblem::LocalPartTooLong { chars } => write!(
                f,
                "the part before the @ is {chars} characters long; the limit is \
                 {MAX_LOCAL_PART_CHARS}"
            ),
            EmailProblem::LocalPartCharacter(c) => {
                write!(f, "the part before the @ contains {}", ShownChar(c))
            }
            EmailProblem::LocalPartEdgeDot => f.write_str("the part before the @ starts or ends with a dot"),
            EmailProblem::LocalPartDoubleDot => f.write_str("the part before the @ contains two dots in a row"),
            EmailProblem::EmptyDomain => f.write_str("nothing comes after the @"),
            EmailProblem::IpLiteralDomain => f.write_str("IP-address domains are not accepted"),
            EmailProblem::DomainTooLong { chars } => {
                write!(f, "the domain is {chars} characters long; the limit is {MAX_DOMAIN_CHARS}")
            }
            EmailProblem::SingleLabelDomain => f.write_str("the domain needs at least two labels"),
            EmailProblem::EmptyDomainLabel => f.write_str("the domain has an empty label"),
            EmailProblem::DomainLabelTooLong => write!(f, "a domain label is longer than {MAX_LABEL_CHARS} characters"),
            EmailProblem::DomainCharacter(c) => {
                write!(f, "the domain contains {}", ShownChar(c))
            }
            EmailProblem::DomainLabelHyphen => f.write_str("a domain label starts or ends with a hyphen"),
            EmailProblem::NumericTopLevelDomain => f.write_str("the top-level domain is all digits"),
        }
    }
}

impl fmt::Display for PhoneProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PhoneProblem::Empty => f.write_str("it is empty"),
            PhoneProblem::MissingPlus => f.write_str("it must start with +"),
            PhoneProblem::NonDigit(c) => {
                write!(f, "it contains {}; only digits may follow the +", ShownChar(c))
            }
            PhoneProblem::DigitCount { digits } => {
                write!(f, "it has {digits} digits; E.164 allows {MIN_PHONE_DIGITS} to {MAX_PHONE_DIGITS}")
            }
            PhoneProblem::LeadingZero => f.write_str("no country calling code starts with 0"),
            PhoneProblem::UnknownCountryCode => f.write_str("it does not start with a known country calling code"),
            PhoneProblem::ImpossibleLength { country_code, national_digits } => {
                write!(f, "numbers with country calling code +{country_code} have ")?;
                let mask = possible_lengths(country_code);
                let lengths = (0..32u32).filter(|bit| mask & (1 << bit) != 0);
                let count = lengths.clone().count();
                for (i, length) in lengths.enumerate() {
                    let separator = match i {
                        0 => "",
                        i if i + 1 == count => " or ",
                        _ => ", ",
                    };
                    write!(f, "{separator}{length}")?;
                }
                write!(f, " digits after it, not {national_digits}")
            }
        }
    }
}

impl ExternalId {
    /// Accepts 1 to 512 bytes without control characters, unchanged.
    ///
    /// # Errors
    ///
    /// [`IdentifierError::EmptyExternalId`], [`IdentifierError::ExternalIdTooLong`] or
    /// [`IdentifierError::ExternalIdControlCharacter`].
    pub fn parse(raw: &str) -> Result<Self, IdentifierError> {
        if raw.is_empty() {
            return Err(IdentifierError::EmptyExternalId);
        }
        // Checked before scanning so a huge hostile value costs nothing.
        if raw.len() > MAX_EXTERNAL_ID_BYTES {
            return Err(IdentifierError::ExternalIdTooLong { bytes: raw.len() });
        }
        if let Some(character) = raw.chars().find(|c| c.is_control()) {
            return Err(IdentifierError::ExternalIdControlCharacter { character });
        }
        Ok(ExternalId(raw.to_owned()))
    }

    /// The id, exactly as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id, without copying.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl Email {
    /// Trims, validates, and lower-cases.
    ///
    /// # Errors
    ///
    /// [`IdentifierError::InvalidEmail`], naming the first rule the trimmed address breaks.
    pub fn parse(raw: &str) -> Result<Self, IdentifierError> {
        let trimmed = raw.trim();
        match check_email(trimmed) {
            // Validation ran case-insensitively on the trimmed text, so this is the only
            // allocation.
            Ok(()) => Ok(Email(trimmed.to_ascii_lowercase())),
            Err(problem) => Err(IdentifierError::InvalidEmail { value: QuotedValue::new(raw), problem }),
        }
    }

    /// The normalized address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The normalized address, without copying.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl Phone {
    /// Accepts a canonical E.164 number whose length fits its country's number plan.
    ///
    /// # Errors
    ///
    /// [`IdentifierError::InvalidPhone`], naming the first rule the number breaks.
    pub fn parse(raw: &str) -> Result<Self, IdentifierError> {
        match check_phone(raw) {
            Ok(()) => Ok(Phone(raw.to_owned())),
            Err(problem) => Err(IdentifierError::InvalidPhone { value: QuotedValue::new(raw), problem }),
        }
    }

    /// The E.164 string, e.g. `+12223334444`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The E.164 string, without copying.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// Loads libphonenumber's metadata and builds the length table now, so that the first
/// request does not pay tens of milliseconds for it.
pub fn warm_up() {
    possible_lengths(1);
}

fn check_email(address: &str) -> Result<(), EmailProblem> {
    if address.is_empty() {
        return Err(EmailProblem::Empty);
    }
    // ASCII first: from here on bytes and characters are the same thing.
    if !address.is_ascii() {
        return Err(EmailProblem::NotAscii);
    }
    if address.len() > MAX_EMAIL_CHARS {
        return Err(EmailProblem::TooLong { chars: address.len() });
    }
    if address.starts_with('"') {
        return Err(EmailProblem::QuotedLocalPart);
    }
    let (local, domain) = address.split_once('@').ok_or(EmailProblem::MissingAt)?;
    if domain.contains('@') {
        return Err(EmailProblem::SeveralAts);
    }
    check_local_part(local)?;
    check_domain(domain)
}

fn check_local_part(local: &str) -> Result<(), EmailProblem> {
    let bytes = local.as_bytes();
    if bytes.is_empty() {
        return Err(EmailProblem::EmptyLocalPart);
    }
    if bytes.len() > MAX_LOCAL_PART_CHARS {
        return Err(EmailProblem::LocalPartTooLong { chars: bytes.len() });
    }
    if let Some(&b) = bytes.iter().find(|&&b| !(is_atext(b) || b == b'.')) {
        return Err(EmailProblem::LocalPartCharacter(char::from(b)));
    }
    if bytes[0] == b'.' || bytes[bytes.len() - 1] == b'.' {
        return Err(EmailProblem::LocalPartEdgeDot);
    }
    if bytes.windows(2).any(|pair| pair == b"..") {
        return Err(EmailProblem::LocalPartDoubleDot);
    }
    Ok(())
}

/// RFC 5322 §3.2.3 `atext`.
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~-".contains(&b)
}

fn check_domain(domain: &str) -> Result<(), EmailProblem> {
    if domain.is_empty() {
        return Err(EmailProblem::EmptyDomain);
    }
    if domain.starts_with('[') {
        return Err(EmailProblem::IpLiteralDomain);
    }
    if domain.len() > MAX_DOMAIN_CHARS {
        return Err(EmailProblem::DomainTooLong { chars: domain.len() });
    }
    if let Some(&b) = domain.as_bytes().iter().find(|&&b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'.')) {
        return Err(EmailProblem::DomainCharacter(char::from(b)));
    }
    let mut labels = 0usize;
    let mut last = "";
    for label in domain.split('.') {
        if label.is_empty() {
            return Err(EmailProblem::EmptyDomainLabel);
        }
        if label.len() > MAX_LABEL_CHARS {
            return Err(EmailProblem::DomainLabelTooLong);
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(EmailProblem::DomainLabelHyphen);
        }
        labels += 1;
        last = label;
    }
    if labels < 2 {
        return Err(EmailProblem::SingleLabelDomain);
    }
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(EmailProblem::NumericTopLevelDomain);
    }
    Ok(())
}

fn check_phone(raw: &str) -> Result<(), PhoneProblem> {
    let Some(digits) = raw.strip_prefix('+') else {
        return Err(if raw.is_empty() { PhoneProblem::Empty } else { PhoneProblem::MissingPlus });
    };
    if let Some(c) = digits.chars().find(|c| !c.is_ascii_digit()) {
        return Err(PhoneProblem::NonDigit(c));
    }
    let count = digits.len();
    if !(MIN_PHONE_DIGITS..=MAX_PHONE_DIGITS).contains(&count) {
        return Err(PhoneProblem::DigitCount { digits: count });
    }
    let bytes = digits.as_bytes();
    if bytes[0] == b'0' {
        return Err(PhoneProblem::LeadingZero);
    }

    // Country calling codes form a prefix code (no code is a prefix of another), so the first
    // prefix that names a known code is the only possible one.
    let mut code: u16 = 0;
    let mut found = None;
    for (i, &b) in bytes.iter().take(3).enumerate() {
        code = code * 10 + u16::from(b - b'0');
        if possible_lengths(code) != 0 {
            found = Some((code, i + 1));
            break;
        }
    }
    let (country_code, code_len) = found.ok_or(PhoneProblem::UnknownCountryCode)?;
    let national_digits = count - code_len;
    if possible_lengths(country_code) & (1u32 << national_digits) == 0 {
        return Err(PhoneProblem::ImpossibleLength { country_code, national_digits });
    }

    // `phonenumber::parse` is deliberately not called: past these checks it refused 6 of
    // 405,000 random numbers (Korean trunk-prefixed ones), costs 3-7 µs per number and takes a
    // global mutex in `regex-cache` on every regex, so it would serialize the request path for
    // no real gain. The length table above is libphonenumber's own metadata.
    Ok(())
}

/// Bit `n` is set when a national significant number of `n` digits is possible under calling
/// code `code`; 0 means no such calling code.
///
/// `phonenumber` 0.3 exposes no "is possible" check of its own (its `validator::length` is
/// private, and its generic-descriptor length lists are empty), so the lengths are rebuilt the
/// way libphonenumber's metadata compiler does: the union of the per-type lengths of the main
/// region for the code. Local-only lengths (e.g. seven-digit US numbers) are left out on
/// purpose: a number that cannot be dialled from abroad is not an E.164 number.
fn possible_lengths(code: u16) -> u32 {
    static TABLE: OnceLock<Box<[u32; 1000]>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = Box::new([0u32; 1000]);
        for (code, slot) in (0u16..).zip(table.iter_mut()) {
            let Some(regions) = phonenumber::metadata::DATABASE.by_code(&code) else {
                continue;
            };
            // libphonenumber's isPossibleNumber also consults only the main region; taking the
            // union instead would let Canada's 7-digit UAN length make every +1 7-digit number
            // "possible".
            let Some(main) = regions.iter().find(|meta| meta.is_main_country_for_code()).or_else(|| regions.first())
            else {
                continue;
            };
            let descriptors = main.descriptors();
            let kinds = [
                descriptors.fixed_line(),
                descriptors.mobile(),
                descriptors.toll_free(),
                descriptors.premium_rate(),
                descriptors.shared_cost(),
                descriptors.personal_number(),
                descriptors.voip(),
                descriptors.pager(),
                descriptors.uan(),
                descriptors.voicemail(),
            ];
            for descriptor in kinds.into_iter().flatten() {
                for &length in descriptor.possible_length() {
                    if (1..32).contains(&length) {
                        *slot |= 1 << length;
                    }
                }
            }
        }
        table
    });
    table.get(usize::from(code)).copied().unwrap_or(0)
}

macro_rules! string_newtype_impls {
    ($name:ident) => {
        impl fmt::Display for $name {
            /// Prints the normalized value.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        /// Lets maps keyed by this type be queried with a plain `&str` of the normalized form.
        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdentifierError;

            fn from_str(raw: &str) -> Result<Self, Self::Err> {
                $name::parse(raw)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        /// Goes through `parse`, so deserialized data gets the same guarantees as request
        /// input.
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(deserializer)?;
                $name::parse(&raw).map_err(serde::de::Error::custom)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
    };
}

string_newtype_impls!(ExternalId);
string_newtype_impls!(Email);
string_newtype_impls!(Phone);
