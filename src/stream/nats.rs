//! NATS JetStream (`serve --stream nats://host:port`): a small client of NATS's text protocol
//! over tokio, enough to publish with acknowledgements.
//!
//! Why not the `async-nats` crate: version 0.42 adds 35 crates to the service's dependencies
//! (264 to 299 in `cargo tree -e normal`: nkeys with ed25519 and curve25519, futures,
//! websockets, webpki roots, rand, time…) for the three things the stream needs: `HPUB` with
//! a reply inbox, reading the reply, and the JetStream JSON API
//! (`$JS.API.STREAM.INFO|CREATE.<name>`). No TLS or authentication to NATS yet: a
//! `nats://` URL without credentials, on a trusted network. Each publish waits for
//! JetStream's acknowledgement, so a message counts as delivered only once the stream has
//! stored it; `Nats-Msg-Id` (the event id) and the stream's duplicate window make a resend
//! after a lost acknowledgement harmless.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// The JetStream stream Consentry publishes to, created when absent.
pub const STREAM: &str = "CONSENTRY";
/// The subjects of [`STREAM`]: `consentry.<workspace id>.<event_type>`.
pub const SUBJECTS: &str = "consentry.>";
/// How long JetStream remembers a `Nats-Msg-Id`: longer than any wait between two sends of
/// one event by the relay, so that a resend is never stored twice.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(3600);
/// The longest a connection, a request or its reply may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The largest message read from the server.
const MAX_READ: usize = 8 << 20;

/// The subject of an event: `consentry.<workspace id>.<event_type>`.
pub fn subject(workspace: &str, event_type: &str) -> String {
    format!("consentry.{workspace}.{event_type}")
}

/// Checks a `--stream` URL: `nats://host[:port]`; the address to connect to.
pub fn parse_url(raw: &str) -> Result<String, String> {
    let rest = raw.strip_prefix("nats://").ok_or_else(|| format!("--stream: a nats://host:port URL, not {raw:?}"))?;
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains(['/', '@', '?']) {
        return Err(format!("--stream: a nats://host:port URL, without a path or credentials, not {raw:?}"));
    }
    let has_port = match rest.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') && !port.contains(']') => {
            port.parse::<u16>().map_err(|_| format!("--stream: not a port in {raw:?}"))?;
            true
        }
        _ => false,
    };
    Ok(if has_port { rest.to_string() } else { format!("{rest}:4222") })
}

/// `serve --stream`'s value parser: the URL itself, once [`parse_url`] accepts it.
pub fn check_url(raw: &str) -> Result<String, String> {
    parse_url(raw).map(|_| raw.to_string())
}

/// One connection to a NATS server.
pub struct Connection {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    inbox: String,
    next: u64,
}

