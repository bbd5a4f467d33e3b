//! Digest authentication: the RFC vectors and the server's nonce rules.

use std::time::Duration;

use callpark_sip::digest::{
    Algorithm, Authorization, Credential, Nonces, Verdict, expected_response, ha1,
};

/// RFC 7616 §3.9.1, the same request answered with SHA-256 and with MD5.
#[test]
fn rfc7616_vectors() {
    let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
    let realm = "http-auth@example.org";
    for (algorithm, response) in [
        (
            Algorithm::Sha256,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
        ),
        (Algorithm::Md5, "8ca523f5e9506fed4657c9700eebdbec"),
    ] {
        let stored = ha1(algorithm, "Mufasa", realm, "Circle of Life");
        assert_eq!(
            expected_response(
                algorithm,
                &stored,
                nonce,
                "00000001",
                cnonce,
                "auth",
                "GET",
                "/dir/index.html"
            ),
            response,
            "{algorithm:?}"
        );
    }
}

/// RFC 2617 §3.5, the MD5 example most phones were tested against.
#[test]
fn rfc2617_vector() {
    let stored = ha1(
        Algorithm::Md5,
        "Mufasa",
        "testrealm@host.com",
        "Circle Of Life",
    );
    assert_eq!(
        expected_response(
            Algorithm::Md5,
            &stored,
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            "00000001",
            "0a4f113b",
            "auth",
            "GET",
            "/dir/index.html"
        ),
        "6629fae49393a05397450978507c4ef1"
    );
}

#[test]
fn authorization_headers_are_read_with_quotes_escapes_and_any_order() {
    let a = Authorization::parse(
        r#"Digest username="al\"ice", realm="park", nonce="n1", uri="sip:701@10.0.0.1", response="ABCD", algorithm=SHA-256, cnonce="c, 1", qop=auth, nc=0000000a"#,
    )
    .unwrap();
    assert_eq!(a.username, "al\"ice");
    assert_eq!(a.cnonce.as_deref(), Some("c, 1"));
    assert_eq!((a.algorithm, a.nc_value()), (Algorithm::Sha256, Some(10)));
    // nc in decimal or of the wrong width is refused, as is Basic.
    assert!(
        Authorization::parse(
            r#"Digest username="a", realm="r", nonce="n", uri="u", response="r", nc=10"#
        )
        .is_err()
    );
    assert!(Authorization::parse("Basic YWxpY2U6c2VjcmV0").is_err());
    assert!(
        Authorization::parse(
            r#"Digest username="a", realm="r", nonce="n", uri="u", response="r", algorithm=SHA-512"#
        )
        .is_err()
    );
}

const SECRET: [u8; 32] = [7; 32];

fn credential() -> Credential {
    Credential {
        username: "alice".into(),
        ha1_md5: Some(ha1(Algorithm::Md5, "alice", "park", "secret")),
        ha1_sha256: Some(ha1(Algorithm::Sha256, "alice", "park", "secret")),
    }
}

/// What a phone answers to `nonce` with `password`.
fn answer(algorithm: Algorithm, nonce: &str, nc: u32, password: &str) -> Authorization {
    let uri = "sip:701@127.0.0.1";
    let nc = format!("{nc:08x}");
    let stored = ha1(algorithm, "alice", "park", password);
    Authorization {
        username: "alice".into(),
        realm: "park".into(),
        nonce: nonce.into(),
        uri: uri.into(),
        response: expected_response(algorithm, &stored, nonce, &nc, "cn", "auth", "INVITE", uri),
        algorithm,
        cnonce: Some("cn".into()),
        qop: Some("auth".into()),
        nc: Some(nc),
    }
}

