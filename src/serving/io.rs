//! A connection's socket as hyper sees it: every byte read or written tells the connection's
//! [`Activity`] (for its deadlines), and the answers hyper writes by itself are made JSON.
//!
//! hyper answers a request it cannot parse before any of our code runs: 400 for a malformed
//! request line or header, 414 for a request target over 64 KiB, 431 for a head over
//! [`super::MAX_HEAD_BYTES`] or more than [`super::MAX_HEADERS`] headers. It writes those with an
//! empty body and offers no hook to change them. SPEC says every error is JSON with a
//! `message`, and every answer carries an `x-request-id`; so such an answer is recognised here
//! as it is written (a 400, 414 or 431 head without the `x-request-id` that every answer of the
//! router has) and replaced by the same status with a JSON body and a request id. The
//! connection is closed after it, as hyper does.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Activity;
use crate::domain::ids::RequestId;

/// A socket whose traffic is watched.
pub(super) struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
    /// A replacement answer still to be written, and how much of it is.
    pending: Vec<u8>,
    written: usize,
}

impl<S> Watched<S> {
    pub(super) fn new(inner: S, activity: Arc<Activity>) -> Self {
        Watched { inner, activity, pending: Vec::new(), written: 0 }
    }
}

impl<S: AsyncWrite + Unpin> Watched<S> {
    /// Writes what is left of a replacement answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
            self.activity.wrote();
        }
        Ok(()).into()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = ready!(Pin::new(&mut this.inner).poll_read(cx, buf));
        if buf.filled().len() > before {
            this.activity.read();
        }
        Poll::Ready(result)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        if let Some(replacement) = json_for_hyper_error(buf) {
            this.pending = replacement;
            this.written = 0;
            // hyper's answer counts as written; ours goes out now or on the next flush.
            match this.poll_pending(cx) {
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Ready(Ok(())) | Poll::Pending => return Poll::Ready(Ok(buf.len())),
            }
        }
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        if n > 0 {
            this.activity.wrote();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }

    // Not vectored: hyper then writes each head whole, at the start of one buffer, which is
    // what `json_for_hyper_error` recognises.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

/// The JSON answer replacing `written`, when `written` is a bodiless error hyper wrote itself.
fn json_for_hyper_error(written: &[u8]) -> Option<Vec<u8>> {
    let status = written.strip_prefix(b"HTTP/1.1 ").or_else(|| written.strip_prefix(b"HTTP/1.0 "))?.get(..3)?;
    let (status, reason, message) = match status {
        b"400" => (400, "Bad Request", "the request is not valid HTTP/1.1: its request line or a header is malformed"),
        b"414" => (414, "URI Too Long", "the request target is longer than the server reads"),
        b"431" => (
            431,
            "Request Header Fields Too Large",
            "the request headers are too large: at most 64 KiB and 100 headers are read",
        ),
        _ => return None,
    };
    let end = written.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&written[..end]).to_ascii_lowercase();
    if head.contains("\r\nx-request-id:") || !head.contains("\r\ncontent-length: 0") {
        return None;
    }
    let id = RequestId::generate();
    let body = serde_json::json!({ "message": message }).to_string();
    tracing::info!(target: "consentry::access", status, request_id = %id, "answered a request that could not be read");
    let date = head.split("\r\n").find(|line| line.starts_with("date:")).map(|_| {
        // Keep hyper's date as it wrote it (the lowercased copy is only for matching).
        let original = String::from_utf8_lossy(&written[..end]).into_owned();
        original.split("\r\n").find(|line| line.to_ascii_lowercase().starts_with("date:")).unwrap_or("").to_string()
    });
    let mut answer = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         x-request-id: {id}\r\nconnection: close\r\n",
        body.len()
    );
    if let Some(date) = date.filter(|d| !d.is_empty()) {
        answer.push_str(&date);
        answer.push_str("\r\n");
    }
    answer.push_str("\r\n");
    answer.push_str(&body);
    Some(answer.into_bytes())
}
