//! Media: RTCP, latching and who may take a leg's audio, music paced in shards.

use callpark_testkit::*;

/// RTCP (RFC 3550): a parked caller gets sender reports for its music on
/// its RTP port + 1, with the music's SSRC and counts that match what was
/// sent; a bridged call's RTCP is relayed to the other leg's RTCP port.
#[test]
fn rtcp_sender_reports_for_music_and_relayed_reports_when_bridged() {
    let mut w = World::new(engine(vec![], Access::All));
    let mut bob = Phone::new("bob", 6001);
    w.call(
        &mut bob,
        "r1",
        "701",
        "Referred-By: <sip:alice@127.0.0.1:6009>\r\n",
    );
    let rtp = w.advance(Duration::from_millis(5_010));
    let music_ssrc = rtp_rs::RtpReader::new(&rtp[0].1).unwrap().ssrc();
    let reports: Vec<(SocketAddr, Vec<u8>)> = std::iter::from_fn(|| w.engine.poll_rtcp()).collect();
    assert_eq!(reports.len(), 1, "one report after 5 s");
    let (dest, sr) = &reports[0];
    assert_eq!(*dest, SocketAddr::new(bob.rtp().ip(), bob.rtp().port() + 1));
    assert_eq!(callpark_media::rtcp::sender_ssrc(sr), Some(music_ssrc));
    let packets = u32::from_be_bytes(sr[20..24].try_into().unwrap());
    assert!(
        (packets as i64 - rtp.len() as i64).abs() <= 1,
        "{packets} reported, {} sent",
        rtp.len()
    );
    let last_ts = rtp_rs::RtpReader::new(&rtp.last().unwrap().1)
        .unwrap()
        .timestamp();
    let sr_ts = u32::from_be_bytes(sr[16..20].try_into().unwrap());
    assert!(
        (sr_ts.wrapping_sub(last_ts) as i32).abs() <= 160,
        "{sr_ts} vs {last_ts}"
    );
    w.advance(Duration::from_secs(5));
    assert_eq!(std::iter::from_fn(|| w.engine.poll_rtcp()).count(), 1);
    // Retrieved: no more reports of ours; the phones' RTCP is relayed.
    let mut carol = Phone::new("carol", 6003);
    w.call(&mut carol, "r2", "*88701", "");
    let rr = [0x80u8, 201, 0, 1, 0, 0, 0, 9];
    let mut relayed = Vec::new();
    let bob_rtcp = SocketAddr::new(bob.rtp().ip(), bob.rtp().port() + 1);
    let carol_rtcp = SocketAddr::new(carol.rtp().ip(), carol.rtp().port() + 1);
    w.engine
        .handle_rtcp(w.now, &rr, bob_rtcp, |d, p| relayed.push((d, p.to_vec())));
    assert_eq!(relayed, [(carol_rtcp, rr.to_vec())]);
    // Noise and strangers are dropped.
    w.engine.handle_rtcp(w.now, b"hello", bob_rtcp, |d, p| {
        relayed.push((d, p.to_vec()))
    });
    w.engine
        .handle_rtcp(w.now, &rr, "127.0.0.1:9999".parse().unwrap(), |d, p| {
            relayed.push((d, p.to_vec()))
        });
    assert_eq!(relayed.len(), 1);
    w.advance(Duration::from_secs(6));
    assert_eq!(std::iter::from_fn(|| w.engine.poll_rtcp()).count(), 0);
}

/// A stranger on the retriever's IP who sends RTP before the retriever
/// does may be latched for a moment, but the address the retriever's SDP
/// names takes the leg back as soon as it speaks, for good: the stranger
/// then gets nothing. A packet of a codec the leg never agreed to does not
/// latch at all.
#[test]
fn a_stranger_on_the_phones_ip_cannot_keep_its_audio() {
    let mut w = World::new(engine(vec![], Access::All));
    let mut bob = Phone::new("bob", 6001);
    w.call(
        &mut bob,
        "h1",
        "701",
        "Referred-By: <sip:alice@127.0.0.1:6009>\r\n",
    );
    let mut carol = Phone::new("carol", 6003);
    w.call(&mut carol, "h2", "*88701", "");
    let stranger: SocketAddr = "127.0.0.1:9999".parse().unwrap();
    let mut relayed = Vec::new();
    // A codec Carol never agreed to (PT 18): no latch.
    let mut odd = rtp_rs::RtpPacketBuilder::new()
        .payload_type(18)
        .ssrc(66)
        .payload(&[0; 20])
        .build()
        .unwrap();
    w.engine
        .handle_rtp(w.now, &mut odd, stranger, |d, _| relayed.push(d));
    w.engine
        .handle_rtp(w.now, &mut voice(9, 1), bob.rtp(), |d, _| relayed.push(d));
    assert_eq!(relayed, [carol.rtp()], "Bob's audio still goes to Carol");
    // The stranger sends PCMU first: latched for now.
    w.engine
        .handle_rtp(w.now, &mut voice(66, 1), stranger, |d, _| relayed.push(d));
    // Carol speaks from her SDP address: she takes the leg back.
    w.engine
        .handle_rtp(w.now, &mut voice(11, 1), carol.rtp(), |d, _| {
            relayed.push(d)
        });
    relayed.clear();
    w.engine
        .handle_rtp(w.now, &mut voice(9, 2), bob.rtp(), |d, _| relayed.push(d));
    assert_eq!(relayed, [carol.rtp()], "Bob's audio is Carol's again");
    // The stranger's packets are dropped from now on.
    relayed.clear();
    w.engine
        .handle_rtp(w.now, &mut voice(66, 2), stranger, |d, _| relayed.push(d));
    assert!(relayed.is_empty(), "{relayed:?}");
    w.engine
        .handle_rtp(w.now, &mut voice(9, 3), bob.rtp(), |d, _| relayed.push(d));
    assert_eq!(relayed, [carol.rtp()]);
}

