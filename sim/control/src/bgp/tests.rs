//! Speakers driven by a tiny in-memory fabric: every frame takes a fixed one-way delay, and a
//! predicate may drop any of them.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use ipnet::Ipv4Net;
use netsim_core::{SimDuration, SimTime, StableHasher};
use proptest::prelude::*;

use super::wire::{self, Message, Notification, Open, Origin, PathAttributes, Update, flags};
use super::*;

/// A predicate on (time, index of the frame among all frames sent, frame): drop it if true.
type Loss = Box<dyn FnMut(SimTime, u64, &[u8]) -> bool>;

/// Speakers on a fabric with a fixed delay.
struct Net {
    now: SimTime,
    speakers: Vec<Speaker>,
    queue: BTreeMap<(SimTime, u64), (usize, Vec<u8>)>,
    sent: u64,
    delay: SimDuration,
    loss: Loss,
    /// The routing table each speaker's events built.
    tables: Vec<BTreeMap<Ipv4Net, Vec<Ipv4Addr>>>,
    /// Every event, with its time and speaker.
    log: Vec<(SimTime, usize, RouteEvent)>,
    /// A hash of every frame sent, to compare runs.
    hash: StableHasher,
    /// Segments with BGP bytes sent by each speaker (retransmissions included).
    data_segments: Vec<u64>,
}

fn host(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, i as u8 + 1)
}

fn block(i: usize) -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(10, 244, i as u8, 0), 26).unwrap()
}

fn at(ms: u64) -> SimTime {
    SimTime::ZERO + SimDuration::from_millis(ms)
}

impl Net {
    fn new(n: usize, reflectors: usize) -> Net {
        let speakers = (0..n)
            .map(|i| {
                let mut config = BgpConfig::new(host(i), [2, 0, 0, 0, 0, i as u8]);
                config.route_reflector = i < reflectors;
                Speaker::new(config)
            })
            .collect();
        Net {
            now: SimTime::ZERO,
            speakers,
            queue: BTreeMap::new(),
            sent: 0,
            delay: SimDuration::from_micros(500),
            loss: Box::new(|_, _, _| false),
            tables: vec![BTreeMap::new(); n],
            log: Vec::new(),
            hash: StableHasher::new(),
            data_segments: vec![0; n],
        }
    }

    /// `n` speakers peering with each other, each originating its own block.
    fn mesh(n: usize) -> Net {
        let mut net = Net::new(n, 0);
        for i in 0..n {
            for j in (0..n).filter(|&j| j != i) {
                net.speakers[i].add_peer(SimTime::ZERO, host(j), false);
            }
            net.speakers[i].originate(SimTime::ZERO, block(i));
            net.pump(i);
        }
        net
    }

    /// Speakers `0..reflectors` reflect for all the others (their clients); everyone originates
    /// its own block.
    fn reflected(n: usize, reflectors: usize) -> Net {
        let mut net = Net::new(n, reflectors);
        for i in 0..n {
            for j in (0..n).filter(|&j| j != i) {
                match (i < reflectors, j < reflectors) {
                    (true, true) => net.speakers[i].add_peer(SimTime::ZERO, host(j), false),
                    (true, false) => net.speakers[i].add_peer(SimTime::ZERO, host(j), true),
                    (false, true) => net.speakers[i].add_peer(SimTime::ZERO, host(j), false),
                    (false, false) => {}
                }
            }
            net.speakers[i].originate(SimTime::ZERO, block(i));
            net.pump(i);
        }
        net
    }

    /// Moves speaker `i`'s frames onto the fabric and its events into its table.
    fn pump(&mut self, i: usize) {
        while let Some((dst, frame)) = self.speakers[i].poll_transmit() {
            check_frame(&frame, host(i), dst);
            self.hash.write_bytes(&frame);
            if !wire::parse_frame(&frame).unwrap().payload.is_empty() {
                self.data_segments[i] += 1;
            }
            let index = self.sent;
            self.sent += 1;
            let Some(j) = (0..self.speakers.len()).find(|&j| host(j) == dst) else { continue };
            if !(self.loss)(self.now, index, &frame) {
                self.queue.insert((self.now + self.delay, index), (j, frame));
            }
        }
        while let Some(event) = self.speakers[i].poll_event() {
            match &event {
                RouteEvent::Installed { prefix, next_hops } => {
                    self.tables[i].insert(*prefix, next_hops.clone())
                }
                RouteEvent::Withdrawn { prefix } => self.tables[i].remove(prefix),
            };
            self.log.push((self.now, i, event));
        }
    }

    /// Runs every frame delivery and timer up to `end`.
    fn run_until(&mut self, end: SimTime) {
        for _ in 0..10_000_000 {
            let frame = self.queue.first_key_value().map(|(k, _)| k.0);
            let timer = self.speakers.iter().filter_map(Speaker::poll_timeout).min();
            let next = match (frame, timer) {
                (Some(f), Some(t)) => f.min(t),
                (f, t) => f.or(t).unwrap_or(SimTime::NEVER),
            };
            if next > end {
                self.now = end;
                return;
            }
            assert!(next >= self.now, "time went backwards");
            self.now = next;
            if frame == Some(next) {
                let (_, (j, bytes)) = self.queue.pop_first().unwrap();
                self.speakers[j].handle_frame(next, &bytes);
                // Handed back to be written over: every frame checked in `pump` was built in
                // a used buffer, often a longer one.
                self.speakers[j].recycle(bytes);
                self.pump(j);
            } else {
                for i in 0..self.speakers.len() {
                    if self.speakers[i].poll_timeout().is_some_and(|t| t <= next) {
                        self.speakers[i].handle_timeout(next);
                        self.pump(i);
                    }
                }
            }
        }
        panic!("no progress");
    }

