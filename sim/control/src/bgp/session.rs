//! One BGP session: the RFC 4271 finite state machine over one [`Connection`], with its timers
//! and its peer's Adj-RIB-In and Adj-RIB-Out.
//!
//! Who connects: the speaker with the lower router id opens the TCP connection (state
//! `Connect`), the other only listens (state `Active`), so connections never collide. A SYN from
//! a new source port replaces a listener's connection: the peer restarted.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use netsim_core::{SimDuration, SimTime, mix64};

use super::transport::{Connection, TcpState, reset_for};
use super::wire::{self, BGP_PORT, Message, Notification, Open, PathAttributes, Segment, flags};
use super::{BgpConfig, BgpCounters, SessionState};

/// First source port of active opens; each attempt takes the next one (wrapping in 16384).
const EPHEMERAL_PORT_BASE: u16 = 49_152;
/// A session whose peer stops acknowledging is reset when this many segments wait.
pub(super) const UNACKED_SEGMENTS_MAX: usize = 4096;

/// What a session needs from its speaker while it handles one input.
pub(super) struct Ctx<'a> {
    pub(super) now: SimTime,
    pub(super) config: &'a BgpConfig,
    pub(super) transmit: &'a mut VecDeque<(Ipv4Addr, Vec<u8>)>,
    pub(super) counters: &'a mut BgpCounters,
    /// Prefixes whose candidate paths changed: best paths to recompute.
    pub(super) dirty: &'a mut BTreeSet<Ipv4Net>,
    /// Peers that just reached Established and need the full table.
    pub(super) sync: &'a mut BTreeSet<Ipv4Addr>,
}

impl Ctx<'_> {
    fn emit(&mut self, peer: Ipv4Addr, segment: &Segment, payload: &[u8]) {
        let frame = wire::build_frame(self.config.mac, self.config.router_id, peer, segment, payload);
        self.transmit.push_back((peer, frame));
    }
}

/// One configured peer and its session.
#[derive(Clone, Debug)]
pub(super) struct Peer {
    pub(super) addr: Ipv4Addr,
    /// The peer is a route-reflector client of this speaker.
    pub(super) client: bool,
    /// This speaker opens the connection (its router id is the lower).
    active: bool,
    pub(super) state: SessionState,
    pub(super) conn: Option<Connection>,
    attempts: u32,
    /// The peer's BGP identifier, from its OPEN.
    pub(super) remote_id: Option<Ipv4Addr>,
    hold: SimDuration,
    keepalive: SimDuration,
    hold_deadline: Option<SimTime>,
    keepalive_deadline: Option<SimTime>,
    connect_deadline: Option<SimTime>,
    /// Routes received from the peer and accepted (loop checks passed); empty unless Established.
    pub(super) adj_rib_in: BTreeMap<Ipv4Net, PathAttributes>,
    /// Routes last advertised to the peer.
    pub(super) adj_rib_out: BTreeMap<Ipv4Net, PathAttributes>,
}

impl Peer {
    pub(super) fn new(config: &BgpConfig, addr: Ipv4Addr, client: bool) -> Peer {
        Peer {
            addr,
            client,
            active: config.router_id < addr,
            state: SessionState::Idle,
            conn: None,
            attempts: 0,
            remote_id: None,
            hold: config.hold_time,
            keepalive: config.keepalive,
            hold_deadline: None,
            keepalive_deadline: None,
            connect_deadline: None,
            adj_rib_in: BTreeMap::new(),
            adj_rib_out: BTreeMap::new(),
        }
    }

    /// Leaves Idle: connects (active side) or listens (passive side).
    pub(super) fn start(&mut self, ctx: &mut Ctx<'_>) {
        if !self.active {
            self.state = SessionState::Active;
            return;
        }
        self.attempts = self.attempts.wrapping_add(1);
        let port = EPHEMERAL_PORT_BASE + (self.attempts % 16_384) as u16;
        let isn = self.isn(ctx.config.router_id, u64::from(self.attempts));
        let (conn, syn) = Connection::connect(port, BGP_PORT, isn);
        ctx.emit(self.addr, &syn, &[]);
        self.conn = Some(conn);
        self.state = SessionState::Connect;
        self.connect_deadline = Some(ctx.now + ctx.config.connect_retry);
    }

    /// A deterministic initial sequence number for this pair and `salt`.
    fn isn(&self, local: Ipv4Addr, salt: u64) -> u32 {
        let pair = (u64::from(u32::from(local)) << 32) | u64::from(u32::from(self.addr));
        mix64(pair ^ mix64(salt)) as u32
    }

