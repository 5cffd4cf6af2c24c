//! TLS to PostgreSQL as the URL's libpq parameters ask for it (`sslmode`, `sslrootcert`,
//! `sslcert`, `sslkey`). The URL checks, and the checks against TLS stand-ins (for certificates
//! and refusals the machine's server cannot be made to show), run in both passes. Connections
//! to the machine's PostgreSQL, which must have `ssl = on` (Debian's default, with its
//! self-signed "snakeoil" certificate), run in the PostgreSQL pass and return at once in the
//! embedded one; whether a connection is encrypted is asked of the server (`pg_stat_ssl`).
//! Certificates are read and made with the `openssl` command-line tool.

use std::path::{Path, PathBuf};
use std::process::Command;

use consentry::domain::identifiers::ExternalId;
use consentry::store::postgres::tls::{self, RootCert, SslMode};
use consentry::store::postgres::{connection_config, connection_settings};
use consentry::store::{DatabaseLocation, PostgresOptions};
use tempfile::TempDir;
use tokio_postgres::NoTls;

use crate::helpers::{admin_database_url, spawn_app_on, test_store, TestDatabase, TestStore};

/// `url` with `params` added to its query.
fn with_params(url: &str, params: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{params}")
}

/// `url` with its host replaced.
fn with_host(url: &str, host: &str) -> String {
    let mut parsed = reqwest::Url::parse(url).expect("a valid test database URL");
    parsed.set_host(Some(host)).expect("a valid host");
    parsed.to_string()
}

/// Connects to `url` the way the store does and asks the server whether this connection is
/// encrypted; an error carries the driver's reason.
async fn encrypted(url: &str) -> Result<bool, String> {
    let (config, connector) = connection_settings(url, &PostgresOptions::default()).map_err(|e| e.to_string())?;
    let (client, connection) = connector
        .connect(&config)
        .await
        .map_err(|e| format!("{e}: {}", std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default()))?;
    let driver = tokio::spawn(connection);
    let row = client
        .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
        .await
        .map_err(|e| e.to_string())?;
    drop(client);
    let _ = driver.await;
    Ok(row.get(0))
}

/// A plain connection to the admin database, for looking at the server.
async fn admin() -> tokio_postgres::Client {
    let (client, connection) =
        tokio_postgres::connect(&admin_database_url(), NoTls).await.expect("the admin database answers");
    tokio::spawn(connection);
    client
}

/// The certificate the server presents (its `ssl_cert_file`), after checking that TLS is on.
async fn server_certificate() -> PathBuf {
    let admin = admin().await;
    let ssl: String = admin.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    assert_eq!(ssl, "on", "these tests need the PostgreSQL under test to have ssl = on (Debian's default)");
    let file: String = admin.query_one("SHOW ssl_cert_file", &[]).await.unwrap().get(0);
    let path = PathBuf::from(file);
    assert!(std::fs::read(&path).is_ok(), "the server's certificate {} is not readable by the tests", path.display());
    path
}

/// The `openssl` command-line tool, which the tests use to read and make certificates.
fn openssl(args: &[&str]) -> String {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("these tests need the openssl command-line tool: {e}"));
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The DNS names and IP addresses of a certificate's subjectAltName.
fn certificate_names(path: &Path) -> Vec<String> {
    let text = openssl(&["x509", "-noout", "-ext", "subjectAltName", "-in", path.to_str().unwrap()]);
    text.lines()
        .skip(1)
        .flat_map(|line| line.split(','))
        .filter_map(|entry| {
            let entry = entry.trim();
            entry.strip_prefix("DNS:").or_else(|| entry.strip_prefix("IP Address:")).map(str::to_string)
        })
        .collect()
}

/// A fresh self-signed CA certificate and its key in `dir`: a root that signed nothing the
/// server has.
fn throwaway_certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        &format!("/CN={name}"),
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]);
    (cert, key)
}

fn needs_postgres() -> bool {
    test_store() == TestStore::Postgres
}

// What the URL says, checked without connecting (both passes).