    fn routes(&self, i: usize) -> BTreeMap<Ipv4Net, Vec<Ipv4Addr>> {
        let routes: BTreeMap<_, _> = self.speakers[i].routes().map(|(p, h)| (p, h.to_vec())).collect();
        assert_eq!(routes, self.tables[i], "speaker {i}: routes() and its events disagree");
        routes
    }

    /// Runs speaker `i`'s input `f` at the current time and pumps it.
    fn with(&mut self, i: usize, f: impl FnOnce(&mut Speaker, SimTime)) {
        f(&mut self.speakers[i], self.now);
        self.pump(i);
    }
}

/// Checks a frame with etherparse: Ethernet II, IPv4 and TCP with correct checksums, from `src`
/// to `dst`, one side on port 179, payload within the segment budget.
fn check_frame(frame: &[u8], src: Ipv4Addr, dst: Ipv4Addr) {
    let packet = SlicedPacket::from_ethernet(frame).expect("a well-formed frame");
    let Some(NetSlice::Ipv4(ip)) = &packet.net else { panic!("not IPv4") };
    let header = ip.header().to_header();
    assert_eq!(header.header_checksum, header.calc_header_checksum(), "IPv4 checksum");
    assert_eq!((Ipv4Addr::from(header.source), Ipv4Addr::from(header.destination)), (src, dst));
    let Some(TransportSlice::Tcp(tcp)) = &packet.transport else { panic!("not TCP") };
    let expected = tcp.to_header().calc_checksum_ipv4(&header, tcp.payload()).unwrap();
    assert_eq!(tcp.checksum(), expected, "TCP checksum");
    assert!(tcp.source_port() == 179 || tcp.destination_port() == 179);
    assert!(tcp.payload().len() <= wire::SEGMENT_LEN_MAX);
}

/// Every speaker of `expect` has exactly these routes.
fn assert_routes(net: &Net, i: usize, expect: &[(Ipv4Net, Vec<Ipv4Addr>)]) {
    let expect: BTreeMap<_, _> = expect.iter().cloned().collect();
    assert_eq!(net.routes(i), expect, "routes of speaker {i}");
}

/// Speaker `i` reaches every block but its own (and those in `gone`) at its originating host.
fn assert_all_blocks(net: &Net, i: usize, gone: &[usize]) {
    let n = net.speakers.len();
    let expect: Vec<_> =
        (0..n).filter(|j| *j != i && !gone.contains(j)).map(|j| (block(j), vec![host(j)])).collect();
    assert_routes(net, i, &expect);
}

#[test]
fn full_mesh_converges() {
    let mut net = Net::mesh(5);
    net.run_until(at(2_000));
    for i in 0..5 {
        assert_eq!(net.speakers[i].established_count(), 4);
        assert_all_blocks(&net, i, &[]);
        let c = net.speakers[i].counters();
        assert_eq!((c.session_ups, c.session_downs, c.malformed, c.retransmissions), (4, 0, 0, 0));
        assert_eq!(c.sent.open, 4);
        assert!(c.sent.keepalive >= 4 && c.received.update >= 4);
    }
    // Full mesh: nothing is re-advertised, so each speaker announced its block to 4 peers.
    assert!(net.speakers.iter().all(|s| s.counters().prefixes_announced == 4));
}

#[test]
fn withdrawal_propagates_and_returns() {
    let mut net = Net::mesh(5);
    net.run_until(at(2_000));
    net.with(2, |s, now| s.withdraw(now, block(2)));
    net.run_until(at(2_100));
    for i in [0, 1, 3, 4] {
        assert_all_blocks(&net, i, &[2]);
    }
    net.with(2, |s, now| s.originate(now, block(2)));
    net.run_until(at(2_200));
    for i in 0..5 {
        assert_all_blocks(&net, i, &[]);
    }
}

#[test]
fn ecmp_for_a_prefix_of_two_hosts() {
    let anycast: Ipv4Net = "10.96.0.0/24".parse().unwrap();
    let mut net = Net::mesh(4);
    net.with(0, |s, now| s.originate(now, anycast));
    net.with(1, |s, now| s.originate(now, anycast));
    net.run_until(at(2_000));
    for i in [2, 3] {
        assert_eq!(net.routes(i)[&anycast], vec![host(0), host(1)]);
    }
    // A local origination wins: the originators install nothing for it.
    assert!(!net.routes(0).contains_key(&anycast) && !net.routes(1).contains_key(&anycast));
    net.with(0, |s, now| s.withdraw(now, anycast));
    net.run_until(at(2_100));
    for i in [0, 2, 3] {
        assert_eq!(net.routes(i)[&anycast], vec![host(1)]);
    }
}

