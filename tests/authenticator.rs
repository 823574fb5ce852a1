//! Behaviour of [`Authenticator`] end to end: challenge → client answer
//! (the test digest client, `common/digest.rs`) → verdict, on a virtual
//! clock.

mod common;

use common::digest::{parse_challenge, Challenge};
use facd::sip::auth::{digest, Algorithm, Authenticator, Secret, Verdict};

const REALM: &str = "pbx.example.com";
const SECRET: [u8; 32] = [0x5a; 32];
const T0: u64 = 1_700_000_000;
const URI: &str = "sip:*36@pbx.example.com";

fn auth() -> Authenticator {
    Authenticator::new(REALM, SECRET, Authenticator::DEFAULT_NONCE_LIFETIME_SECS)
}

fn users(name: &str) -> Option<Secret> {
    match name {
        "1001" => Some(Secret::Password("secret".into())),
        "1002" => Some(Secret::Ha1Md5(
            digest::ha1(Algorithm::Md5, "1002", REALM, "pw2").to_uppercase(),
        )),
        "1003" => Some(Secret::Ha1Sha256(digest::ha1(
            Algorithm::Sha256,
            "1003",
            REALM,
            "pw3",
        ))),
        "1004" => Some(Secret::Ha1Md5("not hex".into())),
        _ => None,
    }
}

/// The challenge for `algorithm` from a fresh 401 at `now`.
fn challenge(auth: &Authenticator, now: u64, algorithm: Algorithm) -> Challenge {
    let values = auth.challenge(now, false);
    values
        .iter()
        .map(|value| parse_challenge(value.as_bytes()).unwrap())
        .find(|c| c.algorithm == algorithm)
        .unwrap()
}

fn answer(c: &Challenge, user: &str, password: &str, nc: u32) -> String {
    c.authorization("INVITE", URI, user, password, "0a4f113b", nc)
}

fn ok(user: &str) -> Verdict {
    Verdict::Ok {
        username: user.into(),
    }
}

#[test]
fn challenge_offers_sha256_then_md5() {
    let auth = auth();
    let values = auth.challenge(T0, false);
    assert_eq!(values.len(), 2);
    assert!(values[0].starts_with("Digest realm=\"pbx.example.com\", nonce=\""));
    assert!(values[0].contains("algorithm=SHA-256"));
    assert!(values[1].contains("algorithm=MD5"));
    for value in &values {
        assert!(value.contains("qop=\"auth\""));
        assert!(value.contains("opaque=\""));
        assert!(!value.contains("stale"));
    }
    let [sha, md5] = [&values[0], &values[1]].map(|v| parse_challenge(v.as_bytes()).unwrap());
    assert_ne!(sha.nonce, md5.nonce, "each challenge has its own nonce");
    assert_eq!(sha.opaque, md5.opaque);
    assert!(sha.qop_auth && !sha.stale);
    assert_eq!(sha.realm, REALM);
    // Same second, next 401: a different nonce, so two phones never share one.
    assert_ne!(challenge(&auth, T0, Algorithm::Sha256).nonce, sha.nonce);

    let stale = auth.challenge(T0, true);
    assert!(stale.iter().all(|v| v.ends_with(", stale=true")));
    assert!(parse_challenge(stale[0].as_bytes()).unwrap().stale);
    assert_eq!(
        auth.challenge_for(T0, false, &[Algorithm::Md5]).len(),
        1,
        "an MD5-only challenge for users with only an MD5 HA1"
    );
}

#[test]
fn realm_is_quoted_in_challenges() {
    let auth = Authenticator::new("a\"b\\c", SECRET, 300);
    let value = &auth.challenge(T0, false)[0];
    assert!(value.starts_with("Digest realm=\"a\\\"b\\\\c\""));
    assert_eq!(parse_challenge(value.as_bytes()).unwrap().realm, "a\"b\\c");
}

#[test]
fn sip_round_trip_both_algorithms() {
    for algorithm in [Algorithm::Sha256, Algorithm::Md5] {
        let mut auth = auth();
        let c = challenge(&auth, T0, algorithm);
        let value = answer(&c, "1001", "secret", 1);
        assert_eq!(
            auth.verify(T0 + 1, "INVITE", value.as_bytes(), users),
            ok("1001")
        );
        assert_eq!(auth.tracked_nonces(), 1);
    }
}

