//! The identifier newtypes: what each accepts, how it normalizes, and what its errors say.

use consentry::domain::identifiers::{
    warm_up, Email, ExternalId, IdentifierError, Phone, MAX_EMAIL_CHARS, MAX_EXTERNAL_ID_BYTES, MAX_PHONE_DIGITS,
};
use proptest::prelude::*;

fn email_error(raw: &str) -> String {
    Email::parse(raw).expect_err("the email should be rejected").to_string()
}

fn phone_error(raw: &str) -> String {
    Phone::parse(raw).expect_err("the phone should be rejected").to_string()
}

fn external_id_error(raw: &str) -> String {
    ExternalId::parse(raw).expect_err("the external id should be rejected").to_string()
}

fn email(raw: &str) -> String {
    Email::parse(raw).unwrap_or_else(|e| panic!("{raw:?} should be accepted: {e}")).into_string()
}

fn phone(raw: &str) -> String {
    Phone::parse(raw).unwrap_or_else(|e| panic!("{raw:?} should be accepted: {e}")).into_string()
}

// ---------------------------------------------------------------------------------------------
// External ids

#[test]
fn an_external_id_is_kept_exactly_as_given() {
    for raw in ["user-1", " padded ", "MiXeD", "Bob@Example.COM", "ユーザー", "🙂", "a\u{200b}b"] {
        let id = ExternalId::parse(raw).unwrap();
        assert_eq!(id.as_str(), raw);
        assert_eq!(id.to_string(), raw);
        assert_eq!(id.into_string(), raw);
    }
}

#[test]
fn an_external_id_that_looks_like_an_email_is_not_normalized() {
    let id = ExternalId::parse(" Bob@Example.com").unwrap();
    assert_eq!(id.as_str(), " Bob@Example.com");
}

#[test]
fn an_empty_external_id_is_rejected() {
    assert_eq!(external_id_error(""), "external id is empty");
}

#[test]
fn an_external_id_of_exactly_512_bytes_is_accepted() {
    let ascii = "x".repeat(MAX_EXTERNAL_ID_BYTES);
    assert_eq!(ExternalId::parse(&ascii).unwrap().as_str(), ascii);
    // The limit is in bytes, not characters: 170 three-byte euro signs plus two bytes.
    let multibyte = format!("{}ab", "€".repeat(170));
    assert_eq!(multibyte.len(), 512);
    assert!(ExternalId::parse(&multibyte).is_ok());
}

#[test]
fn an_external_id_over_512_bytes_is_rejected_with_its_length() {
    assert_eq!(external_id_error(&"x".repeat(600)), "external id is 600 bytes long; the limit is 512");
    assert_eq!(
        external_id_error(&format!("{}abc", "€".repeat(170))),
        "external id is 513 bytes long; the limit is 512"
    );
}

#[test]
fn an_external_id_with_a_control_character_is_rejected_with_its_code_point() {
    assert_eq!(external_id_error("ab\u{7}c"), "external id contains a control character (U+0007)");
    for (raw, code) in [
        ("a\tb", "U+0009"),
        ("a\nb", "U+000A"),
        ("\0", "U+0000"),
        ("a\u{7f}", "U+007F"),
        ("a\u{85}b", "U+0085"),
        ("\u{9f}", "U+009F"),
    ] {
        assert_eq!(external_id_error(raw), format!("external id contains a control character ({code})"));
    }
}

#[test]
fn an_external_id_error_is_an_identifier_error_variant_callers_can_match() {
    assert_eq!(ExternalId::parse(""), Err(IdentifierError::EmptyExternalId));
    assert_eq!(ExternalId::parse("a\u{1b}"), Err(IdentifierError::ExternalIdControlCharacter { character: '\u{1b}' }));
}

// ---------------------------------------------------------------------------------------------
// Emails

#[test]
fn an_email_is_trimmed_and_lower_cased() {
    assert_eq!(email("A@Example.COM "), "a@example.com");
    assert_eq!(email("\t\n Bob.Smith@Mail.Example.org\u{a0}\u{3000}"), "bob.smith@mail.example.org");
    assert_eq!(Email::parse("X@Y.Z0").unwrap().to_string(), "x@y.z0");
}