#[test]
fn reflectors_give_every_client_every_prefix() {
    let mut net = Net::reflected(8, 2);
    net.run_until(at(2_000));
    for i in 2..8 {
        let sessions: Vec<_> = net.speakers[i].sessions().collect();
        assert_eq!(
            sessions,
            vec![(host(0), SessionState::Established), (host(1), SessionState::Established)]
        );
        assert_all_blocks(&net, i, &[]);
    }
    for r in 0..2 {
        assert_eq!(net.speakers[r].established_count(), 7);
        assert_all_blocks(&net, r, &[]);
    }
    // What client 2 learned of client 3's block through reflector 0: RFC 4456's attributes
    // added, NEXT_HOP untouched.
    let learned = net.speakers[2].rib.path_attributes(block(3), host(0)).unwrap();
    assert_eq!(learned.next_hop, host(3));
    assert_eq!(learned.originator_id, Some(host(3)));
    assert_eq!(learned.cluster_list, vec![host(0)]);
    // Reflector 1 learned it from reflector 0 too, but prefers the client's own path.
    let via_0 = net.speakers[1].rib.path_attributes(block(3), host(0)).unwrap();
    assert_eq!(via_0.cluster_list, vec![host(0)]);
    assert_eq!(net.speakers[1].rib.best_source(block(3)), Some(host(3)));
}

#[test]
fn a_failed_client_is_withdrawn_by_the_reflectors() {
    let mut net = Net::reflected(8, 2);
    net.run_until(at(2_000));
    net.with(5, |s, now| s.set_down(now, true));
    net.run_until(at(5_100));
    for i in (0..8).filter(|&i| i != 5) {
        assert_all_blocks(&net, i, &[5]);
    }
    // Both reflectors sent the withdrawal to the five remaining clients and to each other.
    for r in 0..2 {
        assert!(net.speakers[r].counters().prefixes_withdrawn >= 6);
    }
}

#[test]
fn quick_restarts_reconnect_before_the_hold_time() {
    // Host 0 opens every connection it has, host 3 only listens: both restart paths.
    for restarted in [0, 3] {
        let mut net = Net::mesh(4);
        net.run_until(at(2_000));
        net.with(restarted, |s, now| s.set_down(now, true));
        net.run_until(at(2_500));
        net.with(restarted, |s, now| s.set_down(now, false));
        net.run_until(at(4_500));
        for i in 0..4 {
            assert_eq!(net.speakers[i].established_count(), 3, "restarted {restarted}, speaker {i}");
            assert_all_blocks(&net, i, &[]);
            assert_eq!(net.speakers[i].counters().hold_timer_expiries, 0);
        }
        // The others noticed the restart from the new connection (or a reset), not the timer.
        assert!((0..4).filter(|&i| i != restarted).all(|i| net.speakers[i].counters().session_downs == 1));
    }
}

#[test]
fn looped_routes_are_dropped() {
    let mut net = established_pair();
    let update = |prefix: &str, originator_id, cluster_list| {
        let attributes = PathAttributes {
            origin: Origin::Igp,
            as_path: Vec::new(),
            next_hop: host(1),
            local_pref: Some(100),
            originator_id,
            cluster_list,
        };
        Message::Update(Update {
            withdrawn: Vec::new(),
            attributes: Some(attributes),
            nlri: vec![prefix.parse().unwrap()],
        })
    };
    let cases = [
        (update("10.1.0.0/16", Some(host(0)), Vec::new()), false),
        (update("10.2.0.0/16", None, vec![host(7), host(0)]), false),
        (update("10.3.0.0/16", Some(host(5)), vec![host(7)]), true),
    ];
    for (message, accepted) in cases {
        let Message::Update(u) = &message else { unreachable!() };
        let prefix = u.nlri[0];
        let frame = segment_from_1_to_0(&net, &message.emit());
        net.speakers[0].handle_frame(net.now, &frame);
        net.pump(0);
        assert_eq!(net.routes(0).contains_key(&prefix), accepted, "{prefix}");
    }
    assert_eq!(net.speakers[0].established_count(), 1);
}

#[test]
fn clients_survive_a_reflector_failure() {
    let mut net = Net::reflected(8, 2);
    net.run_until(at(2_000));
    let failed_at = net.now;
    net.with(0, |s, now| s.set_down(now, true));
    assert_eq!(net.speakers[0].routes().count(), 0);
    // Within the hold time the clients still hold their session to the failed reflector.
    net.run_until(at(3_900));
    assert!((2..8).all(|i| net.speakers[i].established_count() == 2));
    net.run_until(at(5_100));
    for i in 2..8 {
        assert_eq!(net.speakers[i].established_count(), 1);
        assert_eq!(net.speakers[i].counters().hold_timer_expiries, 1);
        // Every route stays, through the other reflector; the failed host's own block goes.
        assert_all_blocks(&net, i, &[0]);
    }
    let withdrawn: Vec<_> = net
        .log
        .iter()
        .filter(|(t, i, e)| *t > failed_at && *i >= 2 && matches!(e, RouteEvent::Withdrawn { .. }))
        .map(|(_, _, e)| e.clone())
        .collect();
    assert!(withdrawn.iter().all(|e| *e == RouteEvent::Withdrawn { prefix: block(0) }), "{withdrawn:?}");
    // Recovery: sessions come back from Idle and the reflector relearns everything.
    net.with(0, |s, now| s.set_down(now, false));
    net.run_until(at(8_000));
    for i in 0..8 {
        assert_eq!(net.speakers[i].established_count(), if i < 2 { 7 } else { 2 });
        assert_all_blocks(&net, i, &[]);
    }
}

