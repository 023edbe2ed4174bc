//! Guards in front of every route, for clients that hold resources
//! without credentials:
//!
//! - a peer address may hold at most `server.max_connections_per_ip` TCP
//!   connections (trusted proxies exempt): counted when the connection is
//!   accepted ([`on_connect`]), and every request on a connection over the
//!   cap gets 429 `too_many_connections` and the connection closes
//!   ([`connection_limit`]);
//! - a request body must be complete within `server.request_body_timeout_ms`
//!   of its headers, or the request gets 408 `request_timeout` and the
//!   connection closes ([`body_deadline`]). Only WebSocket handshakes (`GET`
//!   on a socket route with `Upgrade: websocket`) are exempt: their "body"
//!   is the socket.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Extensions, Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::web::{self, Bytes};
use actix_web::{HttpMessage, ResponseError};
use futures_core::Stream;

use super::HttpLimits;
use crate::infra::capacity::{KeyedSlot, KeyedSlots};
use crate::infra::error::DomainError;
use crate::infra::metrics::Metrics;
use crate::transport::client_addr::TrustedProxies;

/// A connection's place under the per-peer cap, kept in the connection's
/// data for as long as it is open.
enum PeerSlot {
    Held(#[allow(dead_code)] KeyedSlot<IpAddr>),
    Exempt,
    OverLimit(usize),
}

/// The `HttpServer::on_connect` hook: counts the new connection against
/// its peer address.
pub fn on_connect(
    slots: Arc<KeyedSlots<IpAddr>>,
    cap: usize,
    proxies: Arc<TrustedProxies>,
    metrics: Arc<Metrics>,
) -> impl Fn(&dyn Any, &mut Extensions) + Send + Sync + 'static {
    move |conn, data| {
        data.insert(PayloadStash::default());
        let Some(peer) = conn
            .downcast_ref::<actix_web::rt::net::TcpStream>()
            .and_then(|tcp| tcp.peer_addr().ok())
        else {
            return;
        };
        let slot = if proxies.contains(peer.ip()) {
            PeerSlot::Exempt
        } else {
            match slots.take(peer.ip(), cap) {
                Some(slot) => PeerSlot::Held(slot),
                None => {
                    metrics.connection_limited("connections_per_ip");
                    PeerSlot::OverLimit(cap)
                }
            }
        };
        data.insert(slot);
    }
}

/// Refuses every request on a connection over the per-peer cap.
pub async fn connection_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if let Some(PeerSlot::OverLimit(cap)) = req.conn_data::<PeerSlot>() {
        let mut response = DomainError::TooManyConnections(format!(
            "this address already holds {cap} connections (server.max_connections_per_ip)"
        ))
        .error_response();
        response
            .head_mut()
            .set_connection_type(actix_web::http::ConnectionType::Close);
        return Ok(req.into_response(response).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// Puts the request-body deadline on every request that is not a
/// WebSocket upgrade, and answers 408 if it passed.
pub async fn body_deadline(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(timeout) = req
        .app_data::<web::Data<HttpLimits>>()
        .map(|limits| limits.request_body_timeout)
        .filter(|_| !is_socket_upgrade(&req))
    else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let expired = Rc::new(Cell::new(false));
    let held = req
        .conn_data::<PayloadStash>()
        .cloned()
        .unwrap_or_default()
        .0;
    let inner = req.take_payload();
    let guarded: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> =
        Box::pin(DeadlineBody {
            inner,
            sleep: Box::pin(tokio::time::sleep(timeout)),
            expired: expired.clone(),
            held: held.clone(),
            finished: false,
        });
    req.set_payload(Payload::from(guarded));
    let response = next.call(req).await?;
    if !expired.get() {
        return Ok(response.map_into_left_body());
    }
    let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    tracing::info!(
        path = response.request().path(),
        ms,
        "request body timed out"
    );
    let mut refused = DomainError::RequestTimeout(ms).error_response();
    refused
        .head_mut()
        .set_connection_type(actix_web::http::ConnectionType::Close);
    let (request, _) = response.into_parts();
    Ok(ServiceResponse::new(request, refused).map_into_right_body())
}

/// A real WebSocket handshake: `GET` on a socket route with
/// `Upgrade: websocket`. Nothing else escapes the body deadline.
fn is_socket_upgrade(req: &ServiceRequest) -> bool {
    req.method() == actix_web::http::Method::GET
        && matches!(req.path(), "/visitor/ws" | "/agent/ws")
        && req
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// A request body that fails once its deadline passes.
struct DeadlineBody {
    inner: Payload,
    sleep: Pin<Box<tokio::time::Sleep>>,
    expired: Rc<Cell<bool>>,
    /// Where the payload goes when the deadline passes.
    held: Rc<RefCell<Option<Payload>>>,
    finished: bool,
}

/// Where a timed-out request's payload is kept for as long as its
/// connection lives: while the body is unfinished and its reader not
/// dropped, the dispatcher closes the connection after the 408, where a
/// dropped chunked body would instead be drained, forever.
#[derive(Default, Clone)]
struct PayloadStash(Rc<RefCell<Option<Payload>>>);

impl Stream for DeadlineBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = Pin::new(&mut self.inner).poll_next(cx) {
            if item.is_none() {
                self.finished = true;
            }
            return Poll::Ready(item);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.finished = true;
            self.expired.set(true);
            // See `PayloadStash`.
            let inner = std::mem::replace(&mut self.inner, Payload::None);
            *self.held.borrow_mut() = Some(inner);
            return Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the request body was not complete in time",
            )))));
        }
        Poll::Pending
    }
}