#[test]
fn an_email_keeps_every_atext_character_in_its_local_part() {
    let local = "!#$%&'*+/=?^_`{|}~-09azAZ";
    assert_eq!(email(&format!("{local}@example.com")), format!("{}@example.com", local.to_ascii_lowercase()));
    assert_eq!(email("first.middle.last+tag@example.com"), "first.middle.last+tag@example.com");
}

#[test]
fn an_email_with_a_punycode_domain_is_accepted() {
    assert_eq!(email("user@xn--mnchen-3ya.de"), "user@xn--mnchen-3ya.de");
    assert_eq!(email("user@a-b--c.co.uk"), "user@a-b--c.co.uk");
    assert_eq!(email("user@123.example.com"), "user@123.example.com");
}

#[test]
fn an_email_with_a_non_ascii_character_is_rejected() {
    for raw in ["user@münchen.de", "jörg@example.com", "a\u{a0}b@example.com"] {
        let message = email_error(raw);
        assert!(message.contains("not a valid email address: it contains a non-ASCII character"), "{message}");
    }
}

#[test]
fn an_incomplete_email_is_rejected_with_a_message_quoting_it() {
    assert_eq!(email_error("bob@"), "\"bob@\" is not a valid email address: nothing comes after the @");
    assert_eq!(
        email_error("@example.com"),
        "\"@example.com\" is not a valid email address: nothing comes before the @"
    );
    assert_eq!(email_error("bob"), "\"bob\" is not a valid email address: it has no @");
    assert_eq!(email_error("   "), "\"   \" is not a valid email address: it is empty");
    assert_eq!(email_error(""), "\"\" is not a valid email address: it is empty");
}

#[test]
fn an_email_whose_domain_has_one_label_is_rejected() {
    assert_eq!(email_error("a@b"), "\"a@b\" is not a valid email address: the domain needs at least two labels");
    assert!(email_error("root@localhost").contains("at least two labels"));
}

#[test]
fn an_email_with_two_ats_is_rejected() {
    assert!(email_error("a@b@example.com").ends_with("it has more than one @"));
}

#[test]
fn an_email_with_a_quoted_local_part_is_rejected() {
    assert_eq!(
        email_error("\"john doe\"@example.com"),
        "\"\\\"john doe\\\"@example.com\" is not a valid email address: quoted local parts are not accepted"
    );
    assert!(email_error("\"a@b\"@example.com").contains("quoted local parts"));
}

#[test]
fn an_email_with_an_ip_literal_domain_is_rejected() {
    assert!(email_error("user@[192.0.2.1]").ends_with("IP-address domains are not accepted"));
    assert!(email_error("user@[IPv6:2001:db8::1]").contains("is not a valid email address"));
    assert!(email_error("user@192.0.2.1").ends_with("the top-level domain is all digits"));
}

#[test]
fn an_email_local_part_may_not_start_end_or_double_a_dot() {
    assert!(email_error(".bob@example.com").ends_with("starts or ends with a dot"));
    assert!(email_error("bob.@example.com").ends_with("starts or ends with a dot"));
    assert!(email_error("bo..b@example.com").ends_with("two dots in a row"));
}

#[test]
fn an_email_local_part_may_not_contain_spaces_or_specials() {
    assert!(email_error("bo b@example.com").ends_with("the part before the @ contains a space"));
    assert!(email_error("bo(b)@example.com").ends_with("the part before the @ contains '('"));
    assert!(email_error("bo,b@example.com").ends_with("contains ','"));
    assert!(email_error("bo\\b@example.com").ends_with("contains '\\'"));
    assert!(email_error("bo\u{7}b@example.com").ends_with("contains U+0007"));
}

#[test]
fn an_email_local_part_is_limited_to_64_characters() {
    let ok = format!("{}@example.com", "a".repeat(64));
    assert_eq!(email(&ok), ok);
    assert!(email_error(&format!("{}@example.com", "a".repeat(65)))
        .ends_with("the part before the @ is 65 characters long; the limit is 64"));
}