#[test]
fn a_failed_host_disappears_after_the_hold_time() {
    let mut net = Net::mesh(4);
    net.run_until(at(2_000));
    net.with(3, |s, now| s.set_down(now, true));
    net.run_until(at(3_900));
    assert!((0..3).all(|i| net.routes(i).contains_key(&block(3))));
    net.run_until(at(5_100));
    for i in 0..3 {
        assert_all_blocks(&net, i, &[3]);
        assert_eq!(net.speakers[i].established_count(), 2);
        assert_eq!(net.speakers[i].counters().hold_timer_expiries, 1);
        assert_eq!(net.speakers[i].counters().session_downs, 1);
    }
    net.with(3, |s, now| s.set_down(now, false));
    net.run_until(at(8_000));
    for i in 0..4 {
        assert_eq!(net.speakers[i].established_count(), 3);
        assert_all_blocks(&net, i, &[]);
    }
}

#[test]
fn lost_segments_are_retransmitted() {
    let mut net = Net::mesh(4);
    // Every third frame is lost during setup, and again while routes change.
    net.loss = Box::new(|now, index, _| {
        index % 3 == 0 && (now < at(3_000) || (at(5_000)..at(6_000)).contains(&now))
    });
    net.run_until(at(5_000));
    for i in 0..4 {
        assert_all_blocks(&net, i, &[]);
    }
    net.with(1, |s, now| s.withdraw(now, block(1)));
    net.run_until(at(5_500));
    net.with(1, |s, now| s.originate(now, block(1)));
    net.with(2, |s, now| s.withdraw(now, block(2)));
    net.run_until(at(8_000));
    for i in 0..4 {
        assert_all_blocks(&net, i, &[2]);
        assert_eq!(net.speakers[i].established_count(), 3);
    }
    let retransmissions: u64 = net.speakers.iter().map(|s| s.counters().retransmissions).sum();
    assert!(retransmissions > 0);
}

#[test]
fn a_large_table_goes_in_long_updates_across_segments() {
    let mut net = Net::mesh(2);
    let blocks: Vec<Ipv4Net> =
        "10.245.0.0/16".parse::<Ipv4Net>().unwrap().subnets(26).unwrap().take(600).collect();
    for b in &blocks {
        net.with(0, |s, now| s.originate(now, *b));
    }
    net.run_until(at(2_000));
    assert_eq!(net.routes(1).len(), 601); // and block 0
    // 601 blocks of 5 bytes with one set of attributes: a single UPDATE of 3,049 bytes, which
    // the transport cuts into three segments (each checked to be at most 1,400 bytes).
    let c = net.speakers[0].counters();
    assert_eq!((c.sent.update, c.prefixes_announced), (1, 601));
    assert_eq!(net.speakers[1].counters().received.update, 1);
    // Withdrawn one by one at the same instant: the first leaves at once; the others wait
    // for its acknowledgment as pending prefixes, and leave in one UPDATE.
    for b in &blocks[..300] {
        net.with(0, |s, now| s.withdraw(now, *b));
    }
    net.run_until(at(2_100));
    assert_eq!(net.routes(1).len(), 301);
    let c = net.speakers[0].counters();
    assert_eq!((c.sent.update, c.prefixes_withdrawn), (1 + 2, 300));
}

#[test]
fn a_table_larger_than_the_window_syncs_without_a_reset() {
    // Reflector 0 learns 20,000 prefixes from client 2, each with its own NEXT_HOP, so each in
    // its own UPDATE: 1.3 MB to reflect to client 1, eighty windows' worth and five times the
    // 4,096 segments a session could once leave unacknowledged before it was reset.
    let mut net = Net::reflected(3, 1);
    net.run_until(at(1_500));
    let mut expected: BTreeMap<_, _> = [(block(0), vec![host(0)]), (block(2), vec![host(2)])].into();
    let mut stream = Vec::new();
    let prefixes = "10.128.0.0/9".parse::<Ipv4Net>().unwrap().subnets(27).unwrap();
    for (i, prefix) in prefixes.take(20_000).enumerate() {
        let next_hop = Ipv4Addr::from(0x0b00_0000 + i as u32);
        expected.insert(prefix, vec![next_hop]);
        let attributes = PathAttributes {
            origin: Origin::Igp,
            as_path: Vec::new(),
            next_hop,
            local_pref: Some(100),
            originator_id: None,
            cluster_list: Vec::new(),
        };
        let update = Update { withdrawn: Vec::new(), attributes: Some(attributes), nlri: vec![prefix] };
        Message::Update(update).emit_into(&mut stream);
    }
    let before = net.data_segments[0];
    for chunk in stream.chunks(wire::SEGMENT_LEN_MAX) {
        let frame = segment_to(&net, 0, 2, chunk);
        net.speakers[0].handle_frame(net.now, &frame);
        net.pump(0);
    }
    net.run_until(at(2_500));
    assert_eq!(net.routes(1), expected);
    for i in 0..2 {
        let c = net.speakers[i].counters();
        assert_eq!((c.session_downs, c.retransmissions), (0, 0), "speaker {i}");
    }
    assert_eq!(net.speakers[1].counters().received.update, 20_002);
    // 20,000 reflected UPDATEs of 63 bytes (CLUSTER_LIST and ORIGINATOR_ID added) fill about
    // 900 segments.
    let segments = net.data_segments[0] - before;
    assert!((900..1_000).contains(&segments), "{segments} segments");
}

