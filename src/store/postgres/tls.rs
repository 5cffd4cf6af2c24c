//! TLS to PostgreSQL, asked for in the URL as libpq asks for it: `sslmode`, `sslrootcert`,
//! `sslcert` and `sslkey`.
//!
//! The driver understands only `sslmode=disable|prefer|require` and rejects any other TLS
//! parameter, so [`split_url`] takes these four out of the URL and the rest goes to the driver
//! unchanged. [`Connector`] then does what libpq does with them (rustls, with the `ring`
//! provider, does the TLS):
//!
//! | `sslmode` | encrypts | checks the certificate |
//! | --- | --- | --- |
//! | `disable` | never | — |
//! | `allow` | only if the server refuses a plain connection | chain if `sslrootcert` is given |
//! | `prefer` (default) | if the server can; plain again if that fails | chain if `sslrootcert` is given |
//! | `require` | always | chain if `sslrootcert` is given (libpq: "like verify-ca") |
//! | `verify-ca` | always | chain against `sslrootcert` |
//! | `verify-full` | always | chain, and that it names the host (an address host: an IP SAN) |
//!
//! Certificates are checked by webpki, relaxed where it is stricter than libpq (see
//! `Verifier`): a self-signed server certificate listed in `sslrootcert` is trusted even when
//! marked as a CA, and `verify-full` falls back to the Common Name as libpq does.
//!
//! Unlike libpq, nothing is read from `~/.postgresql/` (root.crt, postgresql.crt/.key) or from
//! `PGSSL*` variables: a service's TLS is what its URL says. `sslrootcert=system` (libpq 16)
//! loads the platform's CA bundle and, as in libpq, makes `verify-full` the default and any
//! weaker `sslmode` an error.

use std::error::Error as _;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::task::JoinHandle;
use tokio_postgres::config::SslMode as DriverSslMode;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Config, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;
use x509_cert::der::{Decode, Tag, Tagged};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;

use crate::store::StoreError;

/// libpq's `sslmode`: whether to encrypt and what to check (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Never encrypt.
    Disable,
    /// Plain first; encrypted if the server refuses plain.
    Allow,
    /// Encrypted if the server can (the default).
    Prefer,
    /// Always encrypted.
    Require,
    /// Always encrypted, the server's certificate chaining to `sslrootcert`.
    VerifyCa,
    /// As `VerifyCa`, and the certificate names the host.
    VerifyFull,
}

impl SslMode {
    /// The mode named `value` in a URL.
    fn parse(value: &str) -> Result<SslMode, StoreError> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(StoreError::Open(format!(
                    "invalid sslmode {other:?} in the PostgreSQL URL: use disable, allow, prefer, require, verify-ca \
                     or verify-full"
                )))
            }
        })
    }

    /// The name as written in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where the certificates trusted to sign the server's come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// A PEM file of one or more CA certificates.
    File(PathBuf),
    /// The platform's CA bundle (`sslrootcert=system`).
    System,
}

/// The TLS parameters of a PostgreSQL URL, as written (nothing is read from disk yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsParams {
    /// `sslmode`, when the URL sets it.
    pub mode: Option<SslMode>,
    /// `sslrootcert`.
    pub root_cert: Option<RootCert>,
    /// `sslcert`: the client's certificate chain (PEM), for servers that ask for one.
    pub client_cert: Option<PathBuf>,
    /// `sslkey`: the private key of `sslcert` (PEM, unencrypted).
    pub client_key: Option<PathBuf>,
}

impl TlsParams {
    /// The mode in force: the URL's, else `verify-full` with `sslrootcert=system` (as libpq 16),
    /// else libpq's default `prefer`.
    pub fn effective_mode(&self) -> SslMode {
        match (self.mode, &self.root_cert) {
            (Some(mode), _) => mode,
            (None, Some(RootCert::System)) => SslMode::VerifyFull,
            (None, _) => SslMode::Prefer,
        }
    }
}