#[test]
fn an_email_domain_must_be_made_of_well_formed_labels() {
    assert!(email_error("a@.example.com").ends_with("the domain has an empty label"));
    assert!(email_error("a@example..com").ends_with("the domain has an empty label"));
    assert!(email_error("a@example.com.").ends_with("the domain has an empty label"));
    assert!(email_error("a@-example.com").ends_with("starts or ends with a hyphen"));
    assert!(email_error("a@example-.com").ends_with("starts or ends with a hyphen"));
    assert!(email_error("a@exa_mple.com").ends_with("the domain contains '_'"));
    assert!(email_error("a@exa mple.com").ends_with("the domain contains a space"));
    assert!(email_error("a@example.123").ends_with("the top-level domain is all digits"));
    let label63 = "b".repeat(63);
    assert!(Email::parse(&format!("a@{label63}.com")).is_ok());
    assert!(email_error(&format!("a@{label63}b.com")).ends_with("a domain label is longer than 63 characters"));
}

#[test]
fn an_email_is_limited_to_254_characters() {
    // 64 + 1 + 189 = 254, with every label short enough.
    let domain = format!("{}.{}.{}.com", "d".repeat(61), "e".repeat(61), "f".repeat(61));
    let at_limit = format!("{}@{}", "a".repeat(64), domain);
    assert_eq!(at_limit.len(), MAX_EMAIL_CHARS);
    assert_eq!(email(&at_limit), at_limit);
    // Padding does not count: the limit applies after trimming.
    assert_eq!(email(&format!("  {at_limit}  ")), at_limit);
    let over = format!("{}@x{domain}", "a".repeat(64));
    assert!(email_error(&over).ends_with("it is 255 characters long; the limit is 254"));
}

#[test]
fn an_email_domain_may_use_all_the_room_the_254_limit_leaves() {
    let domain = ["c".repeat(63), "c".repeat(63), "c".repeat(63), "c".repeat(60)].join(".");
    assert_eq!(domain.len(), 252);
    assert!(Email::parse(&format!("a@{domain}")).is_ok());
    // The 254 limit on the whole address bites before the 253 limit on the domain can.
    assert!(email_error(&format!("a@c{domain}")).ends_with("it is 255 characters long; the limit is 254"));
}

// ---------------------------------------------------------------------------------------------
// Phones

#[test]
fn brazes_sample_phones_are_accepted_unchanged() {
    // These are not assigned NANP numbers (555 and 111 area codes), which is why only possibility,
    // not full validity, is required.
    for raw in ["+12223334444", "+15556667777", "+11112223333"] {
        let parsed = Phone::parse(raw).unwrap();
        assert_eq!(parsed.as_str(), raw);
        assert_eq!(parsed.to_string(), raw);
    }
}

#[test]
fn international_phones_of_a_possible_length_are_accepted() {
    for raw in [
        "+442079460000",    // GB fixed line
        "+447911123456",    // GB mobile
        "+33612345678",     // FR
        "+4915112345678",   // DE mobile
        "+390236618300",    // IT keeps its leading 0 after the country code
        "+8613812345678",   // CN
        "+61412345678",     // AU
        "+5511912345678",   // BR
        "+80012345678",     // a non-geographic calling code (+800)
        "+491234567890123", // 15 digits, the E.164 maximum
    ] {
        assert_eq!(phone(raw), raw);
    }
}

#[test]
fn a_russian_toll_free_phone_is_accepted_despite_starting_with_the_trunk_prefix() {
    // phonenumber 0.3 rewrites +7 800... to +7 00... (it strips a spurious national prefix),
    // so the parser must not insist on libphonenumber's canonical form.
    assert_eq!(phone("+78005553535"), "+78005553535");
    assert_eq!(phone("+37080012345"), "+37080012345");
}