#[test]
fn a_segment_carries_several_messages_and_a_message_spans_segments() {
    let mut net = established_pair();
    let update = |prefix: &str| {
        let attributes = PathAttributes {
            origin: Origin::Igp,
            as_path: Vec::new(),
            next_hop: host(1),
            local_pref: Some(100),
            originator_id: None,
            cluster_list: Vec::new(),
        };
        let nlri = vec![prefix.parse().unwrap()];
        Message::Update(Update { withdrawn: Vec::new(), attributes: Some(attributes), nlri }).emit()
    };
    // KEEPALIVE, UPDATE, UPDATE and the first 10 bytes of a third UPDATE in one segment.
    let third = update("10.3.0.0/16");
    let mut bytes = Message::Keepalive.emit();
    bytes.extend(update("10.1.0.0/16"));
    bytes.extend(update("10.2.0.0/16"));
    bytes.extend_from_slice(&third[..10]);
    let before = *net.speakers[0].counters();
    let frame = segment_to(&net, 0, 1, &bytes);
    net.speakers[0].handle_frame(net.now, &frame);
    net.pump(0);
    let routes = net.routes(0);
    assert!(routes.contains_key(&"10.1.0.0/16".parse().unwrap()));
    assert!(routes.contains_key(&"10.2.0.0/16".parse().unwrap()));
    assert!(!routes.contains_key(&"10.3.0.0/16".parse().unwrap()));
    let after = *net.speakers[0].counters();
    assert_eq!(after.received.keepalive - before.received.keepalive, 1);
    assert_eq!(after.received.update - before.received.update, 2);
    // The rest of the third UPDATE, in two more segments.
    for part in [&third[10..30], &third[30..]] {
        let frame = segment_to(&net, 0, 1, part);
        net.speakers[0].handle_frame(net.now, &frame);
        net.pump(0);
    }
    assert!(net.routes(0).contains_key(&"10.3.0.0/16".parse().unwrap()));
    let after = *net.speakers[0].counters();
    assert_eq!((after.received.update - before.received.update, after.malformed), (3, 0));
    assert_eq!(net.speakers[0].established_count(), 1);
}

#[test]
fn frames_are_those_etherparse_builds() {
    let segment = wire::Segment {
        src_port: 49_153,
        dst_port: 179,
        seq: 7,
        ack: 9,
        flags: flags::ACK | flags::PSH,
        window: 16_384,
    };
    let payload = Message::Keepalive.emit();
    let mac = [2, 0, 0, 0, 0, 1];
    let expected = {
        let builder = etherparse::PacketBuilder::ethernet2(mac, [0; 6])
            .ipv4(host(0).octets(), host(1).octets(), 64)
            .tcp(49_153, 179, 7, 16_384)
            .psh()
            .ack(9);
        let mut frame = Vec::new();
        builder.write(&mut frame, &payload).unwrap();
        frame
    };
    assert_eq!(wire::build_frame(mac, host(0), host(1), &segment, &payload), expected);
    let syn = wire::Segment { flags: flags::SYN, ack: 0, ..segment };
    let expected = {
        let builder = etherparse::PacketBuilder::ethernet2(mac, [0; 6])
            .ipv4(host(0).octets(), host(1).octets(), 64)
            .tcp(49_153, 179, 7, 16_384)
            .syn();
        let mut frame = Vec::new();
        builder.write(&mut frame, &[]).unwrap();
        frame
    };
    assert_eq!(wire::build_frame(mac, host(0), host(1), &syn, &[]), expected);
    let frame = wire::build_frame(mac, host(0), host(1), &segment, &payload);
    let parsed = wire::parse_frame(&frame).unwrap();
    assert_eq!((parsed.segment, parsed.payload), (segment, &payload[..]));
}

#[test]
fn reflected_changes_share_segments() {
    // Twenty clients come up at once: the reflectors' UPDATEs to each client (one per block)
    // travel many to a segment.
    let mut net = Net::reflected(22, 2);
    net.run_until(at(2_000));
    for i in 0..22 {
        assert_all_blocks(&net, i, &[]);
    }
    let updates: u64 = net.speakers[..2].iter().map(|s| s.counters().sent.update).sum();
    let segments: u64 = net.data_segments[..2].iter().sum();
    assert!(updates >= 2 * 20 * 21, "{updates} updates");
    assert!(segments * 4 < updates, "{segments} segments for {updates} updates");
}
#[test]
fn removing_a_peer_closes_its_session() {
    let mut net = Net::mesh(3);
    net.run_until(at(2_000));
    net.with(0, |s, now| s.remove_peer(now, host(1)));
    net.with(1, |s, now| s.remove_peer(now, host(0)));
    net.run_until(at(2_100));
    assert_all_blocks(&net, 0, &[1]);
    assert_all_blocks(&net, 1, &[0]);
    assert_eq!(net.speakers[0].sessions().count(), 1);
    assert_eq!(net.speakers[1].counters().sent.notification, 1);
}

#[test]
fn a_peer_in_another_as_is_refused() {
    let mut net = Net::mesh(2);
    let mut config = BgpConfig::new(host(1), [2, 0, 0, 0, 0, 1]);
    config.asn = 65_000;
    net.speakers[1] = Speaker::new(config);
    net.with(1, |s, now| s.add_peer(now, host(0), false));
    net.run_until(at(3_000));
    assert_eq!(net.speakers[0].established_count(), 0);
    assert!(net.speakers[0].counters().sent.notification >= 1);
    assert!(net.speakers[1].counters().sent.notification >= 1);
}