#[test]
fn stored_ha1_secrets() {
    let mut auth = auth();
    let md5 = challenge(&auth, T0, Algorithm::Md5);
    let sha = challenge(&auth, T0, Algorithm::Sha256);
    let v = |a: &mut Authenticator, value: String| a.verify(T0, "INVITE", value.as_bytes(), users);
    assert_eq!(v(&mut auth, answer(&md5, "1002", "pw2", 1)), ok("1002"));
    assert_eq!(v(&mut auth, answer(&sha, "1003", "pw3", 1)), ok("1003"));
    // A stored HA1 works only with its own algorithm; a bad one never.
    assert_eq!(
        v(&mut auth, answer(&sha, "1002", "pw2", 2)),
        Verdict::Failed
    );
    assert_eq!(
        v(&mut auth, answer(&md5, "1003", "pw3", 2)),
        Verdict::Failed
    );
    assert_eq!(
        v(&mut auth, answer(&md5, "1004", "not hex", 3)),
        Verdict::Failed
    );
}

#[test]
fn wrong_password_and_unknown_user_look_the_same() {
    let mut auth = auth();
    let c = challenge(&auth, T0, Algorithm::Sha256);
    let wrong = auth.verify(
        T0,
        "INVITE",
        answer(&c, "1001", "guess", 1).as_bytes(),
        users,
    );
    let unknown = auth.verify(
        T0,
        "INVITE",
        answer(&c, "9999", "guess", 1).as_bytes(),
        users,
    );
    assert_eq!(wrong, Verdict::Failed);
    assert_eq!(unknown, wrong);
    assert_eq!(wrong.status_code(), 403);
    // Failures do not burn the nonce-count: the real phone still gets in.
    assert_eq!(auth.tracked_nonces(), 0);
    let good = answer(&c, "1001", "secret", 1);
    assert_eq!(
        auth.verify(T0, "INVITE", good.as_bytes(), users),
        ok("1001")
    );
}

#[test]
fn unknown_user_still_does_the_digest_work() {
    use std::cell::Cell;
    let mut auth = auth();
    let c = challenge(&auth, T0, Algorithm::Md5);
    let calls = Cell::new(0);
    let lookup = |name: &str| {
        calls.set(calls.get() + 1);
        users(name)
    };
    let _ = auth.verify(
        T0,
        "INVITE",
        answer(&c, "nobody", "x", 1).as_bytes(),
        lookup,
    );
    assert_eq!(calls.get(), 1);
}

#[test]
fn expired_nonce_is_stale_only_with_the_right_password() {
    let mut auth = auth();
    let c = challenge(&auth, T0, Algorithm::Sha256);
    let late = T0 + Authenticator::DEFAULT_NONCE_LIFETIME_SECS + 1;
    let right = answer(&c, "1001", "secret", 1);
    assert_eq!(
        auth.verify(late, "INVITE", right.as_bytes(), users),
        Verdict::Stale
    );
    let wrong = answer(&c, "1001", "nope", 1);
    assert_eq!(
        auth.verify(late, "INVITE", wrong.as_bytes(), users),
        Verdict::Failed
    );
    let unknown = answer(&c, "7777", "nope", 1);
    assert_eq!(
        auth.verify(late, "INVITE", unknown.as_bytes(), users),
        Verdict::Failed
    );
    // At exactly the lifetime it is still good; a clock that went back too.
    let edge = T0 + Authenticator::DEFAULT_NONCE_LIFETIME_SECS;
    assert_eq!(
        auth.verify(edge, "INVITE", right.as_bytes(), users),
        ok("1001")
    );
    let c = challenge(&auth, T0, Algorithm::Md5);
    let value = answer(&c, "1001", "secret", 1);
    assert_eq!(
        auth.verify(T0 - 60, "INVITE", value.as_bytes(), users),
        ok("1001")
    );
}

#[test]
fn forged_or_foreign_nonces_are_rechallenged() {
    let mut auth = auth();
    let genuine = challenge(&auth, T0, Algorithm::Sha256);
    let verify = |auth: &mut Authenticator, c: &Challenge| {
        auth.verify(
            T0,
            "INVITE",
            answer(c, "1001", "secret", 1).as_bytes(),
            users,
        )
    };
    // A made-up nonce, a nonce whose timestamp was pushed forward, and one
    // from another server secret (e.g. before a restart).
    for nonce in [
        "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v".to_owned(),
        String::new(),
        {
            let mut n = genuine.nonce.clone().into_bytes();
            n[9] = if n[9] == b'A' { b'B' } else { b'A' };
            String::from_utf8(n).unwrap()
        },
    ] {
        let forged = Challenge {
            nonce,
            ..genuine.clone()
        };
        assert_eq!(verify(&mut auth, &forged), Verdict::BadNonce);
    }
    let other = Authenticator::new(REALM, [1; 32], 300);
    let foreign = challenge(&other, T0, Algorithm::Sha256);
    let foreign = Challenge {
        opaque: genuine.opaque.clone(),
        ..foreign
    };
    assert_eq!(verify(&mut auth, &foreign), Verdict::BadNonce);
    // A wrong opaque is the same; a missing one is tolerated.
    let bad_opaque = Challenge {
        opaque: Some("x".into()),
        ..genuine.clone()
    };
    assert_eq!(verify(&mut auth, &bad_opaque), Verdict::BadNonce);
    let no_opaque = Challenge {
        opaque: None,
        ..genuine
    };
    assert_eq!(verify(&mut auth, &no_opaque), ok("1001"));
    assert_eq!(Verdict::BadNonce.status_code(), 401);
}