#[test]
fn the_tls_parameters_are_taken_out_of_the_url_and_everything_else_is_kept_as_written() {
    let url = "postgres://app:p%40ss@db.example:6432/consents?application_name=a%20b&sslmode=verify-ca\
               &sslrootcert=%2Fetc%2Fca%20dir%2Froot.pem&connect_timeout=3&sslcert=/c.pem&sslkey=/k.pem";
    let (rest, params) = tls::split_url(url).unwrap();
    assert_eq!(rest, "postgres://app:p%40ss@db.example:6432/consents?application_name=a%20b&connect_timeout=3");
    assert_eq!(params.mode, Some(SslMode::VerifyCa));
    assert_eq!(params.root_cert, Some(RootCert::File("/etc/ca dir/root.pem".into())));
    assert_eq!(params.client_cert, Some("/c.pem".into()));
    assert_eq!(params.client_key, Some("/k.pem".into()));

    // A '?' in the credentials is not the query, as for the driver.
    let (rest, params) = tls::split_url("postgresql://app:p?w@db/consents?sslmode=disable").unwrap();
    assert_eq!(rest, "postgresql://app:p?w@db/consents");
    assert_eq!(params.effective_mode(), SslMode::Disable);

    let (rest, params) = tls::split_url("postgres://db/consents").unwrap();
    assert_eq!(rest, "postgres://db/consents");
    assert_eq!(params.effective_mode(), SslMode::Prefer, "libpq's default");
    assert_eq!(tls::split_url("postgres://db/c?sslrootcert=system").unwrap().1.effective_mode(), SslMode::VerifyFull);

    // The driver never sees what it would reject, and messages still show where the database is.
    let verify_full = "postgres://app:secret@db.example:6432/consents?sslmode=verify-full&sslrootcert=/x.pem";
    let config = connection_config(verify_full, &PostgresOptions::default()).expect("the driver's part parses");
    assert_eq!(config.get_dbname(), Some("consents"));
    assert_eq!(DatabaseLocation::Postgres(verify_full.into()).to_string(), "postgres://db.example:6432/consents");
}

#[test]
fn an_unknown_sslmode_is_refused_naming_sslmode_and_the_value() {
    for mode in ["verify-fully", "on", ""] {
        let url = format!("postgres://app:hunter2@127.0.0.1:5432/db?sslmode={mode}");
        let err = refusal(&url);
        assert!(err.contains(&format!("invalid sslmode \"{mode}\"")), "{err}");
        assert!(err.contains("verify-full"), "the message lists the valid modes: {err}");
        assert!(!err.contains("hunter2"), "the password is never shown: {err}");
    }
}

#[test]
fn a_missing_or_unusable_sslrootcert_is_refused_naming_its_path() {
    let dir = TempDir::new().unwrap();
    let missing = dir.path().join("no-such-root.pem");
    let url = format!("postgres://app:hunter2@db/c?sslmode=verify-ca&sslrootcert={}", missing.display());
    let err = refusal(&url);
    assert!(err.contains(&format!("sslrootcert {}: cannot read it", missing.display())), "{err}");
    assert!(!err.contains("hunter2"), "{err}");

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "this is not a certificate\n").unwrap();
    let url = format!("postgres://db/c?sslmode=require&sslrootcert={}", garbage.display());
    let err = refusal(&url);
    assert!(err.contains(&format!("sslrootcert {}: no certificate in it", garbage.display())), "{err}");

    let err = refusal("postgres://db/c?sslmode=verify-full");
    assert!(err.contains("sslmode=verify-full needs sslrootcert"), "{err}");
}

#[test]
fn a_tls_parameter_of_libpq_that_is_not_supported_is_refused_by_name_rather_than_ignored() {
    let err = refusal("postgres://db/c?sslmode=verify-full&sslcrl=/crl.pem");
    assert!(err.contains("unknown option `sslcrl`"), "{err}");
}

#[test]
fn sslrootcert_system_refuses_a_mode_weaker_than_verify_full_as_libpq_does() {
    let err = refusal("postgres://db/c?sslrootcert=system&sslmode=require");
    assert!(err.contains("sslmode=require cannot be used with sslrootcert=system"), "{err}");
}