    /// Brings the session down: sends `notify` first if the connection can carry it, forgets
    /// the connection and everything learned, and waits to start over.
    pub(super) fn down(&mut self, ctx: &mut Ctx<'_>, notify: Option<Notification>) {
        if let (Some(n), Some(conn)) = (notify, self.conn.as_mut())
            && conn.state == TcpState::Established
        {
            let bytes = Message::Notification(n).emit();
            let segment = conn.send(ctx.now, ctx.config.retransmit_timeout, &bytes, true);
            ctx.emit(self.addr, &segment, &bytes);
            ctx.counters.sent.notification += 1;
        }
        if self.state == SessionState::Established {
            ctx.counters.session_downs += 1;
        }
        ctx.dirty.extend(std::mem::take(&mut self.adj_rib_in).into_keys());
        self.adj_rib_out.clear();
        ctx.sync.remove(&self.addr);
        self.conn = None;
        self.remote_id = None;
        self.hold_deadline = None;
        self.keepalive_deadline = None;
        self.state = if self.active { SessionState::Idle } else { SessionState::Active };
        self.connect_deadline = self.active.then(|| ctx.now + ctx.config.connect_retry);
    }

    /// Forgets the session without a word (the host failed): nothing is sent, and it stays Idle
    /// until [`Peer::start`].
    pub(super) fn halt(&mut self, ctx: &mut Ctx<'_>) {
        self.down(ctx, None);
        self.state = SessionState::Idle;
        self.connect_deadline = None;
    }

    /// Sends one message on the established connection.
    pub(super) fn send(&mut self, ctx: &mut Ctx<'_>, message: &Message) {
        let Some(conn) = self.conn.as_mut() else { return };
        if conn.state != TcpState::Established {
            return;
        }
        if conn.unacked.len() >= UNACKED_SEGMENTS_MAX {
            ctx.counters.send_queue_overflows += 1;
            self.down(ctx, None);
            return;
        }
        let bytes = message.emit();
        let segment = conn.send(ctx.now, ctx.config.retransmit_timeout, &bytes, false);
        ctx.emit(self.addr, &segment, &bytes);
        let sent = &mut ctx.counters.sent;
        match message {
            Message::Open(_) => sent.open += 1,
            Message::Update(u) => {
                sent.update += 1;
                ctx.counters.prefixes_announced += u.nlri.len() as u64;
                ctx.counters.prefixes_withdrawn += u.withdrawn.len() as u64;
            }
            Message::Notification(_) => sent.notification += 1,
            Message::Keepalive => sent.keepalive += 1,
        }
        if self.keepalive_deadline.is_some() {
            self.keepalive_deadline = Some(ctx.now + self.keepalive);
        }
    }

    /// A segment from this peer arrived.
    pub(super) fn on_segment(&mut self, ctx: &mut Ctx<'_>, segment: &Segment, payload: &[u8]) {
        let syn_only = segment.has(flags::SYN) && !segment.has(flags::ACK);
        if syn_only && segment.dst_port == BGP_PORT && !self.active && self.state != SessionState::Idle {
            self.on_syn(ctx, segment);
            return;
        }
        let Some(conn) = self.conn.as_mut().filter(|c| c.matches(segment)) else {
            ctx.counters.unexpected_segments += 1;
            if !segment.has(flags::RST) {
                ctx.emit(self.addr, &reset_for(segment, payload.len()), &[]);
            }
            return;
        };
        let input = conn.on_segment(ctx.now, ctx.config.retransmit_timeout, segment, payload);
        if input.reset {
            self.down(ctx, None);
            return;
        }
        if input.established {
            self.connect_deadline = None;
            self.state = SessionState::OpenSent;
            self.hold_deadline = Some(ctx.now + ctx.config.hold_time);
            // Whole seconds, rounded up; 0 (no hold timer) or at least 3, as RFC 4271 requires.
            let secs = ctx.config.hold_time.as_nanos().div_ceil(1_000_000_000);
            let hold_time_secs = if secs == 0 { 0 } else { secs.clamp(3, 65_535) as u16 };
            let open = Open { asn: ctx.config.asn, hold_time_secs, router_id: ctx.config.router_id };
            self.send(ctx, &Message::Open(open));
        }
        self.deliver(ctx);
        if input.closed && self.conn.is_some() {
            self.down(ctx, None);
            return;
        }
        if let Some(conn) = self.conn.as_mut()
            && conn.ack_pending
        {
            let ack = conn.pure_ack();
            ctx.emit(self.addr, &ack, &[]);
        }
    }

    /// A SYN to the BGP port of this listener.
    fn on_syn(&mut self, ctx: &mut Ctx<'_>, syn: &Segment) {
        if let Some(conn) = &self.conn
            && conn.remote_port == syn.src_port
            && conn.remote_isn == syn.seq
        {
            // A duplicate of the SYN that made this connection.
            if conn.state == TcpState::SynReceived {
                ctx.emit(self.addr, &conn.syn_ack(), &[]);
            }
            return;
        }
        if self.conn.is_some() {
            self.down(ctx, None); // the peer restarted: its old connection is gone
        }
        let isn = self.isn(ctx.config.router_id, u64::from(syn.seq) | (u64::from(syn.src_port) << 32));
        let (conn, syn_ack) = Connection::accept(BGP_PORT, syn, isn);
        ctx.emit(self.addr, &syn_ack, &[]);
        self.conn = Some(conn);
    }

