//! A sans-IO BGP speaker: one host's BGP daemon (Calico's BIRD), iBGP in one private AS, as a
//! full node-to-node mesh or with route reflectors (RFC 4456).
//!
//! # Calling order
//!
//! The caller owns time and the wire (quinn-proto's shape). Inputs are calls:
//! [`Speaker::add_peer`], [`Speaker::remove_peer`], [`Speaker::originate`],
//! [`Speaker::withdraw`], [`Speaker::handle_frame`] (a frame from the fabric),
//! [`Speaker::handle_timeout`] and [`Speaker::set_down`]. After every input, drain the outputs:
//! [`Speaker::poll_transmit`] until `None` (frames to put on the fabric),
//! [`Speaker::poll_event`] until `None` (changes to the host's routing table), then ask
//! [`Speaker::poll_timeout`] when to call [`Speaker::handle_timeout`] next. A caller done with a
//! frame may hand it back ([`Speaker::recycle`]) for a later frame to be built in.
//!
//! # What goes on the wire
//!
//! Every frame is Ethernet II / IPv4 / TCP with valid checksums, carrying real RFC 4271
//! messages ([`wire`]): OPEN, UPDATE (ORIGIN, AS_PATH, NEXT_HOP, LOCAL_PREF, and ORIGINATOR_ID /
//! CLUSTER_LIST when reflected), KEEPALIVE, NOTIFICATION. BGP is a byte stream: a segment carries
//! up to [`wire::SEGMENT_LEN_MAX`] bytes, as many messages as fit, and a message may continue in
//! the next segment; the receiver handles every whole message and keeps the start of a split
//! one. UPDATEs carry as many prefixes of one attribute set as fit in RFC 4271's 4,096 bytes
//! ([`wire::UPDATE_LEN_MAX`]). The transport is a minimal TCP (see `transport`): a real
//! three-way handshake opened by the speaker with the lower router id, sequence and
//! acknowledgment numbers, a fixed window, Nagle's algorithm, in-order delivery, go-back-N
//! retransmission.
//!
//! # Sending
//!
//! A speaker does not queue UPDATEs per peer: when a prefix's best path changes, it computes
//! what the prefix is exported as once (interned and kept encoded) and records the change in a
//! journal. Each session keeps a bit per prefix for what its peer holds and one for what to look
//! at again, reads the journal into the latter when it is about to write, and writes UPDATEs
//! only while its connection can send: nothing in flight, or a full segment's worth. So a peer
//! slow to acknowledge costs bits, not bytes, and the changes made meanwhile leave together, in
//! their latest state (RFC 4271 section 9.2 allows this; BIRD does the same). A table larger
//! than the window (a reflector syncing thousands of prefixes to a new client) simply takes
//! several round trips.
//!
//! # Memory
//!
//! A simulation holds thousands of speakers, so the RIB (`rib`) is stored prefix by prefix,
//! without an allocation per route: about 40 bytes per prefix with two paths (a client of two
//! reflectors), plus 11 to 13 bytes of index (8-byte slots, 60 to 75 % full). Attributes that routes share are interned per
//! speaker.
//!
//! # Routing
//!
//! - Sessions follow RFC 4271's state machine (`session`): OPEN, KEEPALIVE to confirm, then
//!   the full table; KEEPALIVE every `keepalive`; no message for `hold_time` brings the session
//!   down, as do a NOTIFICATION, a malformed message (answered with the NOTIFICATION RFC 4271
//!   prescribes) and a TCP reset. A downed session withdraws everything learned from the peer;
//!   the connecting side retries every `connect_retry`.
//! - Best path per prefix: local origination first; then highest LOCAL_PREF, shortest
//!   AS_PATH, lowest ORIGIN, lowest ORIGINATOR_ID (or peer router id), shortest CLUSTER_LIST,
//!   lowest peer address. Multipath: every path equal to the best in LOCAL_PREF, AS_PATH length
//!   and ORIGIN contributes its NEXT_HOP (deduplicated, sorted) to the installed route, so two
//!   hosts announcing one prefix give ECMP, and one host's prefix learned through two reflectors
//!   gives one next hop.
//! - Advertisement: local prefixes go to every peer with this host as NEXT_HOP. Routes learned
//!   from an iBGP peer go nowhere, unless this speaker is a route reflector: routes from a client
//!   are reflected to every other peer, routes from a non-client to clients only, with
//!   ORIGINATOR_ID set (if absent) and the cluster id (= router id) prepended to CLUSTER_LIST;
//!   NEXT_HOP is unchanged. Received routes carrying our router id as ORIGINATOR_ID or in
//!   CLUSTER_LIST are dropped. A reflector advertises one best path per prefix (no ADD-PATH),
//!   so its clients see a multi-origin prefix through one origin only.
//!
//! **Architecture invariant:** no clock, no I/O, no randomness, no hash-ordered iteration: the
//! same calls give the same frames, byte for byte.

