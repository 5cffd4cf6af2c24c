//! One HTTP POST to a destination: resolved and checked address by address (so that a name
//! that resolves to a private address is refused at send time, DNS rebinding included), TLS
//! by rustls with the platform's roots, HTTP/1.1 by hyper, no redirect followed, 15 seconds at
//! most for the whole exchange.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, Request, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use super::destination::{allowed_address, refused_addresses};

/// The longest an attempt may take, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// Why an attempt got no HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Every address of the host is one events may not go to.
    Refused(String),
    /// DNS, connection, TLS or HTTP failed, or the attempt timed out: retried.
    Network(String),
}

/// An HTTP answer: its status and its `retry-after` in seconds, if it had one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// `retry-after`, in seconds.
    pub retry_after: Option<u64>,
}

/// Sends POSTs; one per destination attempt, each on its own connection.
#[derive(Clone)]
pub struct Sender {
    allow_private: bool,
    tls: Arc<rustls::ClientConfig>,
}

impl Sender {
    /// A sender; `allow_private` lifts the address check (`serve --allow-private-webhooks`).
    pub fn new(allow_private: bool) -> Sender {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Sender { allow_private, tls: Arc::new(tls) }
    }

    /// POSTs `body` to `url` with `headers`, within [`TIMEOUT`].
    pub async fn post(&self, url: &str, headers: &[(&str, String)], body: Vec<u8>) -> Result<Answer, SendError> {
        match tokio::time::timeout(TIMEOUT, self.exchange(url, headers, body)).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Network(format!("no answer within {} s", TIMEOUT.as_secs()))),
        }
    }

    async fn exchange(&self, url: &str, headers: &[(&str, String)], body: Vec<u8>) -> Result<Answer, SendError> {
        let uri: Uri = url.parse().map_err(|_| SendError::Refused("the URL does not parse".into()))?;
        let https = uri.scheme_str() == Some("https");
        let host = uri.host().ok_or_else(|| SendError::Refused("the URL has no host".into()))?.to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let bare = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare.as_str(), port))
            .await
            .map_err(|e| SendError::Network(format!("cannot resolve the host {bare:?}: {e}")))?
            .collect();
        // Checked again at every attempt, on the addresses the connection will use: the name
        // may resolve elsewhere now than when the destination was created (DNS rebinding).
        let ips: Vec<std::net::IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
        if let Some(why) = refused_addresses(&bare, &ips, self.allow_private) {
            return Err(SendError::Refused(why));
        }
        let allowed: Vec<SocketAddr> =
            addrs.iter().copied().filter(|a| allowed_address(a.ip(), self.allow_private)).collect();
        let mut last = String::from("no address");
        let mut tcp = None;
        for addr in allowed {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(stream) => {
                    tcp = Some(stream);
                    break;
                }
                Err(e) => last = format!("cannot connect: {e}"),
            }
        }
        let tcp = tcp.ok_or(SendError::Network(last))?;
        let _ = tcp.set_nodelay(true);
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        let authority = uri.authority().map(|a| a.as_str().to_string()).unwrap_or(host.clone());
        let mut request = Request::post(path).header(header::HOST, authority);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| SendError::Refused(format!("cannot form the request: {e}")))?;
        let network = |what: &str, e: &dyn std::fmt::Display| SendError::Network(format!("{what}: {e}"));
        let response = if https {
            let name = rustls::pki_types::ServerName::try_from(bare)
                .map_err(|e| SendError::Refused(format!("not a TLS server name: {e}")))?;
            let tls = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls))
                .connect(name, tcp)
                .await
                .map_err(|e| network("TLS failed", &e))?;
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| network("HTTP failed", &e))?;
            tokio::spawn(connection);
            sender.send_request(request).await.map_err(|e| network("HTTP failed", &e))?
        } else {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(|e| network("HTTP failed", &e))?;
            tokio::spawn(connection);
            sender.send_request(request).await.map_err(|e| network("HTTP failed", &e))?
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        // The answer's body is not needed; reading a little of it lets the connection close cleanly.
        let _ = tokio::time::timeout(Duration::from_secs(1), response.into_body().frame()).await;
        Ok(Answer { status, retry_after })
    }
}