#[test]
fn nonce_count_must_increase() {
    let mut auth = auth();
    let c = challenge(&auth, T0, Algorithm::Sha256);
    let mut v = |nc: u32| {
        auth.verify(
            T0 + 5,
            "INVITE",
            answer(&c, "1001", "secret", nc).as_bytes(),
            users,
        )
    };
    assert_eq!(v(1), ok("1001"));
    assert_eq!(v(1), Verdict::Replay, "the same request again");
    assert_eq!(v(2), ok("1001"));
    assert_eq!(v(5), ok("1001"));
    assert_eq!(v(3), Verdict::Replay);
    assert_eq!(v(5), Verdict::Replay);
    assert_eq!(v(6), ok("1001"));
    assert_eq!(v(0), Verdict::Replay);
}

#[test]
fn nonce_table_is_bounded_and_forgotten_nonces_are_dead() {
    let mut auth = auth().with_max_tracked_nonces(2);
    let cs: Vec<Challenge> = (0..3)
        .map(|i| challenge(&auth, T0 + i, Algorithm::Md5))
        .collect();
    for c in &cs {
        assert_eq!(
            auth.verify(
                T0 + 5,
                "INVITE",
                answer(c, "1001", "secret", 1).as_bytes(),
                users
            ),
            ok("1001")
        );
    }
    assert_eq!(auth.tracked_nonces(), 2);
    let again = answer(&cs[0], "1001", "secret", 2);
    assert_eq!(
        auth.verify(T0 + 5, "INVITE", again.as_bytes(), users),
        Verdict::Replay
    );
    let next = answer(&cs[2], "1001", "secret", 2);
    assert_eq!(
        auth.verify(T0 + 5, "INVITE", next.as_bytes(), users),
        ok("1001")
    );
}

#[test]
fn expired_entries_leave_the_table() {
    let mut auth = Authenticator::new(REALM, SECRET, 10);
    let c = challenge(&auth, T0, Algorithm::Md5);
    let _ = auth.verify(
        T0,
        "INVITE",
        answer(&c, "1001", "secret", 1).as_bytes(),
        users,
    );
    assert_eq!(auth.tracked_nonces(), 1);
    let d = challenge(&auth, T0 + 100, Algorithm::Md5);
    let _ = auth.verify(
        T0 + 100,
        "INVITE",
        answer(&d, "1001", "secret", 1).as_bytes(),
        users,
    );
    assert_eq!(auth.tracked_nonces(), 1);
}

#[test]
fn digest_uri_is_hashed_as_written() {
    let mut auth = auth();
    let c = challenge(&auth, T0, Algorithm::Sha256);
    let uri = "sip:*36@pbx.example.com;transport=udp";
    let value = c.authorization("INVITE", uri, "1001", "secret", "abc", 1);
    assert_eq!(
        auth.verify(T0, "INVITE", value.as_bytes(), users),
        ok("1001")
    );
    // The method is part of HA2: the same answer for another method fails.
    let value = c.authorization("INVITE", uri, "1001", "secret", "abc", 2);
    assert_eq!(
        auth.verify(T0, "SUBSCRIBE", value.as_bytes(), users),
        Verdict::Failed
    );
}

#[test]
fn verify_request_compares_targets_not_bytes() {
    let mut auth = auth();
    let c = challenge(&auth, T0, Algorithm::Sha256);
    let mut nc = 0;
    let mut check = |request_uri: &str, digest_uri: &str| {
        nc += 1;
        let value = c.authorization("INVITE", digest_uri, "1001", "secret", "abc", nc);
        auth.verify_request(
            T0,
            "INVITE",
            request_uri.as_bytes(),
            value.as_bytes(),
            users,
        )
    };
    assert_eq!(
        check(
            "sip:*36@pbx.example.com",
            "sip:*36@PBX.example.com:5060;transport=udp"
        ),
        ok("1001")
    );
    assert_eq!(
        check(
            "sip:%2A368000@pbx.example.com;user=phone",
            "sip:*368000@pbx.example.com"
        ),
        ok("1001")
    );
    assert_eq!(check("sip:*36@[::1]:5060", "sip:*36@[::1]"), ok("1001"));
    let mismatch = Verdict::Malformed("Digest URI Does Not Match Request-URI");
    assert_eq!(
        check("sip:*39@pbx.example.com", "sip:*36@pbx.example.com"),
        mismatch
    );
    assert_eq!(
        check("sip:*36@other.example.com", "sip:*36@pbx.example.com"),
        mismatch
    );
    assert_eq!(
        check("sips:*36@pbx.example.com", "sip:*36@pbx.example.com"),
        mismatch
    );
    assert_eq!(check("not a uri", "sip:*36@pbx.example.com"), mismatch);
}