#[test]
fn runs_are_deterministic() {
    let run = || {
        let mut net = Net::reflected(6, 2);
        net.loss = Box::new(|_, index, _| index % 7 == 3);
        net.run_until(at(3_000));
        net.with(1, |s, now| s.set_down(now, true));
        net.run_until(at(6_000));
        (net.hash.finish(), net.sent, format!("{:?}", net.log))
    };
    assert_eq!(run(), run());
}

// Golden bytes, written from RFC 4271 section 4 and RFC 4456 section 8 by hand.

const MARKER: [u8; 16] = [0xff; 16];

fn golden(len: u16, kind: u8, body: &[u8]) -> Vec<u8> {
    let mut bytes = MARKER.to_vec();
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes.push(kind);
    bytes.extend_from_slice(body);
    assert_eq!(bytes.len(), usize::from(len));
    bytes
}

fn check_golden(message: Message, bytes: Vec<u8>) {
    assert_eq!(message.emit(), bytes, "{message}");
    assert_eq!(Message::parse(&bytes), Ok(Some((message, bytes.len()))));
}

#[test]
fn golden_open_keepalive_notification() {
    let open = Open { asn: 64_512, hold_time_secs: 3, router_id: Ipv4Addr::new(10, 0, 0, 1) };
    // version 4, AS 0xfc00, hold time 3, BGP identifier, no optional parameters.
    check_golden(Message::Open(open), golden(29, 1, &[4, 0xfc, 0x00, 0, 3, 10, 0, 0, 1, 0]));
    check_golden(Message::Keepalive, golden(19, 4, &[]));
    check_golden(Message::Notification(Notification::new((4, 0))), golden(21, 3, &[4, 0]));
}

#[test]
fn golden_updates() {
    let attributes = PathAttributes {
        origin: Origin::Igp,
        as_path: Vec::new(),
        next_hop: Ipv4Addr::new(10, 0, 0, 1),
        local_pref: Some(100),
        originator_id: None,
        cluster_list: Vec::new(),
    };
    let update = Update { withdrawn: Vec::new(), attributes: Some(attributes.clone()), nlri: vec![block(1)] };
    #[rustfmt::skip]
    let body = [
        0, 0, // no withdrawn routes
        0, 21, // path attributes length
        0x40, 1, 1, 0, // ORIGIN: well-known transitive, IGP
        0x40, 2, 0, // AS_PATH: empty inside the AS
        0x40, 3, 4, 10, 0, 0, 1, // NEXT_HOP
        0x40, 5, 4, 0, 0, 0, 100, // LOCAL_PREF
        26, 10, 244, 1, 0, // NLRI 10.244.1.0/26: length, then the 4 octets holding 26 bits
    ];
    check_golden(Message::Update(update), golden(49, 2, &body));

    let reflected = PathAttributes {
        originator_id: Some(Ipv4Addr::new(10, 0, 0, 3)),
        cluster_list: vec![Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)],
        as_path: vec![64_512],
        ..attributes
    };
    let update = Update {
        withdrawn: Vec::new(),
        attributes: Some(reflected),
        nlri: vec!["10.96.0.0/16".parse().unwrap()],
    };
    #[rustfmt::skip]
    let body = [
        0, 0,
        0, 43,
        0x40, 1, 1, 0,
        0x40, 2, 4, 2, 1, 0xfc, 0x00, // AS_PATH: one AS_SEQUENCE of one AS
        0x40, 3, 4, 10, 0, 0, 1,
        0x40, 5, 4, 0, 0, 0, 100,
        0x80, 9, 4, 10, 0, 0, 3, // ORIGINATOR_ID: optional non-transitive
        0x80, 10, 8, 10, 0, 0, 1, 10, 0, 0, 2, // CLUSTER_LIST
        16, 10, 96, // 10.96.0.0/16: two octets
    ];
    check_golden(Message::Update(update), golden(69, 2, &body));

    let withdraw = Update {
        withdrawn: vec![block(2), "0.0.0.0/0".parse().unwrap()],
        attributes: None,
        nlri: Vec::new(),
    };
    check_golden(Message::Update(withdraw), golden(29, 2, &[0, 6, 26, 10, 244, 2, 0, 0, 0, 0]));
}

#[test]
fn parse_errors_map_to_notifications() {
    let cases: Vec<(Vec<u8>, WireErrorCheck)> = vec![
        (
            golden(19, 4, &[]).into_iter().enumerate().map(|(i, b)| if i == 3 { 0 } else { b }).collect(),
            (1, 1),
        ),
        (golden(20, 4, &[0]), (1, 2)),
        (golden(19, 9, &[]), (1, 3)),
        (golden(29, 1, &[3, 0xfc, 0, 0, 3, 10, 0, 0, 1, 0]), (2, 1)),
        (golden(27, 2, &[0, 0, 0, 4, 0x40, 1, 1, 7]), (3, 6)),
        (golden(28, 2, &[0, 0, 0, 4, 0x40, 1, 1, 0, 24]), (3, 10)),
        (golden(31, 2, &[0, 0, 0, 4, 0x40, 1, 1, 0, 24, 10, 0, 0]), (3, 3)),
        (golden(31, 2, &[0, 0, 0, 4, 0x00, 1, 1, 0, 24, 10, 0, 0]), (3, 4)),
        (golden(27, 2, &[0, 0, 0, 4, 0x40, 99, 1, 0]), (3, 2)),
        (golden(24, 2, &[0, 9, 0, 0, 0]), (3, 1)),
    ];
    for (bytes, (code, subcode)) in cases {
        let error = Message::parse(&bytes).expect_err("malformed");
        let n = error.notification();
        assert_eq!((n.code, n.subcode), (code, subcode), "{error}");
    }
    // Incomplete input asks for more.
    assert_eq!(Message::parse(&golden(29, 1, &[4, 0xfc, 0, 0, 3, 10, 0, 0, 1, 0])[..20]), Ok(None));
}