mod rib;
mod session;
#[cfg(test)]
mod tests;
mod transport;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use netsim_core::{SimDuration, SimTime};

use rib::Rib;
use session::{Ctx, Peer, Scratch};
use wire::BGP_PORT;

/// A speaker's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BgpConfig {
    /// BGP identifier and TCP source address: the host's underlay IP. Also the cluster id when
    /// reflecting.
    pub router_id: Ipv4Addr,
    /// Source MAC of every frame.
    pub mac: [u8; 6],
    /// The autonomous system of every speaker (iBGP only).
    pub asn: u16,
    /// Interval between KEEPALIVEs (lowered to a third of the negotiated hold time if larger).
    pub keepalive: SimDuration,
    /// How long a session lives without hearing from the peer; offered in OPEN in whole seconds.
    pub hold_time: SimDuration,
    /// How long the connecting side waits between connection attempts.
    pub connect_retry: SimDuration,
    /// Initial retransmission timeout of the transport.
    pub retransmit_timeout: SimDuration,
    /// Reflect routes between clients (RFC 4456), with cluster id = `router_id`.
    pub route_reflector: bool,
}

impl BgpConfig {
    /// Calico's private AS.
    pub const ASN_DEFAULT: u16 = 64_512;

    /// The defaults: AS 64512, keepalive 1 s, hold time 3 s, connect retry 1 s, retransmission
    /// timeout 200 ms, not a reflector. Short timers keep failover within simulated seconds.
    pub fn new(router_id: Ipv4Addr, mac: [u8; 6]) -> Self {
        BgpConfig {
            router_id,
            mac,
            asn: Self::ASN_DEFAULT,
            keepalive: SimDuration::from_secs(1),
            hold_time: SimDuration::from_secs(3),
            connect_retry: SimDuration::from_secs(1),
            retransmit_timeout: SimDuration::from_millis(200),
            route_reflector: false,
        }
    }
}

/// A session's state (RFC 4271 section 8.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SessionState {
    /// Not trying: waiting for the ConnectRetry timer, or the speaker is down.
    Idle,
    /// Opening the TCP connection (the side with the lower router id).
    Connect,
    /// Listening for the peer's connection (the side with the higher router id).
    Active,
    /// Connected; our OPEN is sent, the peer's awaited.
    OpenSent,
    /// OPENs exchanged; waiting for the KEEPALIVE that confirms ours.
    OpenConfirm,
    /// Routes flow.
    Established,
}

/// A change to the routing table the host installs (locally originated prefixes excluded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteEvent {
    /// `prefix` is now reached through `next_hops` (sorted; several means ECMP). Replaces any
    /// earlier route for the prefix.
    Installed {
        /// The destination.
        prefix: Ipv4Net,
        /// The hosts to forward to.
        next_hops: Vec<Ipv4Addr>,
    },
    /// `prefix` is no longer reachable through BGP.
    Withdrawn {
        /// The destination.
        prefix: Ipv4Net,
    },
}

/// Messages of each type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MessageCounts {
    /// OPEN messages.
    pub open: u64,
    /// UPDATE messages.
    pub update: u64,
    /// KEEPALIVE messages.
    pub keepalive: u64,
    /// NOTIFICATION messages.
    pub notification: u64,
}