#[test]
fn malformed_forms_are_refused_cleanly() {
    let auth = auth();
    let c = challenge(&auth, T0, Algorithm::Md5);
    let good = answer(&c, "1001", "secret", 1);
    let nonce = &c.nonce;
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "Unsupported Authorization Scheme"),
        (
            "Basic MTAwMTpzZWNyZXQ=".into(),
            "Unsupported Authorization Scheme",
        ),
        ("Digest".into(), "Missing Digest Parameters"),
        (
            good.replace("username=\"1001\", ", ""),
            "Missing Digest Username",
        ),
        (
            good.replace("response=", "resp="),
            "Missing Digest Response",
        ),
        (
            format!("{good}, nonce=\"{nonce}\""),
            "Duplicate Digest Parameter",
        ),
        (
            format!("{good}, display=\"Alice"),
            "Unterminated Quoted String",
        ),
        (
            good.replace("nc=00000001", "nc=0x000001"),
            "Bad Digest Nonce Count",
        ),
        (
            good.replace("algorithm=MD5", "algorithm=MD5-sess"),
            "Unsupported Digest Algorithm",
        ),
        (
            good.replace("realm=\"pbx.example.com\"", "realm=\"asterisk\""),
            "Wrong Realm",
        ),
        (
            good.replace("uri=\"sip:", "uri=\"http:"),
            "Digest URI Is Not A SIP URI",
        ),
        (
            good.replace(", qop=auth, nc=00000001, cnonce=\"0a4f113b\"", ""),
            "Digest Qop Required",
        ),
    ];
    for (value, reason) in cases {
        let mut auth = Authenticator::new(REALM, SECRET, 300);
        let verdict = auth.verify(T0, "INVITE", value.as_bytes(), users);
        assert_eq!(verdict, Verdict::Malformed(reason), "{value}");
        assert_eq!(verdict.status_code(), 400);
    }
}

/// sipvicious and friends send cut-off headers. Without `opaque` the last
/// parameter is the quoted `cnonce`, so every proper prefix is incomplete.
#[test]
fn every_truncation_is_refused() {
    for algorithm in [Algorithm::Md5, Algorithm::Sha256] {
        let template = auth();
        let c = Challenge {
            opaque: None,
            ..challenge(&template, T0, algorithm)
        };
        let full = answer(&c, "1001", "secret", 1);
        for end in 0..full.len() {
            let mut auth = auth();
            let verdict = auth.verify(T0, "INVITE", &full.as_bytes()[..end], users);
            assert!(!matches!(verdict, Verdict::Ok { .. }), "{end}: {verdict:?}");
        }
        assert_eq!(
            auth().verify(T0, "INVITE", full.as_bytes(), users),
            ok("1001")
        );
    }
}

/// Deterministic mutations (flip, insert, delete, splice) of a valid header:
/// never a panic, and anything accepted is still user 1001.
#[test]
fn mutated_headers_never_panic() {
    let mut auth = auth();
    let c = challenge(&auth, T0, Algorithm::Sha256);
    let full = answer(&c, "1001", "secret", 1).into_bytes();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    const INTERESTING: &[u8] = b"\"\\,= \t\r\n\0\xff;:@";
    for _ in 0..20_000 {
        let mut value = full.clone();
        for _ in 0..=next() % 4 {
            let at = (next() as usize) % (value.len() + 1);
            let byte = if next() % 2 == 0 {
                INTERESTING[(next() as usize) % INTERESTING.len()]
            } else {
                next() as u8
            };
            match next() % 4 {
                0 if at < value.len() => value[at] = byte,
                1 => value.insert(at, byte),
                2 if at < value.len() => {
                    value.remove(at);
                }
                _ => value.truncate(at),
            }
        }
        if let Verdict::Ok { username } = auth.verify(T0, "INVITE", &value, users) {
            assert_eq!(username, "1001");
        }
    }
    let garbage: Vec<u8> = (0..4096).map(|_| next() as u8).collect();
    for end in (0..garbage.len()).step_by(7) {
        let _ = auth.verify(T0, "INVITE", &garbage[..end], users);
    }
}

#[test]
fn debug_output_hides_secrets() {
    let text = format!("{:?} {:?}", auth(), Secret::Password("hunter2".into()));
    assert!(!text.contains("hunter2"));
    assert!(text.contains("Authenticator"));
}