#[test]
fn a_client_certificate_needs_its_key_and_a_key_that_is_not_one_is_refused_naming_it() {
    let dir = TempDir::new().unwrap();
    let (cert, key) = throwaway_certificate(dir.path(), "client");
    let url = format!("postgres://db/c?sslmode=require&sslcert={}&sslkey={}", cert.display(), key.display());
    let (_, connector) = connection_settings(&url, &PostgresOptions::default()).expect("a matching pair loads");
    assert_eq!(connector.mode(), SslMode::Require);

    let only_cert = format!("postgres://db/c?sslcert={}", cert.display());
    let err = refusal(&only_cert);
    assert!(err.contains("sslcert is given without sslkey"), "{err}");

    // The certificate's file holds no key.
    let url = format!("postgres://db/c?sslcert={}&sslkey={}", cert.display(), cert.display());
    let err = refusal(&url);
    assert!(err.contains(&format!("sslkey {}:", cert.display())), "{err}");

    // A key that belongs to another certificate.
    let (_, other_key) = throwaway_certificate(dir.path(), "other");
    let url = format!("postgres://db/c?sslcert={}&sslkey={}", cert.display(), other_key.display());
    let err = refusal(&url);
    assert!(err.contains(&format!("sslkey {} does not go with sslcert", other_key.display())), "{err}");
}

// Real connections (PostgreSQL pass).

#[tokio::test]
async fn each_sslmode_encrypts_exactly_when_libpq_would_against_a_server_with_tls() {
    if !needs_postgres() {
        return; // needs PostgreSQL: runs in the suite's PostgreSQL pass
    }
    server_certificate().await;
    let database = TestDatabase::create();
    for (params, expected) in [
        ("sslmode=disable", false),
        ("sslmode=allow", false),
        ("sslmode=prefer", true),
        ("application_name=default_is_prefer", true),
        ("sslmode=require", true),
    ] {
        let url = with_params(&database.url, params);
        assert_eq!(encrypted(&url).await, Ok(expected), "{params}");
    }
}

#[tokio::test]
async fn verify_ca_with_the_servers_certificate_as_root_connects_and_with_another_root_fails_clearly() {
    if !needs_postgres() {
        return; // needs PostgreSQL: runs in the suite's PostgreSQL pass
    }
    let root = server_certificate().await;
    let database = TestDatabase::create();
    let good = with_params(&database.url, &format!("sslmode=verify-ca&sslrootcert={}", root.display()));
    assert_eq!(encrypted(&good).await, Ok(true), "verify-ca does not check the host name (127.0.0.1 here)");

    let dir = TempDir::new().unwrap();
    let (wrong, _) = throwaway_certificate(dir.path(), "wrong-root");
    for mode in ["verify-ca", "verify-full", "require"] {
        let url = with_params(&database.url, &format!("sslmode={mode}&sslrootcert={}", wrong.display()));
        let err = encrypted(&url).await.expect_err("a root that did not sign the server's certificate");
        assert!(
            err.contains("error performing TLS handshake: invalid peer certificate: UnknownIssuer"),
            "{mode}: {err}"
        );
    }
}

#[tokio::test]
async fn verify_full_checks_the_host_name_against_the_certificate() {
    if !needs_postgres() {
        return; // needs PostgreSQL: runs in the suite's PostgreSQL pass
    }
    let root = server_certificate().await;
    let names = certificate_names(&root);
    let database = TestDatabase::create();
    let verify_full = format!("sslmode=verify-full&sslrootcert={}", root.display());

    assert!(!names.iter().any(|n| n == "127.0.0.1"), "the test expects a certificate without the IP address");
    let by_address = with_params(&with_host(&database.url, "127.0.0.1"), &verify_full);
    let err = encrypted(&by_address).await.expect_err("127.0.0.1 is not a name of the certificate");
    assert!(err.contains("certificate not valid for name \"127.0.0.1\""), "{err}");

    // The certificate's own name, reached at 127.0.0.1 (libpq's hostaddr: the name is checked,
    // the address is dialled).
    let name = names.iter().find(|n| n.parse::<std::net::IpAddr>().is_err()).expect("the certificate has a DNS name");
    let by_name = with_params(&with_host(&database.url, name), &format!("hostaddr=127.0.0.1&{verify_full}"));
    assert_eq!(encrypted(&by_name).await, Ok(true), "{name} is a name of the certificate");
}

#[tokio::test]
async fn prefer_falls_back_to_a_plain_connection_when_the_certificate_fails_verification_as_libpq_does() {
    if !needs_postgres() {
        return; // needs PostgreSQL: runs in the suite's PostgreSQL pass
    }
    server_certificate().await;
    let database = TestDatabase::create();
    let dir = TempDir::new().unwrap();
    let (wrong, _) = throwaway_certificate(dir.path(), "wrong-root");
    let url = with_params(&database.url, &format!("sslmode=prefer&sslrootcert={}", wrong.display()));
    assert_eq!(encrypted(&url).await, Ok(false));
}

