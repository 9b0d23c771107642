//! A minimal reliable, TCP-like byte stream: one per BGP session.
//!
//! Just enough TCP for BGP over a lossy fabric:
//! - setup is a real three-way handshake (SYN, SYN-ACK, ACK) with deterministic initial
//!   sequence numbers; handshake segments are never retransmitted: a lost SYN or SYN-ACK is
//!   recovered by BGP's ConnectRetry timer, which starts over with a fresh connection (and a
//!   fresh source port, so that segments of an old connection are recognised as stale);
//! - data segments carry real sequence and acknowledgment numbers; the receiver accepts only
//!   in-order bytes (a segment overlapping what it has contributes its new tail), drops
//!   everything else and acknowledges every data segment, duplicates included;
//! - the sender keeps its unacknowledged segments and, when the retransmission timer fires,
//!   sends them all again (go-back-N), doubling the timeout up to [`BACKOFF_SHIFT_MAX`] times
//!   until new data is acknowledged;
//! - no flow or congestion control (a fixed window), no delayed ACKs, no options; a FIN or RST
//!   closes the connection at once (BGP closes after a NOTIFICATION anyway).

use std::collections::VecDeque;

use netsim_core::{SimDuration, SimTime};

use super::wire::{Segment, flags};

/// At most this many doublings of the retransmission timeout (200 ms grows to 1.6 s).
pub(super) const BACKOFF_SHIFT_MAX: u32 = 3;

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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Input {
    /// The handshake just completed.
    pub(super) established: bool,
    /// The peer closed the connection (FIN after all its data).
    pub(super) closed: bool,
    /// The peer reset the connection.
    pub(super) reset: bool,
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
    /// Next sequence number expected from the peer.
    pub(super) rcv_nxt: u32,
    /// Sent, unacknowledged segments: (sequence number, payload), oldest first.
    pub(super) unacked: VecDeque<(u32, Vec<u8>)>,
    rto_deadline: Option<SimTime>,
    backoff_shift: u32,
    /// Received data (or a duplicate) that no outgoing segment has acknowledged yet.
    pub(super) ack_pending: bool,
    /// In-order bytes not yet consumed by the BGP message parser.
    pub(super) rx: Vec<u8>,
}

impl Connection {
    /// Opens actively: the connection and its SYN.
    pub(super) fn connect(local_port: u16, remote_port: u16, isn: u32) -> (Connection, Segment) {
        let conn = Connection::new(local_port, remote_port, TcpState::SynSent, isn, 0, 0);
        let syn =
            Segment { src_port: local_port, dst_port: remote_port, seq: isn, ack: 0, flags: flags::SYN };
        (conn, syn)
    }

    /// Accepts the peer's `syn`: the connection and its SYN-ACK.
    pub(super) fn accept(local_port: u16, syn: &Segment, isn: u32) -> (Connection, Segment) {
        let rcv_nxt = syn.seq.wrapping_add(1);
        let conn = Connection::new(local_port, syn.src_port, TcpState::SynReceived, isn, syn.seq, rcv_nxt);
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
            rcv_nxt,
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
        Segment { src_port: self.local_port, dst_port: self.remote_port, seq, ack: self.rcv_nxt, flags }
    }

    /// Whether `segment` belongs to this connection.
    pub(super) fn matches(&self, segment: &Segment) -> bool {
        segment.dst_port == self.local_port && segment.src_port == self.remote_port
    }

    /// Queues `payload` as one segment (`fin` closes the stream after it); returns its header.
    pub(super) fn send(&mut self, now: SimTime, rto: SimDuration, payload: &[u8], fin: bool) -> Segment {
        debug_assert_eq!(self.state, TcpState::Established);
        let fin_flag = if fin { flags::FIN } else { 0 };
        let header = self.header(self.snd_nxt, flags::ACK | flags::PSH | fin_flag);
        self.snd_nxt = self.snd_nxt.wrapping_add(payload.len() as u32 + u32::from(fin));
        self.unacked.push_back((header.seq, payload.to_vec()));
        self.rto_deadline.get_or_insert(now + rto);
        self.ack_pending = false;
        header
    }

    /// A bare acknowledgment of everything received.
    pub(super) fn pure_ack(&mut self) -> Segment {
        self.ack_pending = false;
        self.header(self.snd_nxt, flags::ACK)
    }

    /// Processes a segment that [`Connection::matches`]; in-order payload is appended to `rx`.
    pub(super) fn on_segment(
        &mut self,
        now: SimTime,
        rto: SimDuration,
        s: &Segment,
        payload: &[u8],
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
        }
        let already = self.rcv_nxt.wrapping_sub(s.seq);
        if (already as i32) >= 0 && (already as usize) < payload.len() {
            let fresh = &payload[already as usize..];
            self.rx.extend_from_slice(fresh);
            self.rcv_nxt = self.rcv_nxt.wrapping_add(fresh.len() as u32);
        }
        if !payload.is_empty() || s.has(flags::FIN) {
            self.ack_pending = true;
        }
        if s.has(flags::FIN) && s.seq.wrapping_add(payload.len() as u32) == self.rcv_nxt {
            self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
            input.closed = true;
        }
        input
    }

    fn on_ack(&mut self, now: SimTime, rto: SimDuration, ack: u32) {
        let acked = ack.wrapping_sub(self.snd_una);
        let outstanding = self.snd_nxt.wrapping_sub(self.snd_una);
        if acked == 0 || acked > outstanding {
            return; // a duplicate, or an acknowledgment of data never sent
        }
        let old_una = self.snd_una;
        self.snd_una = ack;
        while let Some((seq, payload)) = self.unacked.front() {
            let end = seq.wrapping_add(payload.len() as u32).wrapping_sub(old_una);
            if end > acked {
                break;
            }
            self.unacked.pop_front();
        }
        self.backoff_shift = 0;
        self.rto_deadline = if self.unacked.is_empty() { None } else { Some(now + rto) };
    }

    /// When the retransmission timer fires next.
    pub(super) fn poll_timeout(&self) -> Option<SimTime> {
        self.rto_deadline
    }

    /// Go-back-N: if the retransmission timer expired, every unacknowledged segment again.
    pub(super) fn on_timeout(&mut self, now: SimTime, rto: SimDuration) -> Vec<(Segment, Vec<u8>)> {
        match self.rto_deadline {
            Some(deadline) if deadline <= now => {}
            _ => return Vec::new(),
        }
        self.backoff_shift = (self.backoff_shift + 1).min(BACKOFF_SHIFT_MAX);
        self.rto_deadline = Some(now + SimDuration::from_nanos(rto.as_nanos() << self.backoff_shift));
        self.ack_pending = false;
        let flags = flags::ACK | flags::PSH;
        self.unacked.iter().map(|(seq, payload)| (self.header(*seq, flags), payload.clone())).collect()
    }
}

/// The reset answering `s`, a segment for no connection (RFC 793's rule for its numbers).
pub(super) fn reset_for(s: &Segment, payload_len: usize) -> Segment {
    let (src_port, dst_port) = (s.dst_port, s.src_port);
    if s.has(flags::ACK) {
        Segment { src_port, dst_port, seq: s.ack, ack: 0, flags: flags::RST }
    } else {
        let len = payload_len as u32 + u32::from(s.has(flags::SYN)) + u32::from(s.has(flags::FIN));
        Segment { src_port, dst_port, seq: 0, ack: s.seq.wrapping_add(len), flags: flags::RST | flags::ACK }
    }
}