/// The URL parameters this module handles; the driver rejects them.
const TLS_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// Splits the TLS parameters out of a `postgres://` / `postgresql://` URL: returns the URL
/// without them (for the driver) and the parameters. Other parameters keep their text and order.
pub fn split_url(url: &str) -> Result<(String, TlsParams), StoreError> {
    // Where the query begins, found as the driver finds it: credentials run to the first '@'.
    let after_scheme = ["postgres://", "postgresql://"]
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme).map(|_| scheme.len()))
        .ok_or_else(|| StoreError::Open("invalid PostgreSQL URL: it must begin with postgres://".into()))?;
    let authority = after_scheme + url[after_scheme..].find('@').map_or(0, |at| at + 1);
    let Some(query) = url[authority..].find('?').map(|q| authority + q) else {
        return Ok((url.to_string(), TlsParams::default()));
    };
    let mut params = TlsParams::default();
    let mut kept = Vec::new();
    for pair in url[query + 1..].split('&') {
        let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(raw_key, "parameter name")?;
        if !TLS_KEYS.contains(&key.as_str()) {
            kept.push(pair);
            continue;
        }
        let value = decode(raw_value, &key)?;
        match key.as_str() {
            "sslmode" => params.mode = Some(SslMode::parse(&value)?),
            "sslrootcert" if value == "system" => params.root_cert = Some(RootCert::System),
            "sslrootcert" => params.root_cert = Some(RootCert::File(non_empty_path(&key, value)?)),
            "sslcert" => params.client_cert = Some(non_empty_path(&key, value)?),
            _ => params.client_key = Some(non_empty_path(&key, value)?),
        }
    }
    let mut rest = url[..query].to_string();
    if !kept.is_empty() {
        rest.push('?');
        rest.push_str(&kept.join("&"));
    }
    Ok((rest, params))
}

/// A percent-decoded URL component (`what` names it in the error).
fn decode(raw: &str, what: &str) -> Result<String, StoreError> {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| StoreError::Open(format!("invalid PostgreSQL URL: {what} is not UTF-8 once percent-decoded")))
}

/// A file path parameter, which may not be empty.
fn non_empty_path(key: &str, value: String) -> Result<PathBuf, StoreError> {
    if value.is_empty() {
        return Err(StoreError::Open(format!("{key} in the PostgreSQL URL is empty: give a file path")));
    }
    Ok(PathBuf::from(value))
}

/// Makes connections as the TLS parameters ask: the one way the pool and the side connections
/// connect. Cloning is cheap.
#[derive(Clone)]
pub struct Connector {
    mode: SslMode,
    tls: MakeRustlsConnect,
}

/// A connection's driver task (the other half of its [`Client`]), to be spawned.
pub type Connection = tokio_postgres::Connection<Socket, <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream>;

