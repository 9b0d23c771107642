//! A minimal reliable, TCP-like byte stream: one per BGP session.
//!
//! Just enough TCP for BGP over a lossy fabric:
//! - setup is a real three-way handshake (SYN, SYN-ACK, ACK) with deterministic initial
//!   sequence numbers; handshake segments are never retransmitted: a lost SYN or SYN-ACK is
//!   recovered by BGP's ConnectRetry timer, which starts over with a fresh connection (and a
//!   fresh source port, so that segments of an old connection are recognised as stale);
//! - BGP appends messages to a byte stream ([`Connection::writer`]); the stream leaves in
//!   segments of at most [`SEGMENT_LEN_MAX`] bytes, each carrying as many messages (or parts of
//!   messages) as fit, with real sequence and acknowledgment numbers;
//! - flow control: at most the peer's advertised window ([`WINDOW`], read from each segment) is
//!   unacknowledged at once; Nagle's algorithm (RFC 896, RFC 1122 4.2.3.4): a segment shorter
//!   than the MSS leaves only when nothing is in flight, so small writes made while earlier
//!   data is unacknowledged share segments;
//! - the receiver accepts only in-order bytes (a segment overlapping what it has contributes its
//!   new tail), drops everything else and acknowledges every data segment, duplicates included;
//! - the sender keeps its unacknowledged segments and, when the retransmission timer fires,
//!   sends them all again (go-back-N), doubling the timeout up to [`BACKOFF_SHIFT_MAX`] times
//!   until new data is acknowledged;
//! - no congestion control, no delayed ACKs, no options; a FIN or RST closes the connection at
//!   once (BGP closes after a NOTIFICATION anyway).

use std::collections::VecDeque;
use std::ops::Range;

use netsim_core::{SimDuration, SimTime};

use super::wire::{SEGMENT_LEN_MAX, Segment, flags};

/// At most this many doublings of the retransmission timeout (200 ms grows to 1.6 s).
pub(super) const BACKOFF_SHIFT_MAX: u32 = 3;

/// The receive window every segment advertises, in bytes. The receiver hands every in-order
/// byte to BGP at once, so its buffer never fills; the window bounds what a sender keeps in
/// flight (and so its memory of unacknowledged segments), like a socket buffer of this size.
pub(super) const WINDOW: u16 = 8_192;

/// Where the connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TcpState {
    /// We sent a SYN and wait for the SYN-ACK.
    SynSent,
    /// We answered a SYN and wait for its acknowledgment.
    SynReceived,
    /// Data flows both ways.
    Established,
}

/// What a received segment did to the connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Input {
    /// The handshake just completed.
    pub(super) established: bool,
    /// The peer closed the connection (FIN after all its data).
    pub(super) closed: bool,
    /// The peer reset the connection.
    pub(super) reset: bool,
    /// The part of the segment's payload that is new in-order data, for BGP.
    pub(super) fresh: Range<usize>,
}

/// One connection's state.
#[derive(Clone, Debug)]
pub(super) struct Connection {
    pub(super) local_port: u16,
    pub(super) remote_port: u16,
    pub(super) state: TcpState,
    /// The peer's initial sequence number, to recognise a retransmitted SYN.
    pub(super) remote_isn: u32,
    /// Oldest unacknowledged sequence number.
    pub(super) snd_una: u32,
    /// Next sequence number to send.
    pub(super) snd_nxt: u32,
    /// The peer's receive window, from its latest segment.
    snd_wnd: u32,
    /// Next sequence number expected from the peer.
    pub(super) rcv_nxt: u32,
    /// The stream from sequence number `buf_seq` on: bytes sent and not acknowledged (at most a
    /// window's worth), then bytes written and not sent (at most a segment and a batch of
    /// messages: the writer stops while a full segment waits).
    buf: Vec<u8>,
    buf_seq: u32,
    /// Sent, unacknowledged segments: (sequence number, length), oldest first.
    unacked: VecDeque<(u32, u32)>,
    rto_deadline: Option<SimTime>,
    backoff_shift: u32,
    /// Received data (or a duplicate) that no outgoing segment has acknowledged yet.
    pub(super) ack_pending: bool,
    /// In-order bytes not yet consumed by the BGP message parser: the start of a message that
    /// continues in a later segment (less than a message's maximum length).
    pub(super) rx: Vec<u8>,
}

impl Connection {
    /// Opens actively: the connection and its SYN.
    pub(super) fn connect(local_port: u16, remote_port: u16, isn: u32) -> (Connection, Segment) {
        let conn = Connection::new(local_port, remote_port, TcpState::SynSent, isn, 0, 0);
        let syn = Segment {
            src_port: local_port,
            dst_port: remote_port,
            seq: isn,
            ack: 0,
            flags: flags::SYN,
            window: WINDOW,
        };
        (conn, syn)
    }