#[test]
fn a_phone_with_separators_is_rejected() {
    assert_eq!(
        phone_error("+1 555"),
        "\"+1 555\" is not an E.164 phone number: it contains a space; only digits may follow the +"
    );
    assert!(phone_error("+1-222-333-4444").ends_with("it contains '-'; only digits may follow the +"));
    assert!(phone_error("+1.222.333.4444").contains("'.'"));
    assert!(phone_error("+1 (222) 333-4444").contains("a space"));
    assert!(phone_error("+1(222)3334444").contains("'('"));
    assert!(phone_error("+1222333444\u{a0}4").contains("U+00A0"));
}

#[test]
fn a_phone_with_letters_or_an_extension_is_rejected() {
    assert!(phone_error("+1222333444A").contains("'A'"));
    assert!(phone_error("+12223334444x12").contains("'x'"));
    assert!(phone_error("+12223334444;ext=12").contains("';'"));
    assert!(phone_error("tel:+12223334444").ends_with("it must start with +"));
}

#[test]
fn a_phone_without_its_plus_is_rejected() {
    assert_eq!(phone_error("12223334444"), "\"12223334444\" is not an E.164 phone number: it must start with +");
    assert!(phone_error(" +12223334444").ends_with("it must start with +"));
    assert!(phone_error("\u{ff0b}12223334444").ends_with("it must start with +"));
    assert!(phone_error("+12223334444 ").contains("a space"));
    assert_eq!(phone_error(""), "\"\" is not an E.164 phone number: it is empty");
}

#[test]
fn a_phone_must_have_2_to_15_digits() {
    assert!(phone_error("+").ends_with("it has 0 digits; E.164 allows 2 to 15"));
    assert!(phone_error("+1").ends_with("it has 1 digits; E.164 allows 2 to 15"));
    let sixteen = format!("+{}", "4".repeat(MAX_PHONE_DIGITS + 1));
    assert!(phone_error(&sixteen).ends_with("it has 16 digits; E.164 allows 2 to 15"));
}

#[test]
fn a_phone_whose_country_code_starts_with_zero_is_rejected() {
    assert!(phone_error("+0123").ends_with("no country calling code starts with 0"));
    assert!(phone_error("+012223334444").ends_with("no country calling code starts with 0"));
}

#[test]
fn a_phone_with_an_unassigned_country_code_is_rejected() {
    assert_eq!(
        phone_error("+999123456789"),
        "\"+999123456789\" is not an E.164 phone number: it does not start with a known country calling code"
    );
    assert!(phone_error("+2891234567").contains("known country calling code"));
}

#[test]
fn a_phone_too_short_or_long_for_its_country_is_rejected() {
    assert_eq!(
        phone_error("+1234"),
        "\"+1234\" is not an E.164 phone number: numbers with country calling code +1 have 10 digits after it, not 3"
    );
    assert!(phone_error("+122233344445").ends_with("have 10 digits after it, not 11"));
    assert!(phone_error("+4479111234").ends_with("have 7, 9 or 10 digits after it, not 8"));
    assert!(phone_error("+3361234567").ends_with("have 9 digits after it, not 8"));
}

#[test]
fn a_local_only_number_is_not_an_e164_number() {
    // Seven-digit US numbers are "possible, local only" in libphonenumber: diallable inside an
    // area code, never from abroad, so they cannot be written in E.164.
    assert!(phone_error("+15551234").ends_with("have 10 digits after it, not 7"));
}

#[test]
fn a_national_trunk_prefix_after_the_country_code_is_rejected_when_it_breaks_the_length() {
    // "+33 0612345678" is a common data-entry mistake for +33 612345678.
    assert!(phone_error("+330612345678").ends_with("have 9 digits after it, not 10"));
    assert!(phone_error("+4407911123456").contains("not 11"));
}

#[test]
fn warming_up_the_phone_metadata_is_harmless_and_repeatable() {
    warm_up();
    warm_up();
    assert!(Phone::parse("+12223334444").is_ok());
}

// ---------------------------------------------------------------------------------------------
// Error messages with hostile input

#[test]
fn an_error_quotes_at_most_64_characters_of_a_huge_value() {
    let huge = "é".repeat(1_000_000);
    for message in [email_error(&huge), phone_error(&huge)] {
        assert!(message.starts_with(&format!("\"{}…\" is not", "é".repeat(64))), "{message}");
        assert!(message.chars().count() < 250, "{message}");
    }
    let huge_id = "x".repeat(1_000_000);
    assert_eq!(external_id_error(&huge_id), "external id is 1000000 bytes long; the limit is 512");
}