impl Connector {
    /// Loads the certificates and key `params` name and sets up TLS; every file error names the
    /// parameter and the path.
    pub fn new(params: &TlsParams) -> Result<Connector, StoreError> {
        let mode = params.effective_mode();
        if params.root_cert == Some(RootCert::System) && mode != SslMode::VerifyFull {
            return Err(StoreError::Open(format!(
                "sslmode={} cannot be used with sslrootcert=system: use sslmode=verify-full (or omit sslmode)",
                mode.as_str()
            )));
        }
        let (roots, root_certs) = match &params.root_cert {
            Some(RootCert::File(path)) => {
                let (roots, certs) = load_roots(path)?;
                (Some(roots), certs)
            }
            Some(RootCert::System) => (Some(system_roots()?), Vec::new()),
            None if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) => {
                return Err(StoreError::Open(format!(
                    "sslmode={} needs sslrootcert: the path of a PEM file of the CA certificates to trust, or \
                     sslrootcert=system",
                    mode.as_str()
                )))
            }
            None => (None, Vec::new()),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Verifier {
            roots: roots.map(Arc::new),
            root_certs,
            check_name: mode == SslMode::VerifyFull,
            algorithms: provider.signature_verification_algorithms,
        };
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::Open(format!("cannot set up TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let mut config = match (&params.client_cert, &params.client_key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let (chain, key_der) = load_client_identity(cert, key)?;
                builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                    StoreError::Open(format!(
                        "sslkey {} does not go with sslcert {}: {e}",
                        key.display(),
                        cert.display()
                    ))
                })?
            }
            (Some(_), None) => return Err(StoreError::Open("sslcert is given without sslkey: give both".into())),
            (None, Some(_)) => return Err(StoreError::Open("sslkey is given without sslcert: give both".into())),
        };
        // What libpq 17 sends, and what a server accepting direct TLS (`sslnegotiation=direct`)
        // requires.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(Connector { mode, tls: MakeRustlsConnect::new(config) })
    }

    /// The mode in force.
    pub fn mode(&self) -> SslMode {
        self.mode
    }

    /// Connects with `config` (whose own `sslmode` is ignored) as the mode asks, including
    /// libpq's second attempts: `allow` retries encrypted when the server refuses a plain
    /// connection; `prefer` retries plain when the TLS handshake fails or the server refuses the
    /// connection it made over TLS.
    pub async fn connect(&self, config: &Config) -> Result<(Client, Connection), tokio_postgres::Error> {
        let attempt = |mode: DriverSslMode, tls_started: Arc<AtomicBool>| {
            let mut config = config.clone();
            config.ssl_mode(mode);
            let tls = Tracked { inner: self.tls.clone(), started: tls_started };
            async move { config.connect(tls).await }
        };
        let tls_started = Arc::new(AtomicBool::new(false));
        match self.mode {
            SslMode::Disable => attempt(DriverSslMode::Disable, tls_started).await,
            SslMode::Allow => match attempt(DriverSslMode::Disable, Arc::clone(&tls_started)).await {
                Err(e) if e.as_db_error().is_some() => attempt(DriverSslMode::Require, tls_started).await,
                other => other,
            },
            SslMode::Prefer => match attempt(DriverSslMode::Prefer, Arc::clone(&tls_started)).await {
                Err(e) if tls_started.load(Ordering::Relaxed) && (is_tls_failure(&e) || e.as_db_error().is_some()) => {
                    attempt(DriverSslMode::Disable, tls_started).await
                }
                other => other,
            },
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                attempt(DriverSslMode::Require, tls_started).await
            }
        }
    }
}

/// The rustls connector, noting whether the server agreed to TLS (the driver calls
/// [`TlsConnect::connect`] only then), which decides `prefer`'s second attempt.
#[derive(Clone)]
struct Tracked {
    inner: MakeRustlsConnect,
    started: Arc<AtomicBool>,
}

/// The connector [`MakeRustlsConnect`] makes for one host.
type RustlsConnect = <MakeRustlsConnect as MakeTlsConnect<Socket>>::TlsConnect;

impl MakeTlsConnect<Socket> for Tracked {
    type Stream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;
    type TlsConnect = TrackedConnect;
    type Error = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<TrackedConnect, Self::Error> {
        Ok(TrackedConnect {
            inner: MakeTlsConnect::<Socket>::make_tls_connect(&mut self.inner, domain)?,
            started: Arc::clone(&self.started),
        })
    }
}

/// See [`Tracked`].
struct TrackedConnect {
    inner: RustlsConnect,
    started: Arc<AtomicBool>,
}

impl TlsConnect<Socket> for TrackedConnect {
    type Stream = <RustlsConnect as TlsConnect<Socket>>::Stream;
    type Error = <RustlsConnect as TlsConnect<Socket>>::Error;
    type Future = <RustlsConnect as TlsConnect<Socket>>::Future;

    fn connect(self, stream: Socket) -> Self::Future {
        self.started.store(true, Ordering::Relaxed);
        self.inner.connect(stream)
    }
}

/// The pool connects through [`Connector::connect`] too.
impl deadpool_postgres::Connect for Connector {
    fn connect(
        &self,
        config: &Config,
    ) -> Pin<Box<dyn Future<Output = Result<(Client, JoinHandle<()>), tokio_postgres::Error>> + Send + '_>> {
        let config = config.clone();
        Box::pin(async move {
            let (client, connection) = Connector::connect(self, &config).await?;
            let driver = tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "a PostgreSQL connection failed");
                }
            });
            Ok((client, driver))
        })
    }
}

