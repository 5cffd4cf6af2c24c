//! Standard Webhooks 1.0 signatures: `webhook-signature: v1,<base64 HMAC-SHA256>` over
//! `<webhook-id>.<webhook-timestamp>.<body>`, keyed by the secret's decoded bytes.
//!
//! Secrets are `whsec_` followed by the base64 of 24 to 64 random bytes, as Svix and the
//! specification's libraries make and accept them.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// The prefix of a secret's text.
pub const PREFIX: &str = "whsec_";
/// Bytes of a generated secret (Svix's own size).
const GENERATED_BYTES: usize = 32;

/// A signing secret: its key bytes. Its text is shown once, when made, and kept in the store.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A secret never reaches a log.
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// A fresh secret from the system's random source.
    pub fn generate() -> Secret {
        let mut bytes = vec![0u8; GENERATED_BYTES];
        SystemRandom::new().fill(&mut bytes).expect("the system's random source works");
        Secret(bytes)
    }

    /// Parses `whsec_<base64>` of 24 to 64 bytes; the error says what is wrong, never the text.
    pub fn parse(text: &str) -> Result<Secret, String> {
        let encoded = text.strip_prefix(PREFIX).ok_or_else(|| format!("a secret starts with {PREFIX}"))?;
        let bytes = STANDARD.decode(encoded).map_err(|_| format!("a secret is {PREFIX} and base64"))?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(format!("a secret is 24 to 64 bytes, not {}", bytes.len()));
        }
        Ok(Secret(bytes))
    }

    /// The secret's text: `whsec_<base64>`.
    pub fn to_text(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(&self.0))
    }

    /// `v1,<signature>` of one message attempt.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.0);
        let mut context = hmac::Context::with_key(&key);
        context.update(id.as_bytes());
        context.update(b".");
        context.update(timestamp.to_string().as_bytes());
        context.update(b".");
        context.update(body);
        format!("v1,{}", STANDARD.encode(context.sign().as_ref()))
    }
}

/// The `webhook-signature` header: one signature per secret in force, space-separated (two
/// during a rotation, so that a receiver holding either secret verifies the message).
pub fn header(secrets: &[Secret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets.iter().map(|s| s.sign(id, timestamp, body)).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_specifications_example_signs_as_published() {
        // The example of the Standard Webhooks specification (and of Svix's documentation).
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_secret_is_24_to_64_bytes_of_base64_after_its_prefix() {
        assert!(Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap_err().contains("whsec_"));
        assert!(Secret::parse("whsec_!!!").unwrap_err().contains("base64"));
        assert!(Secret::parse(&format!("whsec_{}", STANDARD.encode([1u8; 23]))).unwrap_err().contains("23"));
        assert!(Secret::parse(&format!("whsec_{}", STANDARD.encode([1u8; 65]))).is_err());
        let made = Secret::generate();
        assert_eq!(Secret::parse(&made.to_text()).unwrap(), made);
        assert_ne!(made, Secret::generate());
    }

    #[test]
    fn a_rotation_signs_with_both_secrets() {
        let (old, new) = (Secret::generate(), Secret::generate());
        let both = header(&[new.clone(), old.clone()], "m", 1, b"{}");
        assert_eq!(both, format!("{} {}", new.sign("m", 1, b"{}"), old.sign("m", 1, b"{}")));
    }
}
