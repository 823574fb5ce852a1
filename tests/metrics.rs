//! `GET /metrics`: parsed by a real Prometheus parser (tests/common/prom.rs)
//! before and after some traffic, and the counters move with it.

mod common;

use common::prom::{parser_ready, scrape, value};
use common::{base_config, Req, TestServer, Udp};

#[tokio::test]
async fn metrics_parse_and_count_the_traffic() {
    if !parser_ready() {
        return;
    }
    let s = TestServer::start(&base_config("confirm_ms = 0")).await;
    let before = scrape(s.http).await;
    assert_eq!(value(&before, r#"facd_build_info{version="0.1.0"}"#), 1.0);
    assert_eq!(
        value(&before, r#"facd_agents{queue="8000",state="LOGGED_OUT"}"#),
        2.0
    );
    assert_eq!(value(&before, "facd_sip_dialogs{}"), 0.0);

    let c = Udp::new(s.udp).await;
    let p = c.port();
    c.send(&Req::invite(
        "*388000",
        "1001",
        "m-1",
        "z9hG4bK-m-1",
        "UDP",
        p,
    ))
    .await;
    let ok = c.recv_final_for("m-1").await;
    assert_eq!(ok.status(), 200);
    c.send(&Req::invite(
        "*389999",
        "1001",
        "m-2",
        "z9hG4bK-m-2",
        "UDP",
        p,
    ))
    .await;
    assert_eq!(c.recv_final_for("m-2").await.status(), 404);
    c.send(&Req::options(p, "z9hG4bK-m-3")).await;
    assert_eq!(c.recv().await.status(), 200);

    let after = scrape(s.http).await;
    let moved = |key: &str| value(&after, key) - value(&before, key);
    assert_eq!(
        moved(r#"facd_star_codes_total{action="login",outcome="applied"}"#),
        1.0
    );
    assert_eq!(
        moved(r#"facd_star_codes_total{action="login",outcome="unknown_queue"}"#),
        1.0
    );
    assert_eq!(
        moved(r#"facd_sip_responses_total{method="INVITE",status="200"}"#),
        1.0
    );
    assert_eq!(
        moved(r#"facd_sip_responses_total{method="INVITE",status="404"}"#),
        1.0
    );
    assert_eq!(
        moved(r#"facd_sip_responses_total{method="OPTIONS",status="200"}"#),
        1.0
    );
    assert_eq!(moved("facd_sip_requests_total{}"), 3.0);
    assert_eq!(
        value(&after, r#"facd_agents{queue="8000",state="READY"}"#),
        1.0
    );
    assert_eq!(
        value(&after, r#"facd_agents{queue="8000",state="LOGGED_OUT"}"#),
        1.0
    );
    assert!(value(&after, "facd_sip_transactions{}") >= 3.0);
    // The login was one journal record, written (and fdatasync'ed) in a group.
    assert!(moved("facd_journal_batch_records_count{}") >= 1.0);
    assert!(moved("facd_journal_batch_records_sum{}") >= 1.0);
    assert!(moved("facd_journal_fdatasync_seconds_count{}") >= 1.0);
    assert!(moved("facd_journal_write_seconds_count{}") >= 1.0);
    assert_eq!(value(&after, "facd_wsi_sessions{}"), 0.0);
    assert_eq!(value(&after, "facd_rate_limited_total{}"), 0.0);
    s.stop().await;
}
