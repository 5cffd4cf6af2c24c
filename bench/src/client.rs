//! A minimal HTTP/1.1 client for one keep-alive connection: write a prepared request, read the
//! status line and headers, read `Content-Length` bytes of body, and keep the connection for
//! the next request. It costs the load generator little CPU, which matters when the generator
//! and the server share two cores.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Headers larger than this are treated as a broken response.
const MAX_HEAD: usize = 64 * 1024;

/// One keep-alive connection.
pub struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
    filled: usize,
    closed: bool,
}

/// What a response said.
#[derive(Debug, Clone, Copy)]
pub struct Response {
    /// The status code.
    pub status: u16,
}

impl Connection {
    /// Opens a connection (with `TCP_NODELAY`, as every HTTP client sets it).
    pub async fn connect(addr: SocketAddr) -> io::Result<Connection> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Connection { stream, buf: vec![0; 8192], filled: 0, closed: false })
    }

    /// Whether the server said it closes this connection after the last response.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Sends a complete request (head and body) and reads its response.
    pub async fn send(&mut self, request: &[u8]) -> io::Result<Response> {
        self.stream.write_all(request).await?;
        Ok(self.read_response(false).await?.0)
    }

    /// Sends a complete request and returns its response with a copy of the body: for checking
    /// what the server answers, not for the measured loops (which skip the copy).
    pub async fn send_for_body(&mut self, request: &[u8]) -> io::Result<(Response, Vec<u8>)> {
        self.stream.write_all(request).await?;
        self.read_response(true).await
    }

    async fn fill(&mut self) -> io::Result<()> {
        if self.filled == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = self.stream.read(&mut self.buf[self.filled..]).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection"));
        }
        self.filled += n;
        Ok(())
    }

    async fn read_response(&mut self, keep_body: bool) -> io::Result<(Response, Vec<u8>)> {
        let head_end = loop {
            if let Some(at) = find(&self.buf[..self.filled], b"\r\n\r\n") {
                break at + 4;
            }
            if self.filled > MAX_HEAD {
                return Err(invalid("response headers too large"));
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).map_err(|_| invalid("response head is not UTF-8"))?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| invalid("bad status line"))?;
        let mut length = None;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else { continue };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<usize>().map_err(|_| invalid("bad content-length"))?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(invalid("chunked responses are not supported"));
            } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
                self.closed = true;
            }
        }
        let total = head_end + length.ok_or_else(|| invalid("response without content-length"))?;
        while self.filled < total {
            if total > self.buf.len() {
                self.buf.resize(total, 0);
            }
            self.fill().await?;
        }
        let body = if keep_body { self.buf[head_end..total].to_vec() } else { Vec::new() };
        // Keep whatever follows (nothing, since requests are not pipelined).
        self.buf.copy_within(total..self.filled, 0);
        self.filled -= total;
        Ok((Response { status }, body))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_string())
}