impl Connection {
    /// Connects to `url` (`nats://host:port`), with headers and no-responders on, and
    /// subscribes to a reply inbox of its own.
    pub async fn connect(url: &str) -> Result<Connection, String> {
        let address = parse_url(url)?;
        let tcp = tokio::time::timeout(TIMEOUT, TcpStream::connect(&address))
            .await
            .map_err(|_| format!("NATS at {address}: no connection within {} s", TIMEOUT.as_secs()))?
            .map_err(|e| format!("NATS at {address}: cannot connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let (read, writer) = tcp.into_split();
        let inbox = format!("_INBOX.{}", uuid::Uuid::new_v4().simple());
        let mut connection = Connection { reader: BufReader::new(read), writer, inbox, next: 0 };
        tokio::time::timeout(TIMEOUT, connection.handshake())
            .await
            .map_err(|_| format!("NATS at {address}: no handshake within {} s", TIMEOUT.as_secs()))??;
        Ok(connection)
    }

    async fn handshake(&mut self) -> Result<(), String> {
        let info = self.line().await?;
        if !info.starts_with("INFO ") {
            return Err(format!("NATS: expected INFO, got {:?}", truncate(&info)));
        }
        let connect = serde_json::json!({
            "verbose": false, "pedantic": false, "headers": true, "no_responders": true,
            "name": "consentry", "lang": "rust", "version": env!("CARGO_PKG_VERSION"), "protocol": 1,
        });
        let hello = format!("CONNECT {connect}\r\nSUB {}.* 1\r\nPING\r\n", self.inbox);
        self.send(hello.as_bytes()).await?;
        loop {
            let line = self.line().await?;
            match line.as_str() {
                "PONG" => return Ok(()),
                "PING" => self.send(b"PONG\r\n").await?,
                l if l.starts_with("-ERR") => return Err(format!("NATS refused the connection: {l}")),
                _ => {}
            }
        }
    }

    /// Makes sure the stream [`STREAM`] exists (over [`SUBJECTS`], with [`DUPLICATE_WINDOW`]),
    /// creating it when absent.
    pub async fn ensure_stream(&mut self) -> Result<(), String> {
        let info = self.request(&format!("$JS.API.STREAM.INFO.{STREAM}"), None, b"").await?;
        let info: serde_json::Value = json(&info)?;
        match info["error"]["code"].as_u64() {
            None => return Ok(()),
            Some(404) => {}
            Some(_) => return Err(format!("JetStream: {}", info["error"])),
        }
        let config = serde_json::json!({
            "name": STREAM, "subjects": [SUBJECTS], "storage": "file", "retention": "limits",
            "duplicate_window": DUPLICATE_WINDOW.as_nanos() as u64,
        });
        let created =
            self.request(&format!("$JS.API.STREAM.CREATE.{STREAM}"), None, config.to_string().as_bytes()).await?;
        let created: serde_json::Value = json(&created)?;
        match created.get("error") {
            // Another node created it meanwhile.
            Some(error) if error["err_code"].as_u64() == Some(10058) => Ok(()),
            Some(error) => Err(format!("JetStream cannot create the stream {STREAM}: {error}")),
            None => Ok(()),
        }
    }

    /// Publishes `payload` to `subject` with `Nats-Msg-Id: msg_id` and waits for JetStream's
    /// acknowledgement; whether the stream already had that id (a resend).
    pub async fn publish(&mut self, subject: &str, msg_id: &str, payload: &[u8]) -> Result<bool, String> {
        let ack = self.request(subject, Some(msg_id), payload).await?;
        let ack: serde_json::Value = json(&ack)?;
        if let Some(error) = ack.get("error") {
            return Err(format!("JetStream refused the event: {error}"));
        }
        if ack.get("seq").is_none() {
            return Err(format!("JetStream answered no sequence: {}", truncate(&ack.to_string())));
        }
        Ok(ack["duplicate"].as_bool().unwrap_or(false))
    }

    /// A request and its reply's payload, within [`TIMEOUT`].
    pub async fn request(&mut self, subject: &str, msg_id: Option<&str>, payload: &[u8]) -> Result<Vec<u8>, String> {
        self.next += 1;
        let reply = format!("{}.{}", self.inbox, self.next);
        let mut out = Vec::with_capacity(payload.len() + 128);
        match msg_id {
            Some(id) => {
                let headers = format!("NATS/1.0\r\nNats-Msg-Id: {id}\r\n\r\n");
                out.extend_from_slice(
                    format!("HPUB {subject} {reply} {} {}\r\n", headers.len(), headers.len() + payload.len())
                        .as_bytes(),
                );
                out.extend_from_slice(headers.as_bytes());
            }
            None => out.extend_from_slice(format!("PUB {subject} {reply} {}\r\n", payload.len()).as_bytes()),
        }
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\n");
        tokio::time::timeout(TIMEOUT, async {
            self.send(&out).await?;
            self.reply(&reply).await
        })
        .await
        .map_err(|_| format!("NATS: no reply on {subject} within {} s", TIMEOUT.as_secs()))?
    }

    /// Reads until the message on `reply`, answering the server's pings; earlier replies (of
    /// requests that timed out) are skipped.
    async fn reply(&mut self, reply: &str) -> Result<Vec<u8>, String> {
        loop {
            let line = self.line().await?;
            let mut words = line.split(' ');
            match words.next() {
                Some("PING") => self.send(b"PONG\r\n").await?,
                Some("-ERR") => return Err(format!("NATS: {line}")),
                Some(kind @ ("MSG" | "HMSG")) => {
                    let words: Vec<&str> = words.collect();
                    let sizes: Vec<usize> = words
                        .iter()
                        .rev()
                        .take(if kind == "MSG" { 1 } else { 2 })
                        .map(|w| w.parse().map_err(|_| format!("NATS: a bad message line: {}", truncate(&line))))
                        .collect::<Result<_, _>>()?;
                    let (total, headers) = (sizes[0], sizes.get(1).copied().unwrap_or(0));
                    if total > MAX_READ || headers > total {
                        return Err("NATS: a message too large".into());
                    }
                    let mut body = vec![0; total + 2];
                    self.reader.read_exact(&mut body).await.map_err(|e| format!("NATS: read failed: {e}"))?;
                    body.truncate(total);
                    if words.first() != Some(&reply) {
                        continue;
                    }
                    let (head, payload) = body.split_at(headers);
                    // No stream takes the subject: the server says so in a 503 status header.
                    if String::from_utf8_lossy(head).starts_with("NATS/1.0 503") {
                        return Err("NATS: no responders (is JetStream enabled, and the stream there?)".into());
                    }
                    return Ok(payload.to_vec());
                }
                _ => {}
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.writer.write_all(bytes).await.map_err(|e| format!("NATS: write failed: {e}"))?;
        self.writer.flush().await.map_err(|e| format!("NATS: write failed: {e}"))
    }

    async fn line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        let n = (&mut self.reader)
            .take(64 * 1024)
            .read_line(&mut line)
            .await
            .map_err(|e| format!("NATS: read failed: {e}"))?;
        if n == 0 {
            return Err("NATS: the server closed the connection".into());
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }
}

fn json(bytes: &[u8]) -> Result<serde_json::Value, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("NATS: a reply that is not JSON ({e})"))
}

fn truncate(text: &str) -> &str {
    &text[..text.char_indices().nth(200).map_or(text.len(), |(i, _)| i)]
}