    /// Parses and handles every complete message in the receive buffer.
    fn deliver(&mut self, ctx: &mut Ctx<'_>) {
        loop {
            let Some(conn) = self.conn.as_mut() else { return };
            match Message::parse(&conn.rx) {
                Ok(None) => return,
                Ok(Some((message, len))) => {
                    conn.rx.drain(..len);
                    self.on_message(ctx, message);
                }
                Err(error) => {
                    ctx.counters.malformed += 1;
                    self.down(ctx, Some(error.notification()));
                    return;
                }
            }
        }
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) {
        let received = &mut ctx.counters.received;
        match &message {
            Message::Open(_) => received.open += 1,
            Message::Update(_) => received.update += 1,
            Message::Notification(_) => received.notification += 1,
            Message::Keepalive => received.keepalive += 1,
        }
        match (self.state, message) {
            (_, Message::Notification(_)) => self.down(ctx, None),
            (SessionState::OpenSent, Message::Open(open)) => self.on_open(ctx, &open),
            (SessionState::OpenConfirm, Message::Keepalive) => {
                self.state = SessionState::Established;
                ctx.counters.session_ups += 1;
                ctx.sync.insert(self.addr);
                self.restart_hold(ctx.now);
            }
            (SessionState::Established, Message::Keepalive) => self.restart_hold(ctx.now),
            (SessionState::Established, Message::Update(update)) => {
                self.restart_hold(ctx.now);
                self.on_update(ctx, update);
            }
            _ => self.down(ctx, Some(Notification::new(Notification::FSM_ERROR))),
        }
    }

    fn on_open(&mut self, ctx: &mut Ctx<'_>, open: &Open) {
        let error = if open.asn != ctx.config.asn {
            Some((2, 2)) // bad peer AS: iBGP only
        } else if open.router_id.is_unspecified() || open.router_id == ctx.config.router_id {
            Some((2, 3)) // bad BGP identifier
        } else if matches!(open.hold_time_secs, 1 | 2) {
            Some((2, 6)) // unacceptable hold time
        } else {
            None
        };
        if let Some(code) = error {
            self.down(ctx, Some(Notification::new(code)));
            return;
        }
        self.remote_id = Some(open.router_id);
        self.hold = ctx.config.hold_time.min(SimDuration::from_secs(u64::from(open.hold_time_secs)));
        self.keepalive = ctx.config.keepalive.min(SimDuration::from_nanos(self.hold.as_nanos() / 3));
        self.state = SessionState::OpenConfirm;
        self.keepalive_deadline = (self.hold > SimDuration::ZERO).then_some(ctx.now + self.keepalive);
        self.send(ctx, &Message::Keepalive);
        self.restart_hold(ctx.now);
    }

    fn restart_hold(&mut self, now: SimTime) {
        self.hold_deadline = (self.hold > SimDuration::ZERO).then_some(now + self.hold);
    }

    fn on_update(&mut self, ctx: &mut Ctx<'_>, update: wire::Update) {
        for prefix in update.withdrawn {
            if self.adj_rib_in.remove(&prefix).is_some() {
                ctx.dirty.insert(prefix);
            }
        }
        let Some(attributes) = update.attributes else { return };
        let config = ctx.config;
        // RFC 4456 section 8 and RFC 4271 section 9: drop what would loop.
        let looped = attributes.originator_id == Some(config.router_id)
            || attributes.cluster_list.contains(&config.router_id)
            || attributes.as_path.contains(&config.asn);
        for prefix in update.nlri {
            let changed = if looped {
                self.adj_rib_in.remove(&prefix).is_some()
            } else {
                self.adj_rib_in.insert(prefix, attributes.clone()).as_ref() != Some(&attributes)
            };
            if changed {
                ctx.dirty.insert(prefix);
            }
        }
    }

    /// The session's next timer.
    pub(super) fn poll_timeout(&self) -> Option<SimTime> {
        let rto = self.conn.as_ref().and_then(Connection::poll_timeout);
        [rto, self.hold_deadline, self.keepalive_deadline, self.connect_deadline].into_iter().flatten().min()
    }

    /// Fires the expired timers, in a fixed order: retransmission, hold, keepalive, connect.
    pub(super) fn on_timeout(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        if let Some(conn) = self.conn.as_mut() {
            for (segment, payload) in conn.on_timeout(now, ctx.config.retransmit_timeout) {
                ctx.counters.retransmissions += 1;
                ctx.emit(self.addr, &segment, &payload);
            }
        }
        if self.hold_deadline.is_some_and(|t| t <= now) {
            ctx.counters.hold_timer_expiries += 1;
            self.down(ctx, Some(Notification::new(Notification::HOLD_TIMER_EXPIRED)));
        }
        if self.keepalive_deadline.is_some_and(|t| t <= now) {
            self.send(ctx, &Message::Keepalive);
        }
        if self.connect_deadline.is_some_and(|t| t <= now) {
            self.connect_deadline = None;
            if matches!(self.state, SessionState::Idle | SessionState::Connect) {
                self.conn = None;
                self.start(ctx);
            }
        }
    }
}
