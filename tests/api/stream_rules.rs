//! The change stream's pure rules (issue 11), through the library's public functions: which
//! addresses a destination may resolve to, how a refused `currents` batch splits, and what a
//! `--stream` URL is.

use std::net::IpAddr;

use consentry::domain::ids::ChangeId;
use consentry::domain::time::Timestamp;
use consentry::stream::destination::{host_and_port, refused_addresses, Message};
use consentry::stream::nats;
use uuid::Uuid;

#[test]
fn a_host_with_any_refused_address_is_refused_and_named() {
    let public: IpAddr = "93.184.216.34".parse().unwrap();
    let metadata: IpAddr = "169.254.169.254".parse().unwrap();
    assert_eq!(refused_addresses("hooks.example.com", &[public], false), None);
    let why = refused_addresses("evil.example.com", &[public, metadata], false).unwrap();
    assert!(why.contains("\"evil.example.com\"") && why.contains("169.254.169.254"), "{why}");
    assert_eq!(refused_addresses("evil.example.com", &[metadata], true), None);
    assert!(refused_addresses("nowhere.example", &[], true).unwrap().contains("no address"));
    for refused in ["224.0.0.1", "ff02::1", "::", "fc00::1", "fd00:ec2::254", "100.100.0.1", "0.0.0.0"] {
        let ip: IpAddr = refused.parse().unwrap();
        assert!(refused_addresses("h", &[ip], false).is_some(), "{refused} is refused");
    }
    assert_eq!(host_and_port("https://[fd00:ec2::254]/x"), Some(("fd00:ec2::254".into(), 443)));
    assert_eq!(host_and_port("http://hooks.example.com:8080/x"), Some(("hooks.example.com".into(), 8080)));
}

#[test]
fn a_split_gives_one_message_per_event_with_its_own_bytes_and_id() {
    let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let body = format!(r#"{{"events":[{{"id":"{a}","x":{{"k":1}}}},{{"id":"{b}","x":2}}]}}"#);
    let mut message = Message::new(vec![ChangeId(a), ChangeId(b)], body, Timestamp(5));
    let parts = message.split(Timestamp(9)).unwrap();
    assert_eq!(parts[0].body, format!(r#"{{"events":[{{"id":"{a}","x":{{"k":1}}}}]}}"#));
    assert_eq!((parts[1].id.as_str(), parts[1].next_at), (b.to_string().as_str(), Timestamp(9)));
    assert_eq!(message.split(Timestamp(9)), Some(parts.clone()), "the same split gives the same messages");
    assert_eq!(parts[0].split(Timestamp(9)), None, "a single event does not split");
    message.then = parts.clone();
    let first = message.next(Timestamp(10)).unwrap();
    assert_eq!((first.id.clone(), first.then.len(), first.next_at), (parts[0].id.clone(), 1, Timestamp(10)));
}

#[test]
fn a_stream_url_is_nats_host_and_port() {
    assert_eq!(nats::parse_url("nats://127.0.0.1:4222"), Ok("127.0.0.1:4222".into()));
    assert_eq!(nats::parse_url("nats://nats.internal"), Ok("nats.internal:4222".into()));
    assert_eq!(nats::parse_url("nats://[::1]:4223/"), Ok("[::1]:4223".into()));
    assert!(nats::parse_url("http://127.0.0.1:4222").is_err());
    assert!(nats::parse_url("nats://user:pw@host:4222").is_err());
    assert!(nats::parse_url("nats://host:port").is_err());
    assert_eq!(nats::subject("w", "users.UserDeleteRequest"), "consentry.w.users.UserDeleteRequest");
}