    /// Accepts the peer's `syn`: the connection and its SYN-ACK.
    pub(super) fn accept(local_port: u16, syn: &Segment, isn: u32) -> (Connection, Segment) {
        let rcv_nxt = syn.seq.wrapping_add(1);
        let mut conn =
            Connection::new(local_port, syn.src_port, TcpState::SynReceived, isn, syn.seq, rcv_nxt);
        conn.snd_wnd = u32::from(syn.window);
        let syn_ack = conn.syn_ack();
        (conn, syn_ack)
    }

    fn new(
        local_port: u16,
        remote_port: u16,
        state: TcpState,
        isn: u32,
        remote_isn: u32,
        rcv_nxt: u32,
    ) -> Self {
        Connection {
            local_port,
            remote_port,
            state,
            remote_isn,
            snd_una: isn,
            snd_nxt: isn.wrapping_add(1), // the SYN takes one sequence number
            snd_wnd: 0,
            rcv_nxt,
            buf: Vec::new(),
            buf_seq: isn.wrapping_add(1),
            unacked: VecDeque::new(),
            rto_deadline: None,
            backoff_shift: 0,
            ack_pending: false,
            rx: Vec::new(),
        }
    }

    /// The SYN-ACK of a passive open (again, for a retransmitted SYN).
    pub(super) fn syn_ack(&self) -> Segment {
        self.header(self.snd_una, flags::SYN | flags::ACK)
    }

    fn header(&self, seq: u32, flags: u8) -> Segment {
        Segment {
            src_port: self.local_port,
            dst_port: self.remote_port,
            seq,
            ack: self.rcv_nxt,
            flags,
            window: WINDOW,
        }
    }

    /// Whether `segment` belongs to this connection.
    pub(super) fn matches(&self, segment: &Segment) -> bool {
        segment.dst_port == self.local_port && segment.src_port == self.remote_port
    }

    /// Bytes sent and not yet acknowledged.
    pub(super) fn in_flight(&self) -> u32 {
        self.snd_nxt.wrapping_sub(self.snd_una)
    }

    /// Where BGP appends messages (to the end of the stream).
    pub(super) fn writer(&mut self) -> &mut Vec<u8> {
        debug_assert_eq!(self.state, TcpState::Established);
        &mut self.buf
    }

    /// Bytes written and not sent yet.
    pub(super) fn unsent(&self) -> usize {
        self.buf.len() - self.snd_nxt.wrapping_sub(self.buf_seq) as usize
    }

    /// The next segment of unsent bytes, if the window and Nagle's rule let one leave now: a
    /// full segment when the window has room for it, a shorter one (the end of what was
    /// written) only when nothing is in flight. With nothing in flight a segment leaves even if
    /// the window is smaller than it, so a stream never stalls.
    pub(super) fn next_segment(&mut self, now: SimTime, rto: SimDuration) -> Option<(Segment, &[u8])> {
        let unsent = self.unsent();
        if self.state != TcpState::Established || unsent == 0 {
            return None;
        }
        let len = unsent.min(SEGMENT_LEN_MAX);
        let in_flight = self.in_flight();
        let room = self.snd_wnd.saturating_sub(in_flight) as usize;
        if in_flight > 0 && (len < SEGMENT_LEN_MAX || len > room) {
            return None;
        }
        let header = self.header(self.snd_nxt, flags::ACK | flags::PSH);
        let start = self.snd_nxt.wrapping_sub(self.buf_seq) as usize;
        self.snd_nxt = self.snd_nxt.wrapping_add(len as u32);
        self.rto_deadline.get_or_insert(now + rto);
        self.ack_pending = false;
        self.unacked.push_back((header.seq, len as u32));
        Some((header, &self.buf[start..start + len]))
    }

    /// The segment that ends the stream: `payload` (a NOTIFICATION) and FIN, at once whatever
    /// the window; bytes written and not sent are dropped. The caller forgets the connection
    /// right after (BGP closes after a NOTIFICATION), so nothing is kept for retransmission.
    pub(super) fn close_with(&mut self, payload: &[u8]) -> Segment {
        debug_assert_eq!(self.state, TcpState::Established);
        let header = self.header(self.snd_nxt, flags::ACK | flags::PSH | flags::FIN);
        self.snd_nxt = self.snd_nxt.wrapping_add(payload.len() as u32 + 1);
        self.ack_pending = false;
        header
    }

    /// A bare acknowledgment of everything received.
    pub(super) fn pure_ack(&mut self) -> Segment {
        self.ack_pending = false;
        self.header(self.snd_nxt, flags::ACK)
    }

