//! `GET /metrics` on the HTTP listener: every counter facd keeps, in the
//! Prometheus text exposition format (version 0.0.4), encoded by the
//! `prometheus-client` crate. Nothing here counts: the UAS counts into plain
//! numbers on its task ([`UasMetrics`], [`UasStats`]), the transports and
//! the store into atomics; a scrape asks the core task for a sample (one
//! message, answered between two batches) and encodes it with the rest.
//!
//! No token is asked for, as is usual for a scrape endpoint: keep
//! `http.listen` on loopback or a management network.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};

use crate::api::wsi::Wsi;
use crate::engine::{AgentState, QueueId};
use crate::store::StoreStats;
use crate::transport::Stats;
use crate::uas::{InFlight, UasMetrics, UasStats};

use super::ShellUas;

/// What the core task hands a scrape.
#[derive(Debug, Clone)]
pub(super) struct CoreSample {
    metrics: UasMetrics,
    stats: UasStats,
    in_flight: InFlight,
    census: Vec<(QueueId, [u64; 6])>,
}

/// Takes a sample on the core task.
pub(super) fn sample(uas: &ShellUas) -> CoreSample {
    CoreSample {
        metrics: uas.metrics.clone(),
        stats: uas.stats.clone(),
        in_flight: uas.in_flight(),
        census: uas.engine().census(),
    }
}

/// A scrape's way to the core task.
pub(super) type Probe = mpsc::Sender<oneshot::Sender<CoreSample>>;

/// What a scrape reads besides the core.
pub(super) struct Exporter {
    pub(super) probe: Probe,
    pub(super) transport: Arc<Stats>,
    pub(super) store: Arc<StoreStats>,
    pub(super) wsi: Wsi,
}

/// The `/metrics` route.
pub(super) fn router(exporter: Arc<Exporter>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(exporter)
}

async fn scrape(State(x): State<Arc<Exporter>>) -> impl IntoResponse {
    let (tx, rx) = oneshot::channel();
    let core = match x.probe.send(tx).await {
        Ok(()) => rx.await.ok(),
        Err(_) => None,
    };
    let Some(core) = core else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "facd is shutting down\n".to_string(),
        );
    };
    match encode(&core, &x) {
        Ok(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
            text,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "cannot encode the metrics\n".to_string(),
        ),
    }
}

type Labels = Vec<(&'static str, String)>;

fn counter(reg: &mut Registry, name: &str, help: &str, value: u64) {
    let c: Counter = Counter::default();
    c.inc_by(value);
    reg.register(name, help, c);
}

fn gauge(reg: &mut Registry, name: &str, help: &str, value: usize) {
    let g: Gauge = Gauge::default();
    g.set(i64::try_from(value).unwrap_or(i64::MAX));
    reg.register(name, help, g);
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// The whole exposition: a registry built for this scrape from the sample
/// (counters set to their totals), plus the store's live histograms.
fn encode(core: &CoreSample, x: &Exporter) -> Result<String, std::fmt::Error> {
    let mut root = Registry::default();
    let reg = root.sub_registry_with_prefix("facd");

    let build: Family<Labels, Gauge> = Family::default();
    build
        .get_or_create(&vec![("version", env!("CARGO_PKG_VERSION").to_string())])
        .set(1);
    reg.register("build_info", "facd's version (always 1)", build);

    let responses: Family<Labels, Counter> = Family::default();
    for ((method, status), n) in &core.metrics.responses {
        responses
            .get_or_create(&vec![
                ("method", (*method).to_string()),
                ("status", status.to_string()),
            ])
            .inc_by(*n);
    }
    reg.register(
        "sip_responses",
        "SIP responses sent, by request method and status (retransmissions not counted)",
        responses,
    );
    let codes: Family<Labels, Counter> = Family::default();
    for ((action, outcome), n) in &core.metrics.star_codes {
        codes
            .get_or_create(&vec![
                ("action", (*action).to_string()),
                ("outcome", (*outcome).to_string()),
            ])
            .inc_by(*n);
    }
    reg.register(
        "star_codes",
        "Star codes dialled, by action and outcome (applied, or the refusal)",
        codes,
    );
    let s = &core.stats;
    counter(
        reg,
        "sip_requests",
        "New SIP requests (retransmissions excluded)",
        s.requests,
    );
    counter(
        reg,
        "sip_retransmissions",
        "Retransmitted requests absorbed",
        s.retransmissions,
    );
    counter(
        reg,
        "auth_failures",
        "Failed digest authentications (wrong password or unknown user)",
        core.metrics.auth_failures,
    );
    counter(
        reg,
        "auth_bans",
        "Sources banned for failed authentications (limits.auth_failures)",
        core.metrics.auth_bans,
    );
    counter(
        reg,
        "auth_banned_drops",
        "Requests dropped from banned sources",
        s.banned_drops,
    );
    counter(
        reg,
        "overload_rejections",
        "Requests answered 503 because the transaction table was full",
        s.overloaded,
    );
    let t = &x.transport;
    counter(
        reg,
        "rate_limited",
        "Messages dropped by the per-source token bucket (limits.requests_per_sec)",
        load(&t.rate_limited),
    );
    counter(
        reg,
        "sip_messages",
        "SIP messages received and parsed",
        load(&t.messages),
    );
    counter(
        reg,
        "sip_malformed",
        "Messages that did not parse or frame",
        load(&t.malformed),
    );
    let refused: Family<Labels, Counter> = Family::default();
    for (cause, v) in [
        ("total_cap", load(&t.tcp_refused)),
        ("per_ip_cap", load(&t.tcp_refused_per_ip)),
    ] {
        refused
            .get_or_create(&vec![("cap", cause.to_string())])
            .inc_by(v);
    }
    reg.register(
        "tcp_refused",
        "TCP connections closed at once: sip.max_tcp_connections or limits.tcp_connections_per_ip",
        refused,
    );
    let f = core.in_flight;
    gauge(
        reg,
        "sip_transactions",
        "Server transactions held (with finished ones lingering for Timer J/L)",
        f.transactions,
    );
    gauge(
        reg,
        "sip_dialogs",
        "Answered star-code calls in progress",
        f.dialogs,
    );
    gauge(
        reg,
        "subscriptions",
        "Feature-key subscriptions",
        f.subscriptions,
    );
    gauge(
        reg,
        "wsi_sessions",
        "WebSocket /wsi sessions",
        x.wsi.sessions(),
    );

    let agents: Family<Labels, Gauge> = Family::default();
    for (queue, counts) in &core.census {
        for (state, n) in AgentState::ALL.iter().zip(counts) {
            agents
                .get_or_create(&vec![
                    ("queue", queue.as_str().to_string()),
                    ("state", state.as_str().to_string()),
                ])
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
    }
    reg.register("agents", "Agents in each state, per queue", agents);

    let st = &x.store;
    reg.register(
        "journal_write_seconds",
        "Time of each group commit's journal write",
        st.write_seconds.clone(),
    );
    reg.register(
        "journal_fdatasync_seconds",
        "Time of each fdatasync of the journal",
        st.sync_seconds.clone(),
    );
    reg.register(
        "journal_batch_records",
        "Records made durable per group commit",
        st.batch_records.clone(),
    );
    let mut out = String::with_capacity(8192);
    prometheus_text::encode(&mut out, &root)?;
    Ok(out)
}