/// The server's own connections to its database: (encrypted, all), once it has served a read.
async fn server_backends(params: &str) -> (i64, i64) {
    let mut database_name = String::new();
    let app = spawn_app_on(TestStore::Postgres, |settings| {
        let DatabaseLocation::Postgres(url) = &settings.database else { unreachable!("a PostgreSQL store") };
        database_name = url.rsplit('/').next().unwrap().to_string();
        settings.database = DatabaseLocation::Postgres(with_params(url, params));
    })
    .await;
    // A read through the pool, which keeps its connection open afterwards.
    app.store.read_profiles(app.workspace, &[&ExternalId::parse("someone").unwrap()]).await.expect("the read works");
    let row = admin()
        .await
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.datname = $1",
            &[&database_name],
        )
        .await
        .unwrap();
    let _stopped = app.shutdown().await;
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn a_server_started_with_sslmode_require_talks_to_postgresql_only_over_tls() {
    if !needs_postgres() {
        return; // needs PostgreSQL: runs in the suite's PostgreSQL pass
    }
    server_certificate().await;
    let (encrypted, all) = server_backends("sslmode=require").await;
    assert!(all >= 1, "the pool keeps a connection");
    assert_eq!(encrypted, all);
}

#[tokio::test]
async fn a_server_started_with_sslmode_disable_talks_to_postgresql_in_the_clear() {
    if !needs_postgres() {
        return; // needs PostgreSQL: runs in the suite's PostgreSQL pass
    }
    server_certificate().await;
    let (encrypted, all) = server_backends("sslmode=disable").await;
    assert!(all >= 1, "the pool keeps a connection");
    assert_eq!(encrypted, 0);
}

#[tokio::test]
async fn the_server_refuses_to_start_when_verify_full_does_not_match_the_host_and_says_why() {
    if !needs_postgres() {
        return; // needs PostgreSQL: runs in the suite's PostgreSQL pass
    }
    let root = server_certificate().await;
    let database = TestDatabase::create();
    let url = with_params(
        &with_host(&database.url, "127.0.0.1"),
        &format!("sslmode=verify-full&sslrootcert={}", root.display()),
    );
    let output = Command::new(env!("CARGO_BIN_EXE_consentry"))
        .env_remove("CONSENTRY_DATABASE_URL")
        .env_remove("CONSENTRY_LISTEN")
        .env("NO_COLOR", "1")
        .args(["--database", &url, "serve", "--listen", "127.0.0.1:0"])
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let port = reqwest::Url::parse(&database.url).unwrap().port().unwrap_or(5432);
    assert!(
        stderr.contains(&format!(
            "cannot connect to PostgreSQL at 127.0.0.1:{port}/{}: error performing TLS handshake: invalid peer \
             certificate: certificate not valid for name \"127.0.0.1\"",
            database.name
        )),
        "{stderr}"
    );
}

// libpq's name rules where webpki is stricter, against a TLS stand-in (both passes).

/// A stand-in for a PostgreSQL server with TLS on 127.0.0.1: for each of `connections`
/// clients, answers the SSLRequest with 'S', does the TLS handshake with `cert` and `key`, says
/// whether the handshake completed (the client accepted the certificate) and hangs up.
fn tls_stand_in(cert: &Path, key: &Path, connections: usize) -> (u16, std::sync::mpsc::Receiver<bool>) {
    use std::io::{Read, Write};

    let config = stand_in_config(cert, key);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (handshakes, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for _ in 0..connections {
            let (mut socket, _) = listener.accept().unwrap();
            socket.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
            let mut ssl_request = [0u8; 8];
            socket.read_exact(&mut ssl_request).unwrap();
            assert_eq!(ssl_request, [0, 0, 0, 8, 4, 210, 22, 47], "the client asks for TLS first");
            socket.write_all(b"S").unwrap();
            let mut tls = rustls::ServerConnection::new(std::sync::Arc::clone(&config)).unwrap();
            let mut completed = true;
            while tls.is_handshaking() {
                if tls.complete_io(&mut socket).is_err() {
                    completed = false;
                    break;
                }
            }
            let _ = handshakes.send(completed);
        }
    });
    (port, receiver)
}

