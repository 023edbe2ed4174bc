//! A raw WebSocket client over a plain TCP stream, for tests that must send
//! what awc will not: a frame header without its payload, or a payload
//! streamed on while the server's answer is read. The reading and writing
//! halves are separate so a test can drive both at once.

use std::io;

use actix_codec::Decoder;
use actix_http::ws::{Codec, Frame, OpCode, Parser};
use actix_web::web::BytesMut;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::{Closed, TestServer, WAIT};

/// The masking key of every frame sent here.
const MASK: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

/// A masked client frame carrying `payload`.
pub fn client_frame(op: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    Parser::write_message(&mut buf, payload, op, fin, true);
    buf.to_vec()
}

/// Only the header of a masked client frame declaring `len` payload bytes
/// (always in the 64-bit length form).
pub fn client_header(op: OpCode, fin: bool, len: u64) -> Vec<u8> {
    let first = u8::from(op) | if fin { 0x80 } else { 0 };
    let mut header = vec![first, 0x80 | 127];
    header.extend_from_slice(&len.to_be_bytes());
    header.extend_from_slice(&MASK);
    header
}

/// The writing half.
pub struct RawWriter(OwnedWriteHalf);

impl RawWriter {
    /// Writes all of `bytes`; an error once the server has closed.
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.write_all(bytes).await
    }

    /// Streams `total` zero bytes in 64 KiB writes until done or the
    /// connection fails.
    pub async fn stream_zeros(&mut self, total: usize) {
        let chunk = vec![0u8; 64 * 1024];
        let mut sent = 0;
        while sent < total && self.0.write_all(&chunk).await.is_ok() {
            sent += chunk.len();
        }
    }
}

/// The reading half, decoding the server's frames.
pub struct RawReader {
    read: OwnedReadHalf,
    buf: BytesMut,
    codec: Codec,
}

impl RawReader {
    /// The next frame, or `None` at the end of the stream.
    async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) = self.codec.decode(&mut self.buf).expect("server frame") {
                return Some(frame);
            }
            match self.read.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// The next JSON text frame, skipping pings.
    pub async fn recv(&mut self) -> Value {
        let wait = async {
            loop {
                match self.next_frame().await {
                    Some(Frame::Text(bytes)) => {
                        return serde_json::from_slice(&bytes).expect("json frame")
                    }
                    Some(Frame::Ping(_) | Frame::Pong(_)) => {}
                    other => panic!("expected a text frame, got {other:?}"),
                }
            }
        };
        tokio::time::timeout(WAIT, wait)
            .await
            .expect("timed out waiting for a text frame")
    }

    /// Waits until the server has closed the TCP connection.
    pub async fn eof(&mut self) {
        let wait = async { while self.next_frame().await.is_some() {} };
        tokio::time::timeout(WAIT, wait)
            .await
            .expect("timed out waiting for the server to close the connection")
    }

    /// Reads until the server closes; the error frames seen and the code.
    pub async fn closed(&mut self) -> Closed {
        let wait = async {
            let mut closed = Closed::default();
            while !closed.take(self.next_frame().await) {}
            closed
        };
        tokio::time::timeout(WAIT, wait)
            .await
            .expect("timed out waiting for the close")
    }
}

impl TestServer {
    /// Opens a socket at `path` by hand and returns its two halves.
    pub async fn raw_socket(&self, path: &str) -> (RawReader, RawWriter) {
        let stream = TcpStream::connect(self.addr).await.expect("connect");
        let (mut read, mut write) = stream.into_split();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            self.addr
        );
        write.write_all(request.as_bytes()).await.expect("upgrade");
        let mut buf = BytesMut::new();
        let end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let n = tokio::time::timeout(WAIT, read.read_buf(&mut buf))
                .await
                .expect("timed out waiting for the upgrade")
                .expect("read");
            assert!(n > 0, "closed during the upgrade");
        };
        let head = buf.split_to(end);
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        let reader = RawReader {
            read,
            buf,
            codec: Codec::new().client_mode(),
        };
        (reader, RawWriter(write))
    }
}