#[test]
fn an_error_escapes_quotes_and_invisible_characters_in_the_value() {
    let message = email_error("a\"b\\c\n\u{7}\u{85}\u{202e}@x");
    assert!(message.starts_with(r#""a\"b\\c\n\u0007\u0085\u202e@x" is not a valid email address"#), "{message}");
    assert!(!message.chars().any(char::is_control));
}

#[test]
fn a_quoted_value_is_truncated_on_a_character_boundary() {
    // 63 ASCII characters then multi-byte ones: the cut must not split a character.
    let raw = format!("{}🙂🙂🙂", "a".repeat(63));
    let message = phone_error(&raw);
    assert!(message.starts_with(&format!("\"{}🙂…\"", "a".repeat(63))), "{message}");
    // Exactly 64 characters are shown whole, with no ellipsis.
    let raw = "b".repeat(64);
    assert!(phone_error(&raw).starts_with(&format!("\"{raw}\" is not")));
}

#[test]
fn identifiers_serialize_as_strings_and_deserialize_through_parse() {
    let email: Email = serde_json::from_str("\" Bob@Example.com\"").unwrap();
    assert_eq!(email.as_str(), "bob@example.com");
    assert_eq!(serde_json::to_string(&email).unwrap(), "\"bob@example.com\"");
    assert!(serde_json::from_str::<Phone>("\"+1 555\"").is_err());
    assert!(serde_json::from_str::<ExternalId>("\"\"").is_err());
}

#[test]
fn identifiers_parse_through_from_str() {
    let phone: Phone = "+12223334444".parse().unwrap();
    assert_eq!(phone.as_str(), "+12223334444");
    assert!("bob@".parse::<Email>().is_err());
}

// ---------------------------------------------------------------------------------------------
// Properties

/// One to twelve RFC 5322 atext characters: a dot-atom's atom.
const ATOM: &str = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,12}";

fn valid_local_part() -> impl Strategy<Value = String> {
    prop::collection::vec(ATOM, 1..5).prop_map(|atoms| atoms.join("."))
}

fn valid_domain() -> impl Strategy<Value = String> {
    let label = "[A-Za-z0-9]([A-Za-z0-9-]{0,10}[A-Za-z0-9])?";
    let top = "[A-Za-z][A-Za-z0-9]{1,8}|xn--[a-z0-9]{2,8}";
    (prop::collection::vec(label, 1..4), top).prop_map(|(mut labels, top)| {
        labels.push(top);
        labels.join(".")
    })
}

fn valid_email() -> impl Strategy<Value = String> {
    (valid_local_part(), valid_domain()).prop_map(|(local, domain)| format!("{local}@{domain}"))
}

fn control_char() -> impl Strategy<Value = char> {
    prop::sample::select((0u32..=0x1f).chain(0x7f..=0x9f).filter_map(char::from_u32).collect::<Vec<_>>())
}

fn any_long_string() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..2000).prop_map(String::from_iter)
}

/// Everything any parser may say about `raw` fits in a short message and quotes little of it.
fn assert_error_is_bounded(raw: &str, message: &str) {
    assert!(message.chars().count() <= 64 * 6 + 160, "{message}");
    assert!(!message.chars().any(char::is_control), "{message:?}");
    if raw.chars().count() > 100 {
        let head: String = raw.chars().take(65).collect();
        assert!(!message.contains(&head), "{message}");
    }
}