/// Whether a connection failed in the TLS handshake itself (rather than, say, reaching the
/// server or logging in).
fn is_tls_failure(err: &tokio_postgres::Error) -> bool {
    let mut source = err.source();
    while let Some(cause) = source {
        if cause.is::<rustls::Error>() {
            return true;
        }
        if let Some(inner) = cause.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            if inner.is::<rustls::Error>() {
                return true;
            }
        }
        source = cause.source();
    }
    false
}

/// The CA certificates of the PEM file `sslrootcert` names, as trust anchors and as written.
fn load_roots(path: &Path) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), StoreError> {
    let fail = |why: String| StoreError::Open(format!("sslrootcert {}: {why}", path.display()));
    let mut roots = RootCertStore::empty();
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| fail(pem_error(e)))? {
        let cert = cert.map_err(|e| fail(pem_error(e)))?;
        roots.add(cert.clone()).map_err(|e| fail(format!("not a usable CA certificate: {e}")))?;
        certs.push(cert);
    }
    if roots.is_empty() {
        return Err(fail("no certificate in it (expected PEM `BEGIN CERTIFICATE` blocks)".into()));
    }
    Ok((roots, certs))
}

/// The platform's CA bundle, where OpenSSL (and so libpq) finds it: `SSL_CERT_FILE` (or
/// `SSL_CERT_DIR`), else the platform's own locations, as `rustls-native-certs` knows them.
fn system_roots() -> Result<RootCertStore, StoreError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    // A system bundle may hold certificates webpki cannot use; the others still count.
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let why = match found.errors.first() {
            Some(err) => err.to_string(),
            None => "none of the platform's locations holds a certificate".to_string(),
        };
        return Err(StoreError::Open(format!("sslrootcert=system: no CA bundle found ({why})")));
    }
    Ok(roots)
}

/// The client certificate chain and key of `sslcert` and `sslkey`.
fn load_client_identity(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), StoreError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| StoreError::Open(format!("sslcert {}: {}", cert.display(), pem_error(e))))?;
    if chain.is_empty() {
        return Err(StoreError::Open(format!("sslcert {}: no certificate in it", cert.display())));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| StoreError::Open(format!("sslkey {}: {}", key.display(), pem_error(e))))?;
    Ok((chain, key_der))
}

/// A PEM reading error in words.
fn pem_error(err: rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match err {
        Error::Io(io) => format!("cannot read it: {io}"),
        Error::NoItemsFound => "no PEM item of the expected kind in it".into(),
        other => format!("not valid PEM: {other}"),
    }
}