    /// Processes a segment that [`Connection::matches`]; `fresh` in the result is the in-order
    /// payload BGP has not seen.
    pub(super) fn on_segment(
        &mut self,
        now: SimTime,
        rto: SimDuration,
        s: &Segment,
        payload_len: usize,
    ) -> Input {
        let mut input = Input::default();
        if s.has(flags::RST) {
            input.reset = true;
            return input;
        }
        match self.state {
            TcpState::SynSent => {
                if s.has(flags::SYN | flags::ACK) && s.ack == self.snd_nxt {
                    self.remote_isn = s.seq;
                    self.rcv_nxt = s.seq.wrapping_add(1);
                    self.snd_una = self.snd_nxt;
                    self.snd_wnd = u32::from(s.window);
                    self.state = TcpState::Established;
                    self.ack_pending = true;
                    input.established = true;
                }
                return input;
            }
            TcpState::SynReceived => {
                if !s.has(flags::ACK) || s.has(flags::SYN) || s.ack != self.snd_nxt {
                    return input;
                }
                self.snd_una = self.snd_nxt;
                self.state = TcpState::Established;
                input.established = true;
            }
            TcpState::Established => {}
        }
        if s.has(flags::SYN) {
            // A duplicate SYN-ACK: our ACK was lost or is late; acknowledge again.
            self.ack_pending = true;
            return input;
        }
        if s.has(flags::ACK) {
            self.on_ack(now, rto, s.ack);
            self.snd_wnd = u32::from(s.window);
        }
        let already = self.rcv_nxt.wrapping_sub(s.seq);
        if (already as i32) >= 0 && (already as usize) < payload_len {
            input.fresh = already as usize..payload_len;
            self.rcv_nxt = self.rcv_nxt.wrapping_add((payload_len - already as usize) as u32);
        }
        if payload_len > 0 || s.has(flags::FIN) {
            self.ack_pending = true;
        }
        if s.has(flags::FIN) && s.seq.wrapping_add(payload_len as u32) == self.rcv_nxt {
            self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
            input.closed = true;
        }
        input
    }

    fn on_ack(&mut self, now: SimTime, rto: SimDuration, ack: u32) {
        let acked = ack.wrapping_sub(self.snd_una);
        let outstanding = self.in_flight();
        if acked == 0 || acked > outstanding {
            return; // a duplicate, or an acknowledgment of data never sent
        }
        let old_una = self.snd_una;
        self.snd_una = ack;
        while let Some(&(seq, len)) = self.unacked.front() {
            let end = seq.wrapping_add(len).wrapping_sub(old_una);
            if end > acked {
                break;
            }
            self.unacked.pop_front();
        }
        // Keep the bytes of the oldest segment not wholly acknowledged, for retransmission;
        // drop the rest, moving the remainder down only when that costs no more than what was
        // dropped since the last move.
        let keep = self.unacked.front().map_or(self.snd_nxt, |&(seq, _)| seq);
        let done = keep.wrapping_sub(self.buf_seq) as usize;
        if done == self.buf.len() {
            self.buf.clear();
            if self.buf.capacity() > 4 * SEGMENT_LEN_MAX {
                self.buf = Vec::new(); // an idle session keeps no window's worth of memory
            }
            self.buf_seq = keep;
        } else if done >= self.buf.len() - done {
            self.buf.drain(..done);
            self.buf_seq = keep;
        }
        self.backoff_shift = 0;
        self.rto_deadline = if self.unacked.is_empty() { None } else { Some(now + rto) };
    }

    /// When the retransmission timer fires next.
    pub(super) fn poll_timeout(&self) -> Option<SimTime> {
        self.rto_deadline
    }

    /// Go-back-N: if the retransmission timer expired, every unacknowledged segment again
    /// (`emit` gets each).
    pub(super) fn on_timeout(
        &mut self,
        now: SimTime,
        rto: SimDuration,
        mut emit: impl FnMut(&Segment, &[u8]),
    ) {
        match self.rto_deadline {
            Some(deadline) if deadline <= now => {}
            _ => return,
        }
        self.backoff_shift = (self.backoff_shift + 1).min(BACKOFF_SHIFT_MAX);
        self.rto_deadline = Some(now + SimDuration::from_nanos(rto.as_nanos() << self.backoff_shift));
        self.ack_pending = false;
        for &(seq, len) in &self.unacked {
            let start = seq.wrapping_sub(self.buf_seq) as usize;
            emit(&self.header(seq, flags::ACK | flags::PSH), &self.buf[start..start + len as usize]);
        }
    }
}

/// The reset answering `s`, a segment for no connection (RFC 793's rule for its numbers).
pub(super) fn reset_for(s: &Segment, payload_len: usize) -> Segment {
    let (src_port, dst_port) = (s.dst_port, s.src_port);
    if s.has(flags::ACK) {
        Segment { src_port, dst_port, seq: s.ack, ack: 0, flags: flags::RST, window: 0 }
    } else {
        let len = payload_len as u32 + u32::from(s.has(flags::SYN)) + u32::from(s.has(flags::FIN));
        Segment {
            src_port,
            dst_port,
            seq: 0,
            ack: s.seq.wrapping_add(len),
            flags: flags::RST | flags::ACK,
            window: 0,
        }
    }
}