type WireErrorCheck = (u8, u8);

fn prefix() -> impl Strategy<Value = Ipv4Net> {
    (any::<u32>(), 0u8..=32).prop_map(|(a, len)| Ipv4Net::new(Ipv4Addr::from(a), len).unwrap().trunc())
}

fn message() -> impl Strategy<Value = Message> {
    let addr = any::<u32>().prop_map(Ipv4Addr::from);
    let attributes = (
        prop_oneof![Just(Origin::Igp), Just(Origin::Egp), Just(Origin::Incomplete)],
        prop::collection::vec(any::<u16>(), 0..300),
        addr.clone(),
        any::<Option<u32>>(),
        prop::option::of(addr.clone()),
        prop::collection::vec(addr.clone(), 0..8),
    )
        .prop_map(|(origin, as_path, next_hop, local_pref, originator_id, cluster_list)| {
            PathAttributes { origin, as_path, next_hop, local_pref, originator_id, cluster_list }
        });
    let update = (
        prop::collection::vec(prefix(), 0..40),
        prop::option::of(attributes),
        prop::collection::vec(prefix(), 1..40),
    )
        .prop_map(|(withdrawn, attributes, nlri)| {
            let nlri = if attributes.is_some() { nlri } else { Vec::new() };
            Message::Update(Update { withdrawn, attributes, nlri })
        });
    prop_oneof![
        (any::<u16>(), any::<u16>(), addr).prop_map(|(asn, hold_time_secs, router_id)| Message::Open(Open {
            asn,
            hold_time_secs,
            router_id
        })),
        update,
        Just(Message::Keepalive),
        (any::<u8>(), any::<u8>(), prop::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(code, subcode, data)| Message::Notification(Notification { code, subcode, data })),
    ]
}

/// UPDATEs about eight overlapping prefixes, from three next hops.
fn update_stream() -> impl Strategy<Value = Vec<Update>> {
    let prefix = (0u8..8).prop_map(|i| Ipv4Net::new(Ipv4Addr::new(10, 200, i, 0), 24).unwrap());
    let attributes = (1u8..4, 0usize..3).prop_map(|(hop, path_len)| PathAttributes {
        origin: Origin::Igp,
        as_path: vec![65_001; path_len],
        next_hop: Ipv4Addr::new(172, 16, 0, hop),
        local_pref: Some(100),
        originator_id: None,
        cluster_list: Vec::new(),
    });
    let update = (
        prop::collection::vec(prefix.clone(), 0..4),
        prop::option::of(attributes),
        prop::collection::vec(prefix, 1..4),
    )
        .prop_map(|(withdrawn, attributes, nlri)| {
            let nlri = if attributes.is_some() { nlri } else { Vec::new() };
            Update { withdrawn, attributes, nlri }
        });
    prop::collection::vec(update, 1..20)
}

/// Two speakers with an established session.
fn established_pair() -> Net {
    let mut net = Net::mesh(2);
    net.run_until(at(1_500));
    assert_eq!(net.speakers[0].established_count(), 1);
    net
}

/// The frame speaker `from` would send next to speaker `to`, with `payload` as its TCP data.
fn segment_to(net: &Net, to: usize, from: usize, payload: &[u8]) -> Vec<u8> {
    let conn = net.speakers[to].peers[&host(from)].conn.as_ref().unwrap();
    let segment = wire::Segment {
        src_port: conn.remote_port,
        dst_port: conn.local_port,
        seq: conn.rcv_nxt,
        ack: conn.snd_nxt,
        flags: flags::ACK | flags::PSH,
        window: 16_384,
    };
    wire::build_frame([2, 0, 0, 0, 0, from as u8], host(from), host(to), &segment, payload)
}

/// The frame speaker 1 would send next to speaker 0, with `payload` as its TCP data.
fn segment_from_1_to_0(net: &Net, payload: &[u8]) -> Vec<u8> {
    segment_to(net, 0, 1, payload)
}

/// What `wire::parse_frame` must agree with: the frame read with etherparse.
fn parse_with_etherparse(frame: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, wire::Segment, &[u8])> {
    let ethernet = etherparse::Ethernet2HeaderSlice::from_slice(frame).ok()?;
    if ethernet.ether_type() != etherparse::EtherType::IPV4 {
        return None;
    }
    let ip = etherparse::Ipv4Slice::from_slice(&frame[ethernet.slice().len()..]).ok()?;
    let header = ip.header();
    if ip.is_payload_fragmented() || ip.payload_ip_number() != etherparse::IpNumber::TCP {
        return None;
    }
    if netsim_core::checksum::ones_complement_sum(header.slice()) != 0xffff {
        return None;
    }
    let bytes = ip.payload().payload;
    let tcp = etherparse::TcpSlice::from_slice(bytes).ok()?;
    let checksum = tcp.to_header().calc_checksum_ipv4(&header.to_header(), tcp.payload()).ok()?;
    if checksum != tcp.checksum() {
        return None;
    }
    let flags = [
        (tcp.fin(), flags::FIN),
        (tcp.syn(), flags::SYN),
        (tcp.rst(), flags::RST),
        (tcp.psh(), flags::PSH),
        (tcp.ack(), flags::ACK),
    ]
    .iter()
    .filter(|(set, _)| *set)
    .fold(0, |acc, (_, bit)| acc | bit);
    let segment = wire::Segment {
        src_port: tcp.source_port(),
        dst_port: tcp.destination_port(),
        seq: tcp.sequence_number(),
        ack: tcp.acknowledgment_number(),
        flags,
        window: tcp.window_size(),
    };
    Some((header.source_addr(), header.destination_addr(), segment, tcp.payload()))
}

