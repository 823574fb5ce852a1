//! The event hub and the core handle (SPEC §5): a star code and a command
//! from outside SIP both publish their events once durable, in order.

mod common;

use std::time::Duration;

use common::{base_config, Req, TestServer, Udp};
use facd::engine::{AgentState, Cause, Command, Rejection, Target};
use facd::uas::ApplyError;

#[tokio::test]
async fn star_code_and_api_command_publish_events_in_order() {
    let s = TestServer::start(&base_config("")).await;
    let mut events = s.hub.subscribe();
    let c = Udp::new(s.udp).await;
    c.send(&Req::invite(
        "*388000",
        "1001",
        "e1",
        "z9hG4bK-e1",
        "UDP",
        c.port(),
    ))
    .await;
    assert_eq!(c.recv_response().await.status(), 200);
    let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((ev.agent.as_str(), ev.queue.as_str()), ("1001", "8000"));
    assert_eq!((ev.from, ev.to), (AgentState::LoggedOut, AgentState::Ready));
    assert_eq!(ev.cause, Cause::Fac);

    let applied = s
        .core
        .apply(
            Command::NotReady {
                agent: "1001".into(),
                target: Target::Queue("8000".into()),
                reason: None,
            },
            Cause::Api,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(applied.events.len(), 1);
    let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (ev.from, ev.to, ev.cause),
        (AgentState::Ready, AgentState::NotReady, Cause::Api)
    );

    // A refusal publishes nothing and says why.
    let r = s
        .core
        .apply(
            Command::Ready {
                agent: "1003".into(),
                target: Target::All,
            },
            Cause::Api,
        )
        .await
        .unwrap();
    assert_eq!(r.unwrap_err(), ApplyError::Rejected(Rejection::NotLoggedIn));
    let view = s.core.query(|e| e.agent("1001")).await.unwrap().unwrap();
    assert_eq!(view.queues[0].state, AgentState::NotReady);
    assert!(events.try_recv().is_err());
    s.stop().await;
}
