//! One BGP session: the RFC 4271 finite state machine over one [`Connection`], with its timers,
//! and what the peer was sent and must be sent.
//!
//! Who connects: the speaker with the lower router id opens the TCP connection (state
//! `Connect`), the other only listens (state `Active`), so connections never collide. A SYN from
//! a new source port replaces a listener's connection: the peer restarted.
//!
//! Routes out: the session keeps a bit per prefix for what the peer holds from us
//! (`advertised`) and one for what to look at again (`pending`: every prefix when the session
//! comes up, and the changes the RIB's journal records, read when the session is about to
//! write). UPDATEs are written from the pending bits only when what is written can leave (see
//! [`Peer::transmit`]), so a session whose peer is slow to acknowledge accumulates bits, not
//! bytes, and a prefix that changes twice meanwhile is sent once, in its latest state (as
//! RFC 4271 section 9.2 allows and BIRD does).

use std::collections::{BTreeSet, VecDeque};
use std::net::Ipv4Addr;
use std::ops::Range;

use ipnet::Ipv4Net;
use netsim_core::{SimDuration, SimTime, mix64};

use super::rib::{Path, PrefixId, PrefixSet, Rib};
use super::transport::{Connection, TcpState, reset_for};
use super::wire::{
    self, AttributesView, BGP_PORT, Message, MessageView, Notification, Open, SEGMENT_LEN_MAX, Segment,
    UPDATE_FIXED_LEN, UPDATE_LEN_MAX, UpdateView, flags, prefix_len_bytes,
};
use super::{BgpConfig, BgpCounters, SessionState};

/// First source port of active opens; each attempt takes the next one (wrapping in 16384).
const EPHEMERAL_PORT_BASE: u16 = 49_152;

/// Reusable buffers for writing UPDATEs.
#[derive(Clone, Debug, Default)]
pub(super) struct Scratch {
    withdrawn: Vec<Ipv4Net>,
    /// (export id, prefix id) of the announcements of one batch.
    announced: Vec<(u32, PrefixId)>,
    /// Prefixes to choose the best path of, in one flush.
    pub(super) dirty: Vec<PrefixId>,
    /// Frames handed back by the caller ([`super::Speaker::recycle`]), to build frames in.
    pub(super) frames: Vec<Vec<u8>>,
}

/// What a session needs from its speaker while it handles one input.
pub(super) struct Ctx<'a> {
    pub(super) now: SimTime,
    pub(super) config: &'a BgpConfig,
    pub(super) transmit: &'a mut VecDeque<(Ipv4Addr, Vec<u8>)>,
    pub(super) counters: &'a mut BgpCounters,
    pub(super) rib: &'a mut Rib,
    /// Peers that just reached Established and need the full table.
    pub(super) sync: &'a mut BTreeSet<Ipv4Addr>,
    /// Peers that may have something to send: an acknowledgment, bytes, pending prefixes
    /// (duplicates allowed).
    pub(super) ready: &'a mut Vec<Ipv4Addr>,
    /// Established peers with nothing in flight: a change goes to them at once.
    pub(super) idle: &'a mut BTreeSet<Ipv4Addr>,
    pub(super) scratch: &'a mut Scratch,
}