proptest! {
    /// Frames, intact or damaged, read the same by hand and with etherparse.
    #[test]
    fn frames_parse_as_etherparse_reads_them(payload in prop::collection::vec(any::<u8>(), 0..1400),
                                             seq in any::<u32>(), ack in any::<u32>(), flag_bits in 0u8..32, window in any::<u16>(),
                                             flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
                                             cut in any::<prop::sample::Index>()) {
        let segment = wire::Segment { src_port: 179, dst_port: 50_000, seq, ack, flags: flag_bits, window };
        let mut frame = wire::build_frame([2, 0, 0, 0, 0, 1], host(1), host(0), &segment, &payload);
        let whole = frame.len();
        for (index, value) in flips {
            let i = index.index(frame.len());
            frame[i] = value;
        }
        if cut.index(4) == 0 {
            frame.truncate(cut.index(whole + 1));
        }
        let ours = wire::parse_frame(&frame).ok().map(|t| (t.src, t.dst, t.segment, t.payload));
        let theirs = parse_with_etherparse(&frame);
        prop_assert_eq!(ours, theirs);
    }

    /// UPDATEs from a peer, their byte stream cut anywhere into segments: the routes are those
    /// a reference model of the UPDATEs gives.
    #[test]
    fn a_stream_cut_anywhere_gives_the_same_routes(updates in update_stream(),
                                                  cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12)) {
        let mut net = established_pair();
        let mut model: BTreeMap<Ipv4Net, Vec<Ipv4Addr>> = [(block(1), vec![host(1)])].into();
        let mut stream = Vec::new();
        for update in &updates {
            for prefix in &update.withdrawn {
                model.remove(prefix);
            }
            if let Some(attributes) = &update.attributes {
                for prefix in &update.nlri {
                    model.insert(*prefix, vec![attributes.next_hop]);
                }
            }
            Message::Update(update.clone()).emit_into(&mut stream);
        }
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(stream.len())).collect();
        cuts.extend([0, stream.len()]);
        cuts.sort_unstable();
        cuts.dedup();
        for pair in cuts.windows(2) {
            let frame = segment_to(&net, 0, 1, &stream[pair[0]..pair[1]]);
            net.speakers[0].handle_frame(net.now, &frame);
            net.pump(0);
        }
        prop_assert_eq!(net.routes(0), model);
        let c = net.speakers[0].counters();
        prop_assert_eq!((c.malformed, c.session_downs), (0, 0));
        prop_assert_eq!(c.received.update, updates.len() as u64 + 1);
    }

    #[test]
    fn messages_round_trip(message in message()) {
        let bytes = message.emit();
        prop_assert_eq!(Message::parse(&bytes), Ok(Some((message, bytes.len()))));
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = Message::parse(&bytes);
        let _ = wire::parse_frame(&bytes);
        let mut net = established_pair();
        net.speakers[0].handle_frame(net.now, &bytes);
        prop_assert_eq!(net.speakers[0].counters().malformed, 1);
    }

    /// Real frames with bytes flipped or cut off: most fail their checksum, none panics.
    #[test]
    fn mutated_frames_never_panic(message in message(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
                                  cut in any::<prop::sample::Index>()) {
        let mut net = established_pair();
        let mut frame = segment_from_1_to_0(&net, &message.emit());
        for (index, value) in flips {
            let i = index.index(frame.len());
            frame[i] = value;
        }
        frame.truncate(cut.index(frame.len() + 1));
        net.speakers[0].handle_frame(net.now, &frame);
        net.pump(0);
    }

    /// Valid TCP carrying mutated BGP: a message that does not parse is counted and answered
    /// with the NOTIFICATION its error prescribes, and the session goes down.
    #[test]
    fn mutated_messages_reset_the_session(message in message(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
                                          cut in any::<prop::sample::Index>()) {
        let mut net = established_pair();
        let mut bytes = message.emit();
        for (index, value) in flips {
            let i = index.index(bytes.len());
            bytes[i] = value;
        }
        bytes.truncate(cut.index(bytes.len()) + 1);
        let before = *net.speakers[0].counters();
        let frame = segment_from_1_to_0(&net, &bytes);
        net.speakers[0].handle_frame(net.now, &frame);
        net.pump(0);
        let after = *net.speakers[0].counters();
        if let Err(error) = Message::parse(&bytes) {
            prop_assert_eq!(after.malformed, before.malformed + 1);
            prop_assert_eq!(after.session_downs, before.session_downs + 1);
            prop_assert_eq!(after.sent.notification, before.sent.notification + 1);
            let _ = error.notification();
        }
    }
}