/// What a speaker did, for reports and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BgpCounters {
    /// Messages sent (retransmissions not included).
    pub sent: MessageCounts,
    /// Messages received and parsed.
    pub received: MessageCounts,
    /// Prefixes announced in UPDATEs sent.
    pub prefixes_announced: u64,
    /// Prefixes withdrawn in UPDATEs sent.
    pub prefixes_withdrawn: u64,
    /// Segments sent again by the transport.
    pub retransmissions: u64,
    /// Frames that are not valid Ethernet/IPv4/TCP, and BGP messages that do not parse.
    pub malformed: u64,
    /// Valid frames not for this speaker (another address, not BGP's port).
    pub ignored: u64,
    /// Segments for no connection (answered with a reset).
    pub unexpected_segments: u64,
    /// Sessions that reached Established.
    pub session_ups: u64,
    /// Established sessions that went down, for any reason.
    pub session_downs: u64,
    /// Sessions brought down by their hold timer (also counted in `session_downs` if they were
    /// established).
    pub hold_timer_expiries: u64,
}

/// One host's BGP daemon. See the [module documentation](self) for the calling order.
#[derive(Clone, Debug)]
pub struct Speaker {
    config: BgpConfig,
    down: bool,
    peers: BTreeMap<Ipv4Addr, Peer>,
    /// Every prefix known: local ones, paths from peers, best paths, exports, installed routes.
    rib: Rib,
    sync: BTreeSet<Ipv4Addr>,
    ready: Vec<Ipv4Addr>,
    idle: BTreeSet<Ipv4Addr>,
    /// Every peer's next timer, so that the speaker's is found at once.
    timers: BTreeSet<(SimTime, Ipv4Addr)>,
    /// Peers whose timers an input may have moved.
    touched: Vec<Ipv4Addr>,
    scratch: Scratch,
    transmit: VecDeque<(Ipv4Addr, Vec<u8>)>,
    events: VecDeque<RouteEvent>,
    counters: BgpCounters,
}