fn nonce_of(challenge: &str) -> String {
    challenge
        .split("nonce=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string()
}

#[test]
fn a_challenge_offers_sha256_then_md5_and_each_authenticates() {
    let mut nonces = Nonces::new(SECRET, "park", Duration::from_secs(300));
    let now = Duration::from_secs(10);
    let challenges = nonces.challenges(now, false);
    assert!(
        challenges[0].contains("algorithm=SHA-256"),
        "{challenges:?}"
    );
    assert!(challenges[1].contains("algorithm=MD5"), "{challenges:?}");
    assert!(challenges.iter().all(|c| c.contains("qop=\"auth\"")));
    let cred = credential();
    let lookup = |u: &str| (u == "alice").then_some(&cred);
    for algorithm in [
        Algorithm::Sha256,
        Algorithm::Md5,
        Algorithm::Md5Sess,
        Algorithm::Sha256Sess,
    ] {
        let nonce = nonce_of(&nonces.challenges(now, false)[0]);
        let a = answer(algorithm, &nonce, 1, "secret");
        assert_eq!(
            nonces.verify(now, "INVITE", "sip:701@127.0.0.1", &a, lookup),
            Verdict::Authenticated("alice".into()),
            "{algorithm:?}"
        );
    }
}

#[test]
fn wrong_passwords_forged_nonces_and_replays_are_refused() {
    let mut nonces = Nonces::new(SECRET, "park", Duration::from_secs(300));
    let cred = credential();
    let lookup = |u: &str| (u == "alice").then_some(&cred);
    let now = Duration::from_secs(10);
    let nonce = nonce_of(&nonces.challenges(now, false)[0]);
    let uri = "sip:701@127.0.0.1";
    let wrong = answer(Algorithm::Sha256, &nonce, 1, "guess");
    assert_eq!(
        nonces.verify(now, "INVITE", uri, &wrong, lookup),
        Verdict::Refused("wrong response")
    );
    // A nonce made up, or another server's (another secret).
    let mut other = Nonces::new([9; 32], "park", Duration::from_secs(300));
    let foreign = nonce_of(&other.challenges(now, false)[0]);
    let a = answer(Algorithm::Sha256, &foreign, 1, "secret");
    assert_eq!(
        nonces.verify(now, "INVITE", uri, &a, lookup),
        Verdict::Refused("not a nonce of ours")
    );
    // nc 1 passes once; the same nc again is a replay; nc 2 passes.
    let first = answer(Algorithm::Sha256, &nonce, 1, "secret");
    assert!(matches!(
        nonces.verify(now, "INVITE", uri, &first, lookup),
        Verdict::Authenticated(_)
    ));
    assert_eq!(
        nonces.verify(now, "INVITE", uri, &first, lookup),
        Verdict::Refused("a replayed nc")
    );
    let second = answer(Algorithm::Sha256, &nonce, 2, "secret");
    assert!(matches!(
        nonces.verify(now, "INVITE", uri, &second, lookup),
        Verdict::Authenticated(_)
    ));
    // Answering for another Request-URI than the request's.
    assert!(matches!(
        nonces.verify(
            now,
            "INVITE",
            "sip:702@127.0.0.1",
            &answer(Algorithm::Sha256, &nonce, 3, "secret"),
            lookup
        ),
        Verdict::Refused(_)
    ));
    // No qop: refused (nc is what replay protection counts).
    let mut bare = answer(Algorithm::Md5, &nonce, 4, "secret");
    bare.qop = None;
    assert!(matches!(
        nonces.verify(now, "INVITE", uri, &bare, lookup),
        Verdict::Refused(_)
    ));
}

#[test]
fn past_its_lifetime_a_nonce_is_stale_and_the_challenge_says_so() {
    let mut nonces = Nonces::new(SECRET, "park", Duration::from_secs(300));
    let cred = credential();
    let lookup = |u: &str| (u == "alice").then_some(&cred);
    let nonce = nonce_of(&nonces.challenges(Duration::from_secs(10), false)[0]);
    let a = answer(Algorithm::Sha256, &nonce, 1, "secret");
    assert_eq!(
        nonces.verify(
            Duration::from_secs(311),
            "INVITE",
            "sip:701@127.0.0.1",
            &a,
            lookup
        ),
        Verdict::Stale
    );
    // A wrong password on a stale nonce is just wrong.
    let wrong = answer(Algorithm::Sha256, &nonce, 1, "guess");
    assert!(matches!(
        nonces.verify(
            Duration::from_secs(311),
            "INVITE",
            "sip:701@127.0.0.1",
            &wrong,
            lookup
        ),
        Verdict::Refused(_)
    ));
    assert!(nonces.challenges(Duration::from_secs(311), true)[0].ends_with("stale=true"));
}

#[test]
fn remembered_nonces_are_bounded_and_a_forgotten_one_is_stale_not_replayable() {
    let mut nonces = Nonces::new(SECRET, "park", Duration::from_secs(300));
    nonces.set_max_seen(3);
    let cred = credential();
    let lookup = |u: &str| (u == "alice").then_some(&cred);
    let uri = "sip:701@127.0.0.1";
    let mut used = Vec::new();
    for i in 0..5u64 {
        let now = Duration::from_secs(10 + i);
        let nonce = nonce_of(&nonces.challenges(now, false)[0]);
        let a = answer(Algorithm::Sha256, &nonce, 1, "secret");
        assert!(matches!(
            nonces.verify(now, "INVITE", uri, &a, lookup),
            Verdict::Authenticated(_)
        ));
        used.push(a);
    }
    assert!(nonces.remembered() <= 3);
    // The oldest was forgotten: replaying it is stale, never accepted.
    let now = Duration::from_secs(20);
    assert_eq!(
        nonces.verify(now, "INVITE", uri, &used[0], lookup),
        Verdict::Stale
    );
    assert_eq!(
        nonces.verify(now, "INVITE", uri, &used[4], lookup),
        Verdict::Refused("a replayed nc")
    );
}
