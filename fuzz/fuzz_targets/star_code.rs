//! Star codes: a Request-URI user part, %-decoded as the core does, then
//! parsed. Never panics; whatever parses is within the grammar (queue 1–10
//! digits, reason 1–4 digits, only on not-ready) and written back out
//! parses to the same thing.
#![no_main]

use facd::sip::message::unescape;
use facd::sip::star_code::{Action, Codes, StarCodeParser};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let codes = Codes::default();
    let parser = StarCodeParser::new(codes.clone());
    let user = unescape(data);
    let Ok(sc) = parser.parse(&user) else {
        return;
    };
    if let Some(q) = &sc.queue {
        assert!((1..=10).contains(&q.len()) && q.bytes().all(|b| b.is_ascii_digit()));
    }
    if let Some(r) = sc.reason {
        assert!(r < 10_000);
        assert_eq!(sc.action, Action::NotReady);
    }
    let code = match sc.action {
        Action::Ready => &codes.ready,
        Action::NotReady => &codes.not_ready,
        Action::Login => &codes.login,
        Action::Logout => &codes.logout,
    };
    let mut again = code.clone();
    again.push_str(sc.queue.as_deref().unwrap_or(""));
    if let Some(r) = sc.reason {
        // The reason is written as it came (leading zeros are not kept).
        again.push_str(&format!("*{r}"));
    }
    assert_eq!(parser.parse(again.as_bytes()), Ok(sc));
});