#[test]
fn rtp_from_another_port_latches_only_when_unambiguous() {
    let mut w = World::new(engine(vec![], Access::All));
    let mut bob = Phone::new("bob", 6001);
    w.call(&mut bob, "s1", "701", "");
    let mut carol = Phone::new("carol", 6011);
    w.call(&mut carol, "s2", "*88701", "");
    // Bob's packets come from port 40000, not the 7001 he announced: the
    // only silent leg from 127.0.0.1 is... both are silent, so no latching.
    let mut p = rtp_rs::RtpPacketBuilder::new()
        .payload_type(0)
        .ssrc(1)
        .sequence(1.into())
        .timestamp(0)
        .payload(&[0x11; 160])
        .build()
        .unwrap();
    let mut relayed = Vec::new();
    let nat: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    w.engine
        .handle_rtp(w.now, &mut p.clone(), nat, |d, _| relayed.push(d));
    assert!(relayed.is_empty(), "two legs from that IP could be it");
    // Carol speaks from her announced port; now Bob's leg is the only
    // silent one from 127.0.0.1 and latches.
    w.engine
        .handle_rtp(w.now, &mut p.clone(), carol.rtp(), |d, _| relayed.push(d));
    assert_eq!(relayed, [bob.rtp()]);
    w.engine
        .handle_rtp(w.now, &mut p, nat, |d, _| relayed.push(d));
    assert_eq!(relayed[1], carol.rtp());
    // And Carol's audio now goes to where Bob really is.
    let mut back = rtp_rs::RtpPacketBuilder::new()
        .payload_type(0)
        .ssrc(2)
        .sequence(1.into())
        .timestamp(0)
        .payload(&[0x22; 160])
        .build()
        .unwrap();
    w.engine
        .handle_rtp(w.now, &mut back, carol.rtp(), |d, _| relayed.push(d));
    assert_eq!(relayed[2], nat);
}

#[test]
fn hold_music_in_shards_follows_the_park_the_latched_address_and_the_retrieve() {
    let mut w = World::new(engine(vec![], Access::All));
    w.engine.pace_music_in_shards(2);
    let mut shards = [
        callpark_media::MusicShard::new(),
        callpark_media::MusicShard::new(),
    ];
    let mut bob = Phone::new("bob", 6001);
    assert_eq!(w.call(&mut bob, "m1", "701", "").status, 200);
    // The engine paces nothing itself; a shard plays to the SDP address.
    let paced_here = w
        .engine
        .pace_media(w.now + Duration::from_millis(50), |_, _| {});
    assert_eq!(paced_here.sent, 0);
    assert_eq!(pace_shards(&mut w, &mut shards, 100), [bob.rtp(); 5]);
    // Bob's RTP really comes from behind a NAT: the music follows it.
    let nat: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let mut p = rtp_rs::RtpPacketBuilder::new()
        .payload_type(0)
        .ssrc(1)
        .sequence(1.into())
        .timestamp(0)
        .payload(&[0x11; 160])
        .build()
        .unwrap();
    w.engine.handle_rtp(w.now, &mut p, nat, |_, _| {});
    assert_eq!(pace_shards(&mut w, &mut shards, 100), [nat; 5]);
    // Retrieved: the shard stops.
    let mut carol = Phone::new("carol", 6011);
    assert_eq!(w.call(&mut carol, "m2", "*88701", "").status, 200);
    assert!(pace_shards(&mut w, &mut shards, 100).is_empty());
    assert!(shards.iter().all(|s| s.is_empty()));
}