// A failing case is saved under tests/proptest-regressions/ (proptest's default persistence)
// and replayed first on every later run: commit that file with the fix, as proptest
// recommends, so that the case stays a test for everyone.
proptest! {
    #[test]
    fn a_parsed_email_reparses_to_itself(
        raw in prop_oneof![
            valid_email(),
            "\\s{0,2}[A-Za-z0-9.!#%+_@-]{1,30}@[A-Za-z0-9.-]{1,30}\\s{0,2}",
            "\\PC{0,40}",
        ]
    ) {
        if let Ok(parsed) = Email::parse(&raw) {
            let normalized = parsed.as_str();
            prop_assert_eq!(Email::parse(normalized).unwrap().into_string(), normalized);
            prop_assert!(normalized.chars().count() <= MAX_EMAIL_CHARS);
            prop_assert_eq!(normalized.to_lowercase(), normalized);
            prop_assert_eq!(normalized.matches('@').count(), 1);
            prop_assert_eq!(normalized.trim(), normalized);
        }
    }

    #[test]
    fn a_well_formed_email_parses_whatever_its_case_and_padding(
        raw in valid_email(),
        left in "[ \t\n\u{a0}]{0,3}",
        right in "[ \t\n\u{3000}]{0,3}",
    ) {
        let expected = raw.to_ascii_lowercase();
        prop_assert_eq!(Email::parse(&raw).unwrap().into_string(), expected.as_str());
        let shouted = format!("{left}{}{right}", raw.to_ascii_uppercase());
        prop_assert_eq!(Email::parse(&shouted).unwrap().into_string(), expected);
    }

    #[test]
    fn a_nanp_number_with_plus_one_always_parses(number in "[2-9][0-9]{2}[2-9][0-9]{6}") {
        let raw = format!("+1{number}");
        prop_assert_eq!(Phone::parse(&raw).unwrap().into_string(), raw);
    }

    #[test]
    fn a_phone_with_any_non_digit_after_the_plus_fails(
        before in "[0-9]{0,7}",
        bad in any::<char>().prop_filter("not a digit", |c| !c.is_ascii_digit()),
        after in "[0-9]{0,7}",
    ) {
        let raw = format!("+{before}{bad}{after}");
        prop_assert!(Phone::parse(&raw).is_err());
    }

    #[test]
    fn a_phone_with_more_than_15_digits_fails(digits in "[1-9][0-9]{15,40}") {
        let message = Phone::parse(&format!("+{digits}")).unwrap_err().to_string();
        prop_assert!(message.contains("E.164 allows 2 to 15"), "{}", message);
    }

    #[test]
    fn a_plus_and_digits_never_panics_and_parses_only_to_itself(digits in "[0-9]{0,16}") {
        let raw = format!("+{digits}");
        if let Ok(parsed) = Phone::parse(&raw) {
            prop_assert_eq!(parsed.as_str(), raw.as_str());
        }
    }

    #[test]
    fn an_external_id_without_control_characters_is_kept_unchanged(
        raw in "[^\\p{Cc}]{1,128}"
    ) {
        prop_assume!(raw.len() <= MAX_EXTERNAL_ID_BYTES);
        prop_assert_eq!(ExternalId::parse(&raw).unwrap().into_string(), raw);
    }

    #[test]
    fn an_external_id_with_a_control_character_is_rejected(
        head in "[^\\p{Cc}]{0,60}",
        control in control_char(),
        tail in "[^\\p{Cc}]{0,60}",
    ) {
        let raw = format!("{head}{control}{tail}");
        let expected = IdentifierError::ExternalIdControlCharacter { character: control };
        prop_assert_eq!(ExternalId::parse(&raw), Err(expected));
    }

    #[test]
    fn no_printable_input_panics_a_parser(raw in "\\PC*") {
        for message in [
            ExternalId::parse(&raw).err().map(|e| e.to_string()),
            Email::parse(&raw).err().map(|e| e.to_string()),
            Phone::parse(&raw).err().map(|e| e.to_string()),
        ].into_iter().flatten() {
            assert_error_is_bounded(&raw, &message);
        }
    }

    #[test]
    fn no_unicode_input_up_to_2000_characters_panics_a_parser(raw in any_long_string()) {
        for message in [
            ExternalId::parse(&raw).err().map(|e| e.to_string()),
            Email::parse(&raw).err().map(|e| e.to_string()),
            Phone::parse(&raw).err().map(|e| e.to_string()),
        ].into_iter().flatten() {
            assert_error_is_bounded(&raw, &message);
        }
    }
}
