//! What a newcomer meets on the first runs of the real binary: a first start that cannot listen
//! creates nothing it cannot announce, and a clean shutdown leaves no stale admin socket.

use std::process::Stdio;

use uuid::Uuid;

use crate::admin_cli::{bootstrap_key, consentry, first_start_key, stderr, Server};
use crate::helpers::{embedded_only, StoreLocation};

#[test]
fn a_first_start_that_cannot_listen_creates_no_key_and_the_next_start_prints_it() {
    let dir = StoreLocation::new();
    // The port is held for the whole failed start, so that nothing else can take it meanwhile.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = taken.local_addr().unwrap().to_string();

    let output = consentry()
        .arg("--database")
        .arg(dir.path())
        .args(["serve", "--listen", &addr])
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs");

    assert!(!output.status.success(), "a start on a taken port fails");
    let err = stderr(&output);
    assert!(err.contains(&format!("cannot listen on {addr}")), "the failure names the address: {err}");
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(!out.contains("API key"), "the failed start prints no key: {out:?}");
    drop(taken);

    let key = first_start_key(dir.path());
    Uuid::parse_str(&key).expect("the start that can listen creates and prints the bootstrap key");
}

#[test]
fn sigterm_removes_the_admin_socket_and_the_next_start_works() {
    if !embedded_only() {
        return; // the admin socket belongs to the embedded store's data directory
    }
    let dir = StoreLocation::new();
    let socket = dir.path().join(consentry::admin::socket::SOCKET_FILE);

    let mut server = Server::start(dir.path());
    assert!(socket.exists(), "a running server has its admin socket");
    let (status, out, err) = server.stop_with("TERM");

    assert_eq!(status.code(), Some(0), "{err}");
    assert!(bootstrap_key(&out).is_some(), "the first start printed its key: {out:?}");
    assert!(!socket.exists(), "no stale {} after a clean shutdown", socket.display());
    let mut again = Server::start(dir.path());
    assert!(socket.exists(), "the next start binds the socket again");
    let (status, _, err) = again.stop_with("TERM");
    assert!(status.success(), "{err}");
    assert!(!socket.exists());
}