impl Speaker {
    /// A speaker with no peers and no prefixes.
    pub fn new(config: BgpConfig) -> Speaker {
        assert!(
            config.keepalive > SimDuration::ZERO
                && config.connect_retry > SimDuration::ZERO
                && config.retransmit_timeout > SimDuration::ZERO,
            "BGP timers must be positive"
        );
        Speaker {
            config,
            down: false,
            peers: BTreeMap::new(),
            rib: Rib::new(),
            sync: BTreeSet::new(),
            ready: Vec::new(),
            idle: BTreeSet::new(),
            timers: BTreeSet::new(),
            touched: Vec::new(),
            scratch: Scratch::default(),
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            counters: BgpCounters::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &BgpConfig {
        &self.config
    }

    /// Configures a peer, or changes whether it is a reflector client. Full mesh: every other
    /// host, `client: false`. With route reflectors: clients peer with each reflector
    /// (`client: false`); reflectors peer with every client (`client: true`) and with each other
    /// (`client: false`). The speaker itself is not a peer and is ignored.
    pub fn add_peer(&mut self, now: SimTime, peer: Ipv4Addr, client: bool) {
        if peer == self.config.router_id {
            return;
        }
        if let Some(existing) = self.peers.get_mut(&peer) {
            if existing.client != client {
                existing.client = client;
                // What it gets, and where its routes are reflected to, changed: choose every
                // export again and look at every prefix again for every peer (announcing again
                // what is unchanged is harmless).
                self.rib.mark_all_dirty();
                let established = self.peers.values().filter(|p| p.state == SessionState::Established);
                self.sync.extend(established.map(|p| p.addr));
                self.flush(now);
            }
            return;
        }
        let mut state = Peer::new(&self.config, peer, client);
        if !self.down {
            let (mut ctx, _) = self.ctx(now);
            state.start(&mut ctx);
        }
        self.peers.insert(peer, state);
        self.retime(peer);
    }

    /// Removes a peer: its session is closed with a Cease NOTIFICATION and its routes withdrawn.
    pub fn remove_peer(&mut self, now: SimTime, peer: Ipv4Addr) {
        let (mut ctx, peers) = self.ctx(now);
        if let Some(mut state) = peers.remove(&peer) {
            let cease = wire::Notification::new(wire::Notification::PEER_DECONFIGURED);
            state.down(&mut ctx, Some(cease));
            if let Some(at) = state.timer {
                self.timers.remove(&(at, peer));
            }
        }
        self.flush(now);
    }

    /// Announces a locally originated prefix (a Calico IPAM block) with this host as next hop.
    pub fn originate(&mut self, now: SimTime, prefix: Ipv4Net) {
        if self.rib.set_local(prefix.trunc(), true) {
            self.flush(now);
        }
    }

    /// Withdraws a locally originated prefix.
    pub fn withdraw(&mut self, now: SimTime, prefix: Ipv4Net) {
        if self.rib.set_local(prefix.trunc(), false) {
            self.flush(now);
        }
    }

    /// A frame arrived from the fabric. Anything malformed is counted and dropped (or, for a
    /// bad BGP message, answered with a NOTIFICATION); nothing panics.
    pub fn handle_frame(&mut self, now: SimTime, frame: &[u8]) {
        if self.down {
            return;
        }
        let Ok(tcp) = wire::parse_frame(frame) else {
            self.counters.malformed += 1;
            return;
        };
        let segment = tcp.segment;
        if tcp.dst != self.config.router_id || (segment.src_port != BGP_PORT && segment.dst_port != BGP_PORT)
        {
            self.counters.ignored += 1;
            return;
        }
        self.touched.push(tcp.src);
        let (mut ctx, peers) = self.ctx(now);
        match peers.get_mut(&tcp.src) {
            Some(peer) => peer.on_segment(&mut ctx, &segment, tcp.payload),
            None => {
                ctx.counters.unexpected_segments += 1;
                if !segment.has(wire::flags::RST) {
                    let reset = transport::reset_for(&segment, tcp.payload.len());
                    let frame = wire::build_frame(ctx.config.mac, ctx.config.router_id, tcp.src, &reset, &[]);
                    ctx.transmit.push_back((tcp.src, frame));
                }
            }
        }
        self.flush(now);
    }

    /// The next frame to send: (destination underlay IP, Ethernet frame with a zero destination
    /// MAC; the fabric rewrites MACs hop by hop).
    pub fn poll_transmit(&mut self) -> Option<(Ipv4Addr, Vec<u8>)> {
        self.transmit.pop_front()
    }

    /// Hands back a frame the caller is done with (one from [`Speaker::poll_transmit`], or any
    /// buffer), to build a later frame in: optional, it saves an allocation per frame.
    pub fn recycle(&mut self, frame: Vec<u8>) {
        if self.scratch.frames.len() < Self::RECYCLED_FRAMES_MAX {
            self.scratch.frames.push(frame);
        }
    }

    /// Buffers [`Speaker::recycle`] keeps.
    const RECYCLED_FRAMES_MAX: usize = 32;

    /// The next change to the host's routing table.
    pub fn poll_event(&mut self) -> Option<RouteEvent> {
        self.events.pop_front()
    }

    /// When [`Speaker::handle_timeout`] must be called next; `None` while down or idle.
    pub fn poll_timeout(&self) -> Option<SimTime> {
        if self.down {
            return None;
        }
        let next = self.timers.first().map(|&(at, _)| at);
        debug_assert_eq!(
            next,
            self.peers.values().filter_map(Peer::poll_timeout).min(),
            "timers out of date"
        );
        next
    }

    /// Fires every timer due at `now` (peers in address order).
    pub fn handle_timeout(&mut self, now: SimTime) {
        if self.down {
            return;
        }
        let mut due = std::mem::take(&mut self.touched);
        due.extend(self.timers.iter().take_while(|&&(at, _)| at <= now).map(|&(_, addr)| addr));
        due.sort_unstable();
        due.dedup();
        let (mut ctx, peers) = self.ctx(now);
        for addr in &due {
            if let Some(peer) = peers.get_mut(addr)
                && peer.poll_timeout().is_some_and(|t| t <= now)
            {
                peer.on_timeout(&mut ctx);
            }
        }
        self.touched = due;
        self.flush(now);
    }

    /// Marks the host failed (`true`) or recovered (`false`). Failing drops every session
    /// silently, forgets what was learned (emitting withdrawals) and unsent frames; while down
    /// the speaker ignores input and sends nothing. Recovering restarts every session from Idle.
    /// Configured peers and local prefixes survive.
    pub fn set_down(&mut self, now: SimTime, down: bool) {
        if self.down == down {
            return;
        }
        let (mut ctx, peers) = self.ctx(now);
        for peer in peers.values_mut() {
            if down {
                peer.halt(&mut ctx);
            } else {
                peer.start(&mut ctx);
            }
        }
        if down {
            self.transmit.clear();
        }
        self.down = down;
        self.touched.extend(self.peers.keys().copied());
        self.flush(now);
    }

    /// Whether the speaker is down.
    pub fn is_down(&self) -> bool {
        self.down
    }

    /// The counters.
    pub fn counters(&self) -> &BgpCounters {
        &self.counters
    }

    /// Every configured peer and its session's state, in address order.
    pub fn sessions(&self) -> impl Iterator<Item = (Ipv4Addr, SessionState)> + '_ {
        self.peers.iter().map(|(addr, peer)| (*addr, peer.state))
    }

    /// How many sessions are Established.
    pub fn established_count(&self) -> usize {
        self.peers.values().filter(|p| p.state == SessionState::Established).count()
    }

    /// The current routes: every remote prefix and its next hops (the Loc-RIB without local
    /// prefixes), in prefix order. Equals the sum of the events so far.
    pub fn routes(&self) -> impl Iterator<Item = (Ipv4Net, &[Ipv4Addr])> + '_ {
        self.rib.routes()
    }

