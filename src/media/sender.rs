//! The thin async shell of the confirmation tone: one task that takes
//! [`MediaOrder`]s from the core loop, keeps one sleep reset to the
//! [`Player`]'s next deadline, and sends each due packet from the RTP socket
//! our SDP named. All pacing and packet building is in the pure
//! [`crate::media`]; this file only owns the sockets and the clock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::{MediaOrder, Player};

/// Runs until `stop` is cancelled or every sender of `orders` is gone; then
/// every tone still playing stops with it.
pub async fn run(
    sockets: Vec<Arc<UdpSocket>>,
    mut orders: mpsc::Receiver<MediaOrder>,
    stop: CancellationToken,
) {
    let sockets: Vec<(SocketAddr, Arc<UdpSocket>)> = sockets
        .into_iter()
        .filter_map(|s| s.local_addr().ok().map(|a| (a, s)))
        .collect();
    let mut player = Player::new(rand::random());
    let sleep = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(sleep);
    loop {
        let now = Instant::now();
        while let Some(tx) = player.poll_transmit(now) {
            // Our SDP named the socket's port (with the address the call
            // came to, which the socket may be bound to as a wildcard).
            let Some((_, sock)) = sockets
                .iter()
                .find(|(a, _)| a.port() == tx.from.port() && a.is_ipv4() == tx.from.is_ipv4())
            else {
                debug!(from = %tx.from, "no RTP socket for a tone");
                continue;
            };
            // RTP tolerates loss: a full send buffer drops the packet rather
            // than delaying the others.
            if let Err(e) = sock.try_send_to(&tx.bytes, tx.to) {
                debug!(to = %tx.to, error = %e, "RTP packet not sent");
            }
        }
        let deadline = player
            .poll_timeout()
            .unwrap_or(now + Duration::from_secs(3600));
        sleep.as_mut().reset(deadline.into());
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            order = orders.recv() => {
                let Some(order) = order else { return };
                let now = Instant::now();
                log_order(&order);
                player.apply(now, order);
                while let Ok(order) = orders.try_recv() {
                    log_order(&order);
                    player.apply(now, order);
                }
            }
            () = &mut sleep => {}
        }
    }
}

fn log_order(order: &MediaOrder) {
    match order {
        MediaOrder::Play {
            tone,
            target,
            duration,
        } => debug!(
            tone,
            codec = target.codec.name(),
            from = %target.local,
            to = %target.remote,
            ms = duration.as_millis() as u64,
            "confirmation tone"
        ),
        MediaOrder::Stop { tone } => debug!(tone, "tone stopped"),
    }
}