/// Connects to a stand-in with `url` and says whether the client accepted its certificate; a
/// refusal must be the certificate's name.
async fn accepts(url: &str, handshakes: &std::sync::mpsc::Receiver<bool>) -> bool {
    let err = encrypted(url).await.expect_err("the stand-in hangs up after the handshake");
    let completed = handshakes.recv_timeout(std::time::Duration::from_secs(10)).expect("the stand-in was reached");
    if !completed {
        assert!(err.contains("invalid peer certificate: certificate not valid for name"), "{url}: {err}");
    }
    completed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_accepts_a_self_signed_certificate_named_only_by_its_common_name_as_libpq_does() {
    let dir = TempDir::new().unwrap();
    // Made as PostgreSQL's documentation makes a server certificate: self-signed, marked as a CA,
    // named by its Common Name only.
    let (cert, key) = throwaway_certificate(dir.path(), "db.consentry.test");
    assert!(certificate_names(&cert).is_empty(), "no subjectAltName");
    let constraints = openssl(&["x509", "-noout", "-ext", "basicConstraints", "-in", cert.to_str().unwrap()]);
    assert!(constraints.contains("CA:TRUE"), "{constraints}");
    let (port, handshakes) = tls_stand_in(&cert, &key, 4);
    let url = |host: &str, mode: &str| {
        format!("postgres://app@{host}:{port}/db?hostaddr=127.0.0.1&sslmode={mode}&sslrootcert={}", cert.display())
    };
    assert!(accepts(&url("db.consentry.test", "verify-full"), &handshakes).await);
    assert!(accepts(&url("DB.Consentry.Test", "verify-full"), &handshakes).await, "names ignore case");
    assert!(!accepts(&url("other.consentry.test", "verify-full"), &handshakes).await);
    assert!(accepts(&url("other.consentry.test", "verify-ca"), &handshakes).await, "verify-ca ignores the name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_common_name_stands_for_one_label_and_an_address_may_be_the_common_name() {
    let dir = TempDir::new().unwrap();
    let (wildcard, key) = throwaway_certificate(dir.path(), "*.consentry.test");
    let (port, handshakes) = tls_stand_in(&wildcard, &key, 3);
    let url = |host: &str| {
        format!(
            "postgres://app@{host}:{port}/db?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={}",
            wildcard.display()
        )
    };
    assert!(accepts(&url("db.consentry.test"), &handshakes).await);
    assert!(!accepts(&url("a.db.consentry.test"), &handshakes).await, "the * is one label");
    assert!(!accepts(&url("consentry.test"), &handshakes).await);

    let (address, key) = throwaway_certificate(dir.path(), "127.0.0.1");
    let (port, handshakes) = tls_stand_in(&address, &key, 1);
    let url = format!("postgres://app@127.0.0.1:{port}/db?sslmode=verify-full&sslrootcert={}", address.display());
    assert!(accepts(&url, &handshakes).await);
}

#[test]
fn sslrootcert_system_verifies_against_the_platform_bundle_or_ssl_cert_file() {
    if !needs_postgres() {
        return; // needs PostgreSQL: runs in the suite's PostgreSQL pass
    }
    let root = tokio::runtime::Runtime::new().unwrap().block_on(server_certificate());
    let name = certificate_names(&root)
        .into_iter()
        .find(|n| n.parse::<std::net::IpAddr>().is_err())
        .expect("the certificate has a DNS name");
    let database = TestDatabase::create();
    // verify-full is implied: the certificate's name is checked, at 127.0.0.1.
    let url = with_params(&with_host(&database.url, &name), "hostaddr=127.0.0.1&sslrootcert=system");
    // The platform's bundle is what OpenSSL's SSL_CERT_FILE and SSL_CERT_DIR name, else its
    // default locations; the test names it, since a machine's own directory may well trust
    // PostgreSQL's certificate (Debian links its snakeoil certificate into /etc/ssl/certs).
    let migrate = |cert_file: &Path| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_consentry"));
        command.env_remove("CONSENTRY_DATABASE_URL").env_remove("SSL_CERT_DIR").env("SSL_CERT_FILE", cert_file);
        command.args(["--database", &url, "migrate"]).output().expect("the binary runs")
    };
    // A bundle without the machine's self-signed certificate.
    let dir = tempfile::tempdir().unwrap();
    let (other_root, _) = throwaway_certificate(dir.path(), "another-ca");
    let refused = migrate(&other_root);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("invalid peer certificate: UnknownIssuer"), "{stderr}");
    // SSL_CERT_FILE names the bundle, as for OpenSSL.
    let trusted = migrate(&root);
    assert!(trusted.status.success(), "{}", String::from_utf8_lossy(&trusted.stderr));
    assert!(String::from_utf8_lossy(&trusted.stdout).contains("applied migrations 1"), "{trusted:?}");
}