    /// A session context borrowing the speaker's parts, and the peers beside it.
    fn ctx(&mut self, now: SimTime) -> (Ctx<'_>, &mut BTreeMap<Ipv4Addr, Peer>) {
        let ctx = Ctx {
            now,
            config: &self.config,
            transmit: &mut self.transmit,
            counters: &mut self.counters,
            rib: &mut self.rib,
            sync: &mut self.sync,
            ready: &mut self.ready,
            idle: &mut self.idle,
            scratch: &mut self.scratch,
        };
        (ctx, &mut self.peers)
    }

    /// Recomputes the best paths of the dirty prefixes (emitting events) and records those
    /// whose export changed; then lets send every peer that may: those that just came up (with
    /// every prefix pending), those an input concerned, and, if anything changed, the idle ones.
    /// Busy peers read the changes when their next acknowledgment arrives.
    fn flush(&mut self, now: SimTime) {
        let mut changed = false;
        if self.rib.has_dirty() {
            let mut dirty = std::mem::take(&mut self.scratch.dirty);
            self.rib.take_dirty(&mut dirty);
            let peers = &self.peers;
            let client = |addr: Ipv4Addr| peers.get(&addr).is_some_and(|p| p.client);
            for &id in &dirty {
                if self.rib.select(id, &self.config, client, &mut self.events) {
                    self.rib.journal_push(id);
                    changed = true;
                }
            }
            self.scratch.dirty = dirty;
        }
        if self.down {
            self.sync.clear();
            self.ready.clear();
            self.retime_touched();
            return;
        }
        for addr in std::mem::take(&mut self.sync) {
            if let Some(peer) = self.peers.get_mut(&addr)
                && peer.state == SessionState::Established
            {
                peer.sync(&self.rib);
                self.ready.push(addr);
            }
        }
        if changed {
            self.ready.extend(self.idle.iter().copied());
        }
        if !self.ready.is_empty() {
            let mut ready = std::mem::take(&mut self.ready);
            ready.sort_unstable();
            ready.dedup();
            let (mut ctx, peers) = self.ctx(now);
            // Sending changes no route and brings no session down: nothing comes back.
            for addr in &ready {
                if let Some(peer) = peers.get_mut(addr) {
                    peer.transmit(&mut ctx);
                }
            }
            self.touched.extend_from_slice(&ready);
            ready.clear();
            self.ready = ready;
        }
        if self.rib.journal_full() {
            for peer in self.peers.values_mut().filter(|p| p.state == SessionState::Established) {
                peer.absorb(&self.rib);
            }
            self.rib.journal_clear();
        }
        self.retime_touched();
    }

    /// Brings the timers of the touched peers up to date.
    fn retime_touched(&mut self) {
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        touched.dedup();
        for &addr in &touched {
            self.retime(addr);
        }
        touched.clear();
        self.touched = touched;
    }

    /// Brings a peer's entry in `timers` up to date.
    fn retime(&mut self, addr: Ipv4Addr) {
        let Some(peer) = self.peers.get_mut(&addr) else { return };
        let at = if self.down { None } else { peer.poll_timeout() };
        if at != peer.timer {
            if let Some(old) = peer.timer {
                self.timers.remove(&(old, addr));
            }
            if let Some(new) = at {
                self.timers.insert((new, addr));
            }
            peer.timer = at;
        }
    }
}