impl Ctx<'_> {
    fn emit(&mut self, peer: Ipv4Addr, segment: &Segment, payload: &[u8]) {
        let mut frame = self.scratch.frames.pop().unwrap_or_default();
        wire::build_frame_into(&mut frame, self.config.mac, self.config.router_id, peer, segment, payload);
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
    /// Prefixes the peer holds from us: announced, not withdrawn since. Empty unless
    /// Established.
    pub(super) advertised: PrefixSet,
    /// Prefixes whose advertisement to the peer must be looked at again, besides the changes
    /// in the RIB's journal from `journal_pos` on.
    pub(super) pending: PrefixSet,
    pub(super) journal_pos: u64,
    /// Established with nothing in flight: in the speaker's idle set.
    idle: bool,
    /// The deadline the speaker's timer set holds for this peer.
    pub(super) timer: Option<SimTime>,
    /// The shared attributes of the peer's latest UPDATE (holding a reference): consecutive
    /// UPDATEs usually share them.
    shared_cache: Option<u32>,
    /// The id after the last prefix the peer sent: where its next one probably is.
    hint: PrefixId,
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
            advertised: PrefixSet::default(),
            pending: PrefixSet::default(),
            journal_pos: 0,
            idle: false,
            timer: None,
            shared_cache: None,
            hint: 0,
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
            let segment = conn.close_with(&bytes);
            ctx.emit(self.addr, &segment, &bytes);
            ctx.counters.sent.notification += 1;
        }
        if self.state == SessionState::Established {
            ctx.counters.session_downs += 1;
            // Paths are learned only while Established.
            ctx.rib.remove_peer(self.addr);
        }
        if let Some(shared) = self.shared_cache.take() {
            ctx.rib.release_shared(shared);
        }
        self.advertised.clear();
        self.pending.clear();
        ctx.sync.remove(&self.addr);
        self.conn = None;
        self.remote_id = None;
        self.hold_deadline = None;
        self.keepalive_deadline = None;
        self.state = if self.active { SessionState::Idle } else { SessionState::Active };
        self.connect_deadline = self.active.then(|| ctx.now + ctx.config.connect_retry);
        self.refresh_idle(ctx);
    }

    /// Keeps the speaker's idle set true to the session.
    pub(super) fn refresh_idle(&mut self, ctx: &mut Ctx<'_>) {
        let idle =
            self.state == SessionState::Established && self.conn.as_ref().is_some_and(|c| c.in_flight() == 0);
        if idle != self.idle {
            self.idle = idle;
            if idle {
                ctx.idle.insert(self.addr);
            } else {
                ctx.idle.remove(&self.addr);
            }
        }
    }

    /// The session came up: every prefix is to be looked at.
    pub(super) fn sync(&mut self, rib: &Rib) {
        self.pending.insert_below(rib.len());
        self.journal_pos = rib.journal_end();
    }

    /// Moves the changes the journal holds for this peer into its pending prefixes.
    pub(super) fn absorb(&mut self, rib: &Rib) {
        for &id in rib.journal_since(self.journal_pos) {
            self.pending.insert(id);
        }
        self.journal_pos = rib.journal_end();
    }

    /// How many prefixes at most are waiting to be looked at.
    fn backlog(&self, rib: &Rib) -> usize {
        self.pending.len() + rib.journal_end().saturating_sub(self.journal_pos) as usize
    }

    /// Forgets the session without a word (the host failed): nothing is sent, and it stays Idle
    /// until [`Peer::start`].
    pub(super) fn halt(&mut self, ctx: &mut Ctx<'_>) {
        self.down(ctx, None);
        self.state = SessionState::Idle;
        self.connect_deadline = None;
    }

    /// Writes one message (not an UPDATE: those come from the pending prefixes) on the
    /// established connection and sends what may leave.
    pub(super) fn send(&mut self, ctx: &mut Ctx<'_>, message: &Message) {
        let Some(conn) = self.conn.as_mut() else { return };
        if conn.state != TcpState::Established {
            return;
        }
        message.emit_into(conn.writer());
        let sent = &mut ctx.counters.sent;
        match message {
            Message::Open(_) => sent.open += 1,
            Message::Keepalive => sent.keepalive += 1,
            Message::Update(_) | Message::Notification(_) => {
                unreachable!("UPDATEs come from pending prefixes, NOTIFICATIONs close the stream")
            }
        }
        self.wrote(ctx.now);
        self.push(ctx);
    }

    /// A message was written: the next KEEPALIVE is due a keepalive interval from now.
    fn wrote(&mut self, now: SimTime) {
        if self.keepalive_deadline.is_some() {
            self.keepalive_deadline = Some(now + self.keepalive);
        }
    }

    /// Sends the segments the connection lets leave now; how many.
    fn push(&mut self, ctx: &mut Ctx<'_>) -> usize {
        let Some(conn) = self.conn.as_mut() else { return 0 };
        let mut sent = 0;
        while let Some((segment, payload)) = conn.next_segment(ctx.now, ctx.config.retransmit_timeout) {
            ctx.emit(self.addr, &segment, payload);
            sent += 1;
        }
        sent
    }

    /// Sends what it can: UPDATEs for the pending prefixes while the connection takes them,
    /// then a bare acknowledgment if no segment carried one.
    ///
    /// UPDATEs are written only when what is written can leave: when nothing is in flight, or
    /// when the pending prefixes (at least 5 bytes each) fill the segment being assembled.
    /// Otherwise the prefixes stay pending until an acknowledgment arrives, so that changes made
    /// meanwhile are packed together (Nagle's algorithm, applied before the bytes exist).
    pub(super) fn transmit(&mut self, ctx: &mut Ctx<'_>) {
        if self.state == SessionState::Established {
            loop {
                while let Some(conn) = self.conn.as_ref()
                    && conn.unsent() < SEGMENT_LEN_MAX
                    && self.backlog(ctx.rib) > 0
                    && (conn.in_flight() == 0 || conn.unsent() + 5 * self.backlog(ctx.rib) >= SEGMENT_LEN_MAX)
                {
                    self.absorb(ctx.rib);
                    if self.pending.is_empty() {
                        break;
                    }
                    self.write_updates(ctx);
                }
                if self.push(ctx) == 0 || self.backlog(ctx.rib) == 0 {
                    break;
                }
            }
        }
        if let Some(conn) = self.conn.as_mut()
            && conn.ack_pending
        {
            let ack = conn.pure_ack();
            ctx.emit(self.addr, &ack, &[]);
        }
        self.refresh_idle(ctx);
    }

    /// Writes UPDATEs for a batch of pending prefixes (about an UPDATE's worth): withdrawals
    /// first, then announcements grouped by their attributes, each UPDATE as full as
    /// [`UPDATE_LEN_MAX`] allows.
    fn write_updates(&mut self, ctx: &mut Ctx<'_>) {
        let Some(conn) = self.conn.as_mut() else { return };
        let rib = &*ctx.rib;
        let scratch = &mut *ctx.scratch;
        scratch.withdrawn.clear();
        scratch.announced.clear();
        let mut bytes = 0;
        let mut last_export = None;
        while bytes < UPDATE_LEN_MAX
            && let Some(id) = self.pending.pop_first()
        {
            let entry = rib.entry(id);
            let export = rib.export_of(id).filter(|&e| rib.export(e).to(self.addr, self.client));
            match export {
                None => {
                    if self.advertised.contains(id) {
                        self.advertised.remove(id);
                        scratch.withdrawn.push(entry.prefix);
                        bytes += prefix_len_bytes(&entry.prefix);
                    }
                }
                Some(export) => {
                    self.advertised.insert(id);
                    scratch.announced.push((export, id));
                    bytes += prefix_len_bytes(&entry.prefix);
                    if Some(export) != last_export {
                        bytes += UPDATE_FIXED_LEN + rib.export(export).encoded.len();
                        last_export = Some(export);
                    }
                }
            }
        }
        let out = conn.writer();
        let counters = &mut *ctx.counters;
        let mut updates = 0;
        for chunk in chunks(&scratch.withdrawn, UPDATE_FIXED_LEN, prefix_len_bytes) {
            wire::write_update(out, chunk.iter().copied(), &[], std::iter::empty());
            counters.prefixes_withdrawn += chunk.len() as u64;
            updates += 1;
        }
        scratch.announced.sort_unstable();
        for group in scratch.announced.chunk_by(|a, b| a.0 == b.0) {
            let attributes = &rib.export(group[0].0).encoded;
            let prefix = |&(_, id): &(u32, PrefixId)| rib.entry(id).prefix;
            let fixed = UPDATE_FIXED_LEN + attributes.len();
            for chunk in chunks(group, fixed, |a| prefix_len_bytes(&prefix(a))) {
                wire::write_update(out, std::iter::empty(), attributes, chunk.iter().map(prefix));
                counters.prefixes_announced += chunk.len() as u64;
                updates += 1;
            }
        }
        counters.sent.update += updates;
        if updates > 0 {
            self.wrote(ctx.now);
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
        let input = conn.on_segment(ctx.now, ctx.config.retransmit_timeout, segment, payload.len());
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
        self.deliver(ctx, payload, input.fresh);
        if input.closed && self.conn.is_some() {
            self.down(ctx, None);
            return;
        }
        // An acknowledgment may have opened the window: whatever waits may leave now.
        if let Some(conn) = &self.conn
            && (conn.ack_pending || conn.unsent() > 0 || self.backlog(ctx.rib) > 0)
        {
            ctx.ready.push(self.addr);
        }
        self.refresh_idle(ctx);
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

    /// Handles every complete message of the stream's new bytes `payload[fresh]` (after what
    /// an earlier segment left incomplete), and keeps an incomplete last one for later.
    fn deliver(&mut self, ctx: &mut Ctx<'_>, payload: &[u8], fresh: Range<usize>) {
        let Some(conn) = self.conn.as_mut() else { return };
        let data = &payload[fresh];
        if data.is_empty() {
            return;
        }
        if conn.rx.is_empty() {
            // The common case: messages read in place.
            let used = self.handle_messages(ctx, data);
            if let Some(conn) = self.conn.as_mut() {
                conn.rx.extend_from_slice(&data[used..]);
            }
        } else {
            let mut rx = std::mem::take(&mut conn.rx);
            rx.extend_from_slice(data);
            let used = self.handle_messages(ctx, &rx);
            if let Some(conn) = self.conn.as_mut() {
                rx.drain(..used);
                conn.rx = rx;
            }
        }
    }

    /// Handles the complete messages at the start of `stream`; how many bytes they took. Stops
    /// when the session goes down (a malformed message is answered with the NOTIFICATION RFC
    /// 4271 prescribes).
    fn handle_messages(&mut self, ctx: &mut Ctx<'_>, stream: &[u8]) -> usize {
        let mut used = 0;
        while self.conn.is_some() {
            match MessageView::parse(&stream[used..]) {
                Ok(None) => break,
                Ok(Some((message, len))) => {
                    used += len;
                    self.on_message(ctx, message);
                }
                Err(error) => {
                    ctx.counters.malformed += 1;
                    self.down(ctx, Some(error.notification()));
                    break;
                }
            }
        }
        used
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: MessageView<'_>) {
        let received = &mut ctx.counters.received;
        match &message {
            MessageView::Open(_) => received.open += 1,
            MessageView::Update(_) => received.update += 1,
            MessageView::Notification(_) => received.notification += 1,
            MessageView::Keepalive => received.keepalive += 1,
        }
        match (self.state, message) {
            (_, MessageView::Notification(_)) => self.down(ctx, None),
            (SessionState::OpenSent, MessageView::Open(open)) => self.on_open(ctx, &open),
            (SessionState::OpenConfirm, MessageView::Keepalive) => {
                self.state = SessionState::Established;
                ctx.counters.session_ups += 1;
                ctx.sync.insert(self.addr);
                self.restart_hold(ctx.now);
            }
            (SessionState::Established, MessageView::Keepalive) => self.restart_hold(ctx.now),
            (SessionState::Established, MessageView::Update(update)) => {
                self.restart_hold(ctx.now);
                self.on_update(ctx, &update);
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

    fn on_update(&mut self, ctx: &mut Ctx<'_>, update: &UpdateView<'_>) {
        let rib = &mut *ctx.rib;
        for prefix in update.withdrawn() {
            if let Some(id) = rib.lookup(prefix, self.hint) {
                rib.remove_path(id, self.addr);
                self.hint = id + 1;
            }
        }
        let Some(attributes) = &update.attributes else { return };
        let config = ctx.config;
        // RFC 4456 section 8 and RFC 4271 section 9: drop what would loop.
        let looped = attributes.originator_id == Some(config.router_id)
            || attributes.cluster_list().any(|id| id == config.router_id)
            || attributes.as_path().any(|asn| asn == config.asn);
        if looped {
            for prefix in update.nlri() {
                if let Some(id) = rib.lookup(prefix, self.hint) {
                    rib.remove_path(id, self.addr);
                }
            }
            return;
        }
        let path =
            Path { peer: self.addr, next_hop: attributes.next_hop, shared: self.shared_id(rib, attributes) };
        for prefix in update.nlri() {
            let id = rib.id(prefix, self.hint);
            rib.set_path(id, path);
            self.hint = id + 1;
        }
    }

    /// The interned shared attributes of `attributes`: the previous UPDATE's, most of the time.
    fn shared_id(&mut self, rib: &mut Rib, attributes: &AttributesView<'_>) -> u32 {
        // Established: the OPEN gave the identifier.
        let peer_id = self.remote_id.unwrap_or(Ipv4Addr::UNSPECIFIED);
        if let Some(id) = self.shared_cache
            && rib.shared(id).matches(attributes, peer_id)
        {
            return id;
        }
        let id = rib.intern_shared(attributes, peer_id); // the cache's reference
        if let Some(old) = self.shared_cache.replace(id) {
            rib.release_shared(old);
        }
        id
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
            let addr = self.addr;
            conn.on_timeout(now, ctx.config.retransmit_timeout, |segment, payload| {
                ctx.counters.retransmissions += 1;
                ctx.emit(addr, segment, payload);
            });
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
        self.refresh_idle(ctx);
    }
}

/// Splits `items` into runs that fit an UPDATE: `fixed` bytes plus `size` of each item, at most
/// [`UPDATE_LEN_MAX`], and at least one item per run.
fn chunks<T>(items: &[T], fixed: usize, size: impl Fn(&T) -> usize) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut total = fixed;
        let mut n = 0;
        while n < rest.len() && (n == 0 || total + size(&rest[n]) <= UPDATE_LEN_MAX) {
            total += size(&rest[n]);
            n += 1;
        }
        let (run, tail) = rest.split_at(n);
        rest = tail;
        Some(run)
    })
}
