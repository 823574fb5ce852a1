//! SIP over WebSocket (RFC 7118), on `ws:` and `wss:` listeners: the
//! upgrade (any request path, subprotocol `sip`, §4.1), then one SIP
//! message per text or binary frame (§4.2, no stream framing) read into
//! the core like a TCP message, and what is queued on the connection sent
//! back as one frame per message. The client accepts no connections (§5),
//! so answers and in-dialog requests only ever go over its WebSocket.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{header, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::tcp::{Connector, TcpConn};
use super::{answer_malformed, peer, Inbound, Link};
use crate::sip::framing;
use crate::sip::message::parse_message;

/// The WebSocket subprotocol of SIP (RFC 7118 §4.1, IANA registry).
const SUBPROTOCOL: &str = "sip";

/// Answers the upgrade when the client offers the `sip` subprotocol
/// (RFC 7118 §4.1: the server must not accept without it); any path.
#[allow(clippy::result_large_err)]
fn upgrade(req: &Request, mut resp: Response) -> Result<Response, ErrorResponse> {
    let offers_sip = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case(SUBPROTOCOL));
    if !offers_sip {
        let mut refuse = ErrorResponse::new(Some(
            "SIP over WebSocket needs the \"sip\" subprotocol (RFC 7118)\n".into(),
        ));
        *refuse.status_mut() = StatusCode::BAD_REQUEST;
        return Err(refuse);
    }
    resp.headers_mut().insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        header::HeaderValue::from_static(SUBPROTOCOL),
    );
    Ok(resp)
}

/// Upgrades `stream` (within `sip.tcp_message_secs`) and serves it until
/// the peer closes, the idle timeout or shutdown.
pub(super) async fn serve<S>(
    connector: &Connector,
    stream: S,
    addr: SocketAddr,
    local: SocketAddr,
    conn: TcpConn,
    mut rx: mpsc::Receiver<Bytes>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (cfg, stats, stop) = (&connector.cfg, &connector.stats, &connector.stop);
    let id = conn.id;
    let transport = conn.transport.as_str();
    let ws_cfg = WebSocketConfig::default()
        .max_message_size(Some(cfg.max_message_bytes))
        .max_frame_size(Some(cfg.max_message_bytes));
    let handshake = tokio::time::timeout(
        cfg.tcp_message,
        tokio_tungstenite::accept_hdr_async_with_config(stream, upgrade, Some(ws_cfg)),
    );
    let ws = tokio::select! {
        r = handshake => r,
        () = stop.cancelled() => return,
    };
    let ws = match ws {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            stats.ws_refused.fetch_add(1, Ordering::Relaxed);
            debug!(conn = id, peer = %addr, transport, error = %e, "websocket upgrade refused");
            return;
        }
        Err(_) => {
            stats.ws_refused.fetch_add(1, Ordering::Relaxed);
            debug!(conn = id, peer = %addr, transport, "websocket upgrade unfinished in time");
            return;
        }
    };
    let (mut sink, mut frames) = ws.split();
    let closed = CancellationToken::new();
    let writer_closed = closed.clone();
    let writer_conn = conn.clone();
    let writer = tokio::spawn(async move {
        loop {
            let bytes = tokio::select! {
                biased;
                b = rx.recv() => b,
                () = writer_closed.cancelled() => None,
            };
            let Some(bytes) = bytes else { break };
            // RFC 7118 §4.2: text frames for UTF-8 messages, binary otherwise.
            let frame = match Utf8Bytes::try_from(bytes.clone()) {
                Ok(text) => Message::Text(text),
                Err(_) => Message::Binary(bytes),
            };
            if let Err(e) = sink.send(frame).await {
                debug!(conn = id, error = %e, "websocket write failed");
                break;
            }
        }
        writer_conn.close();
        drop(rx);
        let _ = sink.close().await;
    });
    let peer = peer(addr, local, Link::Tcp(conn.clone()));
    debug!(conn = id, peer = %addr, transport, "websocket connection open");
    let why = loop {
        let next = tokio::select! {
            r = tokio::time::timeout(cfg.tcp_idle, frames.next()) => r,
            () = stop.cancelled() => break "shutting down".to_string(),
        };
        let data = match next {
            Err(_) => break format!("idle for {} s", cfg.tcp_idle.as_secs()),
            Ok(None) => break "closed by peer".to_string(),
            Ok(Some(Err(e))) => {
                stats.malformed.fetch_add(1, Ordering::Relaxed);
                break format!("websocket error: {e}");
            }
            Ok(Some(Ok(Message::Text(t)))) => Bytes::from(t),
            Ok(Some(Ok(Message::Binary(b)))) => b,
            Ok(Some(Ok(Message::Close(_)))) => break "closed by peer".to_string(),
            // Pings are answered by tungstenite itself; pongs need nothing.
            Ok(Some(Ok(_))) => continue,
        };
        if !cfg.limits.admit(addr.ip(), transport, stats) {
            continue;
        }
        // RFC 7118 §4.2: one whole message per frame, no Content-Length
        // framing; a frame of only CRLFs is a keep-alive (RFC 5626 §3.5.1
        // style, as SIP.js sends them) and gets a CRLF back.
        match framing::datagram(data, cfg.max_message_bytes) {
            Ok(None) => {
                stats.keepalives.fetch_add(1, Ordering::Relaxed);
                let _ = conn.try_send(Bytes::from_static(b"\r\n"));
            }
            Ok(Some(frame)) => match parse_message(frame) {
                Ok(msg) => {
                    stats.messages.fetch_add(1, Ordering::Relaxed);
                    let inbound = Inbound {
                        msg,
                        peer: peer.clone(),
                    };
                    if connector.core.send(inbound).await.is_err() {
                        break "shutting down".to_string();
                    }
                }
                Err(e) => answer_malformed(e, &peer, stats),
            },
            Err(e) => {
                stats.malformed.fetch_add(1, Ordering::Relaxed);
                debug!(conn = id, peer = %addr, error = %e, "websocket frame dropped");
            }
        }
    };
    debug!(conn = id, peer = %addr, transport, why = %why, "websocket connection closed");
    if why.starts_with("websocket error") {
        info!(conn = id, peer = %addr, transport, why = %why, "websocket connection closed");
    }
    conn.close();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    closed.cancel();
    let _ = writer.await;
}