/// A stand-in for a PostgreSQL server that refuses every connection once it has its startup
/// message, saying whether it came over TLS ("refused over TLS") or not ("refused in the
/// clear"); it reports "tls" or "plain" for each connection, in order.
fn refusing_stand_in(cert: &Path, key: &Path) -> (u16, std::sync::mpsc::Receiver<&'static str>) {
    use std::io::{Read, Write};

    fn refuse(stream: &mut impl Write, message: &str) {
        let mut body = Vec::new();
        for (field, value) in [(b'S', "FATAL"), (b'V', "FATAL"), (b'C', "28000"), (b'M', message)] {
            body.push(field);
            body.extend_from_slice(value.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut error_response = vec![b'E'];
        error_response.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        error_response.extend_from_slice(&body);
        stream.write_all(&error_response).unwrap();
        stream.flush().unwrap();
    }

    let config = stand_in_config(cert, key);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (reports, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for socket in listener.incoming() {
            let mut socket = socket.unwrap();
            socket.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
            let mut head = [0u8; 8];
            socket.read_exact(&mut head).unwrap();
            if head == [0, 0, 0, 8, 4, 210, 22, 47] {
                socket.write_all(b"S").unwrap();
                let connection = rustls::ServerConnection::new(std::sync::Arc::clone(&config)).unwrap();
                let mut tls = rustls::StreamOwned::new(connection, socket);
                let mut length = [0u8; 4];
                tls.read_exact(&mut length).unwrap();
                let mut rest = vec![0u8; u32::from_be_bytes(length) as usize - 4];
                tls.read_exact(&mut rest).unwrap();
                refuse(&mut tls, "refused over TLS");
                tls.conn.send_close_notify();
                let _ = tls.flush();
                let _ = reports.send("tls");
            } else {
                let length = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
                let mut rest = vec![0u8; length - 8];
                socket.read_exact(&mut rest).unwrap();
                refuse(&mut socket, "refused in the clear");
                let _ = reports.send("plain");
            }
        }
    });
    (port, receiver)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_and_prefer_make_libpqs_second_attempt_when_the_server_refuses_the_first() {
    let dir = TempDir::new().unwrap();
    let (cert, key) = throwaway_certificate(dir.path(), "db.consentry.test");
    for (mode, attempts, last_refusal) in [
        ("disable", vec!["plain"], "refused in the clear"),
        ("allow", vec!["plain", "tls"], "refused over TLS"),
        ("prefer", vec!["tls", "plain"], "refused in the clear"),
        ("require", vec!["tls"], "refused over TLS"),
    ] {
        let (port, reports) = refusing_stand_in(&cert, &key);
        let url = format!("postgres://app@127.0.0.1:{port}/db?sslmode={mode}");
        let err = encrypted(&url).await.expect_err("the stand-in refuses every connection");
        assert!(err.contains(last_refusal), "{mode}: {err}");
        // Every expected attempt, then a moment to be sure no further one comes.
        let mut seen = Vec::new();
        loop {
            let wait = if seen.len() < attempts.len() { 5000 } else { 300 };
            match reports.recv_timeout(std::time::Duration::from_millis(wait)) {
                Ok(report) => seen.push(report),
                Err(_) => break,
            }
        }
        assert_eq!(seen, attempts, "{mode}");
    }
}

/// Why `connection_settings` refuses `url` (the test fails if it accepts it).
fn refusal(url: &str) -> String {
    match connection_settings(url, &PostgresOptions::default()) {
        Ok(_) => panic!("{url} was accepted"),
        Err(err) => err.to_string(),
    }
}

/// A TLS server configuration presenting the PEM certificate chain `cert` with its key `key`.
fn stand_in_config(cert: &Path, key: &Path) -> std::sync::Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let chain = CertificateDer::pem_file_iter(cert).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    std::sync::Arc::new(
        rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
    )
}