/// Checks the server's certificate as the mode asks: against the roots when there are any, and
/// its name under `verify-full`. The handshake's signatures are always checked, so that the
/// session is at least bound to the certificate shown (which channel binding relies on).
///
/// Where webpki is stricter than OpenSSL (and so libpq), it is relaxed to libpq's rules, so
/// that a certificate libpq accepts is accepted: a server certificate that is itself in
/// `sslrootcert` is trusted even when it is marked as a CA (as the self-signed certificates that
/// PostgreSQL's documentation makes with `openssl req -x509` are), and the host name may match
/// the Common Name when the certificate has no subjectAltName of the host's kind.
#[derive(Debug)]
struct Verifier {
    roots: Option<Arc<RootCertStore>>,
    /// The certificates of the `sslrootcert` file, as written.
    root_certs: Vec<CertificateDer<'static>>,
    check_name: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            let chained = rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.algorithms.all,
            );
            match chained {
                Ok(()) => {}
                Err(_) if self.root_certs.iter().any(|root| root.as_ref() == end_entity.as_ref()) => {
                    check_validity(end_entity, now)?;
                }
                Err(e) => return Err(e),
            }
            if self.check_name {
                verify_name(&cert, end_entity, server_name)?;
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Whether `now` is within the certificate's validity period.
fn check_validity(der: &CertificateDer<'_>, now: UnixTime) -> Result<(), rustls::Error> {
    let cert = x509_cert::Certificate::from_der(der.as_ref())
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    let validity = &cert.tbs_certificate.validity;
    let now = now.as_secs();
    if now < validity.not_before.to_unix_duration().as_secs() {
        return Err(rustls::Error::InvalidCertificate(CertificateError::NotValidYet));
    }
    if now > validity.not_after.to_unix_duration().as_secs() {
        return Err(rustls::Error::InvalidCertificate(CertificateError::Expired));
    }
    Ok(())
}

/// Checks that the certificate names the host, as libpq does: webpki's check of the
/// subjectAltNames, then libpq's further matches, which webpki does not make: an address host
/// against a DNS name written as that address, and the Common Name (a leading `*.` matching
/// one label) when the certificate has no subjectAltName of the host's kind.
fn verify_name(
    cert: &ParsedCertificate<'_>,
    der: &CertificateDer<'_>,
    server_name: &ServerName<'_>,
) -> Result<(), rustls::Error> {
    let Err(err) = rustls::client::verify_server_name(cert, server_name) else {
        return Ok(());
    };
    let Some(names) = CertificateNames::of(der) else {
        return Err(err);
    };
    let matches = |patterns: &[String], host: &str| patterns.iter().any(|pattern| name_matches(pattern, host));
    let matched = match server_name {
        ServerName::DnsName(host) => names.dns.is_empty() && matches(&names.common_names, host.as_ref()),
        ServerName::IpAddress(ip) => {
            let host = std::net::IpAddr::from(*ip).to_string();
            matches(&names.dns, &host) || (!names.has_ip && matches(&names.common_names, &host))
        }
        _ => false,
    };
    if matched {
        Ok(())
    } else {
        Err(err)
    }
}

/// The names a certificate gives its subject.
#[derive(Default)]
struct CertificateNames {
    /// The DNS names of its subjectAltName.
    dns: Vec<String>,
    /// Whether its subjectAltName has an IP address.
    has_ip: bool,
    /// The Common Names of its subject.
    common_names: Vec<String>,
}

impl CertificateNames {
    /// The names of a DER certificate; `None` when it does not decode.
    fn of(der: &CertificateDer<'_>) -> Option<CertificateNames> {
        use x509_cert::der::oid::db::{rfc4519::CN, rfc5280::ID_CE_SUBJECT_ALT_NAME};
        let cert = x509_cert::Certificate::from_der(der.as_ref()).ok()?;
        let mut names = CertificateNames::default();
        for extension in cert.tbs_certificate.extensions.iter().flatten() {
            if extension.extn_id != ID_CE_SUBJECT_ALT_NAME {
                continue;
            }
            for name in SubjectAltName::from_der(extension.extn_value.as_bytes()).ok()?.0 {
                match name {
                    GeneralName::DnsName(dns) => names.dns.push(dns.to_string()),
                    GeneralName::IpAddress(_) => names.has_ip = true,
                    _ => {}
                }
            }
        }
        for attribute in cert.tbs_certificate.subject.0.iter().flat_map(|rdn| rdn.0.iter()) {
            let text_tag = matches!(
                attribute.value.tag(),
                Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::TeletexString
            );
            if attribute.oid == CN && text_tag {
                if let Ok(name) = std::str::from_utf8(attribute.value.value()) {
                    names.common_names.push(name.to_string());
                }
            }
        }
        Some(names)
    }
}

/// libpq's match of a certificate name against the host: equal ignoring ASCII case, or a
/// `*.rest` pattern whose `*` stands for one label (no dot).
fn name_matches(pattern: &str, host: &str) -> bool {
    if pattern.eq_ignore_ascii_case(host) {
        return true;
    }
    let Some(rest) = pattern.strip_prefix('*').filter(|rest| rest.starts_with('.')) else {
        return false;
    };
    if host.len() <= rest.len() {
        return false;
    }
    let split = host.len() - rest.len();
    match (host.get(..split), host.get(split..)) {
        (Some(label), Some(tail)) => tail.eq_ignore_ascii_case(rest) && !label.contains('.'),
        _ => false,
    }
}
