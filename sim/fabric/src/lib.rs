//! `netsim-fabric`: a sans-IO model of a leaf-spine underlay.
//!
//! The fabric never reads a clock and never schedules anything itself. The caller (the
//! simulator, or a test) passes the current time into every call and gets decisions back:
//!
//! - [`Fabric::send`] — a host puts a frame on the wire; [`Fabric::arrive`] — a frame reaches
//!   the far end of a link. Each returns exactly one [`Forward`]: transmit on a link (with the
//!   exact arrival time, after queueing, serialization and propagation), deliver to a host, or
//!   drop with a [`DropReason`]. One frame in, one fate out: no frame is ever lost silently.
//!   [`Fabric::forward`] is `arrive` in place, for callers that keep a frame where it waits.
//! - [`Fabric::fail`] / [`Fabric::recover`] — an element changes state now; routing learns of it
//!   `detection_delay` later (BFD-like). In between, frames sent into the dead element are lost.
//! - [`Fabric::poll_timeout`] says when routing next needs to act; the caller calls
//!   [`Fabric::handle_timeout`] at that time. [`Fabric::poll_event`] drains notifications.
//!
//! Frames are real Ethernet II / IPv4 bytes. Switches are IP routers: they read the destination
//! address, decrement the TTL (updating the header checksum incrementally), rewrite the MAC
//! addresses for the next hop and pick among equal-cost next hops with a seeded hash of the
//! outer 5-tuple.
//!
//! Modules: [`topology`] (wiring and names), [`routing`] (shortest paths with ECMP).

pub mod routing;
pub mod topology;

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::Ipv4Addr;

use netsim_core::checksum;
use netsim_core::packet::ETHERNET_HEADER_LEN;
use netsim_core::{FiveTuple, SimDuration, SimTime, hash::hash_bytes, mix64};

pub use routing::RoutingTable;
pub use topology::{
    EcmpSeeding, FabricConfig, LinkConfig, LinkId, NodeId, NodeKind, Port, Topology, TopologyError,
};

/// Bytes a frame occupies on the wire beyond its Ethernet header and payload: FCS (4),
/// preamble and start delimiter (8), inter-frame gap (12).
pub const WIRE_OVERHEAD_BYTES: u64 = 24;

/// Why the fabric dropped a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// Sent into, or in flight on, a link that failed.
    LinkDown,
    /// Reached, or sent from, a node that is down.
    NodeDown,
    /// The egress queue was full (tail drop).
    QueueFull,
    /// The IP packet is larger than the egress link's MTU.
    MtuExceeded,
    /// Routing has no path to the destination.
    NoRoute,
    /// The TTL ran out.
    TtlExpired,
    /// The bytes are not an Ethernet II / IPv4 frame the fabric can route.
    Malformed,
    /// A host received a frame addressed to another host.
    NotForHost,
}

impl DropReason {
    /// Every reason, in a fixed order.
    pub const ALL: [DropReason; 8] = [
        DropReason::LinkDown,
        DropReason::NodeDown,
        DropReason::QueueFull,
        DropReason::MtuExceeded,
        DropReason::NoRoute,
        DropReason::TtlExpired,
        DropReason::Malformed,
        DropReason::NotForHost,
    ];

    /// The reason's name in results and traces.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::LinkDown => "link_down",
            DropReason::NodeDown => "node_down",
            DropReason::QueueFull => "queue_full",
            DropReason::MtuExceeded => "mtu_exceeded",
            DropReason::NoRoute => "no_route",
            DropReason::TtlExpired => "ttl_expired",
            DropReason::Malformed => "malformed",
            DropReason::NotForHost => "not_for_host",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An element of the fabric that can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Element {
    /// A link, both directions.
    Link(LinkId),
    /// A host or switch, with all its links.
    Node(NodeId),
}

/// A frame on its way across one link.
///
/// The caller holds it until `arrive_at` and then hands it to [`Fabric::arrive`].
#[derive(Debug)]
pub struct Transmit {
    /// When the last bit reaches the far end.
    pub arrive_at: SimTime,
    /// The link it travels on.
    pub link: LinkId,
    /// Direction of travel on the link (0: from its first end, 1: from its second).
    pub direction: u8,
    /// Node the frame left.
    pub from: NodeId,
    /// Node the frame arrives at.
    pub to: NodeId,
    /// How many equal-cost next hops the sender had, and which one it took.
    pub ecmp: EcmpChoice,
    /// The frame, as it is on this link.
    pub frame: Vec<u8>,
    /// An opaque word the caller may attach to a frame in flight, carried unchanged from hop
    /// to hop (as a kernel carries a packet's mark): what the caller learnt from the frame's
    /// bytes once need not be parsed again at every hop. Zero when the frame is sent.
    pub tag: u64,
    /// The destination host found at the previous hop, valid while no block has been
    /// announced or withdrawn since (`announce_epoch`): the frame's addresses do not change on
    /// the way, so the next hop need not parse them and search the blocks again.
    destination: Option<(NodeId, u64)>,
    /// The link's failure generation at departure: a failure in flight loses the frame.
    generation: u32,
}

/// An ECMP decision: `chosen` of `members` equal-cost next hops (0 of 1 when there was no choice).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EcmpChoice {
    /// Number of equal-cost next hops.
    pub members: u16,
    /// Index of the one taken.
    pub chosen: u16,
}

// ANCHOR: forward
/// The fate of a frame handed to the fabric.
#[derive(Debug)]
pub enum Forward {
    /// On a link; hand it back to [`Fabric::arrive`] at `arrive_at`.
    Transmit(Transmit),
    /// Reached the host it was addressed to.
    Deliver {
        /// The receiving host.
        host: NodeId,
        /// The frame as received.
        frame: Vec<u8>,
    },
    /// Lost.
    Drop {
        /// Why.
        reason: DropReason,
        /// Where: the node that dropped it (for in-flight losses, the receiving end).
        node: NodeId,
        /// The frame, so the caller can account for it and reuse the buffer.
        frame: Vec<u8>,
    },
}
// ANCHOR_END: forward

/// The fate of a frame handed to [`Fabric::forward`], which leaves the frame in its
/// [`Transmit`]: a frame crossing the fabric stays in one place from hop to hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hop {
    /// The `Transmit` now describes the next link; hand it back at its `arrive_at`.
    Transmit,
    /// Reached the host it was addressed to.
    Deliver {
        /// The receiving host.
        host: NodeId,
    },
    /// Lost.
    Drop {
        /// Why.
        reason: DropReason,
        /// Where: the node that dropped it (for in-flight losses, the receiving end).
        node: NodeId,
    },
}

impl Transmit {
    /// A frame about to leave `host`, before routing has picked its link.
    fn leaving(host: NodeId, frame: Vec<u8>) -> Transmit {
        Transmit {
            arrive_at: SimTime::ZERO,
            link: LinkId(0),
            direction: 0,
            from: host,
            to: host,
            ecmp: EcmpChoice { members: 1, chosen: 0 },
            frame,
            tag: 0,
            destination: None,
            generation: 0,
        }
    }

    /// The frame's fate as a [`Forward`], which owns the frame, from the [`Hop`]
    /// [`Fabric::forward`] returned for it.
    pub fn into_forward(self, hop: Hop) -> Forward {
        match hop {
            Hop::Transmit => Forward::Transmit(self),
            Hop::Deliver { host } => Forward::Deliver { host, frame: self.frame },
            Hop::Drop { reason, node } => Forward::Drop { reason, node, frame: self.frame },
        }
    }
}

/// A notification from the fabric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FabricEvent {
    /// Routing acted on an element's change of state and recomputed its paths.
    RoutingUpdated {
        /// The element.
        element: Element,
        /// Its state as routing now sees it.
        up: bool,
    },
}

/// Per-direction link counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Frames put on the wire.
    pub frames: u64,
    /// Bytes put on the wire (frames, without the wire overhead).
    pub bytes: u64,
    /// Frames tail-dropped because the queue was full.
    pub queue_drops: u64,
    /// Largest backlog seen, in bytes on the wire.
    pub backlog_bytes_max: u64,
}

#[derive(Clone, Debug)]
struct LinkState {
    /// Whether the link attaches a host (its class: the host link's configuration, else the
    /// fabric link's), kept here because every hop reads the state anyway.
    host_link: bool,
    up: bool,
    routed_up: bool,
    generation: u32,
    busy_until: [SimTime; 2],
    counters: [LinkCounters; 2],
}

/// A pending change routing will act on.
#[derive(Clone, Copy, Debug)]
struct Detection {
    element: Element,
    up: bool,
}

/// The simulated underlay: topology, element states, queues, routing.
#[derive(Debug)]
pub struct Fabric {
    topology: Topology,
    node_up: Vec<bool>,
    node_routed_up: Vec<bool>,
    links: Vec<LinkState>,
    routing: RoutingTable,
    ecmp_seeds: Vec<u64>,
    detections: BTreeMap<(SimTime, u64), Detection>,
    detection_seq: u64,
    events: VecDeque<FabricEvent>,
    /// Address blocks routed to hosts besides their own addresses: by (prefix length, first
    /// address), their hosts. Looked up on every hop of every frame to such an address, never
    /// iterated, so its order cannot reach results.
    #[allow(clippy::disallowed_types)]
    announced: std::collections::HashMap<(u8, u32), NodeId, rustc_hash::FxBuildHasher>,
    /// Blocks announced per prefix length (0 to 32).
    announced_per_len: [u32; 33],
    /// The prefix lengths with blocks, longest first: those a lookup tries.
    announced_lens: Vec<u8>,
    /// Counts changes of the announced blocks: a destination found before a change is found
    /// again.
    announce_epoch: u64,
}

/// A block is already announced by another host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("block {network}/{len} is announced by another host")]
pub struct OverlappingBlock {
    /// The block's address.
    pub network: Ipv4Addr,
    /// Its prefix length.
    pub len: u8,
}

impl Fabric {
    /// Builds the fabric with every element up and routing converged.
    pub fn new(config: &FabricConfig) -> Result<Fabric, TopologyError> {
        let topology = Topology::build(config)?;
        let nodes = topology.node_count();
        let ecmp_seeds = (0..nodes as u64)
            .map(|node| match config.ecmp_seeding {
                EcmpSeeding::PerSwitch => mix64(config.seed ^ hash_bytes(&node.to_le_bytes())),
                EcmpSeeding::Uniform => mix64(config.seed),
            })
            .collect();
        let links = (0..topology.link_count() as u32)
            .map(|link| LinkState {
                host_link: topology.kind(topology.link_ends(LinkId(link))[0].0) == NodeKind::Host,
                up: true,
                routed_up: true,
                generation: 0,
                busy_until: [SimTime::ZERO; 2],
                counters: [LinkCounters::default(); 2],
            })
            .collect();
        let mut fabric = Fabric {
            node_up: vec![true; nodes],
            node_routed_up: vec![true; nodes],
            links,
            routing: RoutingTable::default(),
            ecmp_seeds,
            detections: BTreeMap::new(),
            detection_seq: 0,
            events: VecDeque::new(),
            announced: Default::default(),
            announced_per_len: [0; 33],
            announced_lens: Vec::new(),
            announce_epoch: 0,
            topology,
        };
        fabric.recompute_routing();
        Ok(fabric)
    }

    /// The wiring and names.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The current routing table.
    pub fn routing(&self) -> &RoutingTable {
        &self.routing
    }

    /// Whether an element is physically up now.
    pub fn is_up(&self, element: Element) -> bool {
        match element {
            Element::Link(link) => self.links[link.0 as usize].up,
            Element::Node(node) => self.node_up[node.0 as usize],
        }
    }

    /// Counters of one direction of a link.
    pub fn link_counters(&self, link: LinkId, direction: u8) -> &LinkCounters {
        &self.links[link.0 as usize].counters[usize::from(direction)]
    }

    /// Routes the block `network/len` to `host`, as when a host peers with its leaf and
    /// announces its pod addresses (Calico without encapsulation). Switches learn it at once;
    /// the longest announced prefix wins. A block announced by another host is refused.
    pub fn announce(&mut self, host: NodeId, network: Ipv4Addr, len: u8) -> Result<(), OverlappingBlock> {
        debug_assert_eq!(self.topology.kind(host), NodeKind::Host);
        let len = len.min(32);
        let first = u32::from(network) & prefix_mask(len);
        match self.announced.entry((len, first)) {
            std::collections::hash_map::Entry::Occupied(owner) if *owner.get() != host => {
                Err(OverlappingBlock { network, len })
            }
            std::collections::hash_map::Entry::Occupied(_) => Ok(()),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(host);
                self.announce_epoch += 1;
                self.count_blocks(len, true);
                Ok(())
            }
        }
    }

    /// Stops routing the block `network/len` (announced with [`Fabric::announce`]).
    pub fn withdraw(&mut self, network: Ipv4Addr, len: u8) {
        let len = len.min(32);
        if self.announced.remove(&(len, u32::from(network) & prefix_mask(len))).is_some() {
            self.announce_epoch += 1;
            self.count_blocks(len, false);
        }
    }

    /// Keeps the count of blocks of length `len`, and the lengths to try, up to date.
    fn count_blocks(&mut self, len: u8, added: bool) {
        let count = &mut self.announced_per_len[usize::from(len)];
        *count = if added { *count + 1 } else { *count - 1 };
        if *count == u32::from(added) {
            // A length gained its first block or lost its last.
            self.announced_lens =
                (0..=32u8).rev().filter(|&l| self.announced_per_len[usize::from(l)] > 0).collect();
        }
    }

    /// The host an address belongs to: its own underlay address, or the longest announced
    /// block holding it.
    pub fn host_for(&self, address: Ipv4Addr) -> Option<NodeId> {
        self.topology.host_by_ip(address).or_else(|| {
            let address = u32::from(address);
            self.announced_lens
                .iter()
                .find_map(|&len| self.announced.get(&(len, address & prefix_mask(len))).copied())
        })
    }

    /// A host puts `frame` on the wire at `now`.
    pub fn send(&mut self, now: SimTime, host: NodeId, frame: Vec<u8>) -> Forward {
        debug_assert_eq!(self.topology.kind(host), NodeKind::Host);
        let mut transmit = Transmit::leaving(host, frame);
        let hop = if self.node_up[host.0 as usize] {
            self.route(now, host, &mut transmit, None)
        } else {
            Hop::Drop { reason: DropReason::NodeDown, node: host }
        };
        transmit.into_forward(hop)
    }

    /// `transmit` reaches the far end of its link at `now` (its `arrive_at`).
    pub fn arrive(&mut self, now: SimTime, mut transmit: Transmit) -> Forward {
        let hop = self.forward(now, &mut transmit);
        transmit.into_forward(hop)
    }

    /// `transmit` reaches the far end of its link at `now` (its `arrive_at`), as
    /// [`Fabric::arrive`], but in place: on [`Hop::Transmit`] the same `Transmit` now
    /// describes the frame on its next link; otherwise it holds the delivered or dropped frame.
    pub fn forward(&mut self, now: SimTime, transmit: &mut Transmit) -> Hop {
        debug_assert!(now >= transmit.arrive_at, "arrival handled before its time");
        let (link, to) = (transmit.link, transmit.to);
        let destination =
            transmit.destination.filter(|&(_, epoch)| epoch == self.announce_epoch).map(|(host, _)| host);
        let state = &self.links[link.0 as usize];
        // A failure of the link or either end since departure loses the frame.
        if !state.up || state.generation != transmit.generation {
            return Hop::Drop { reason: DropReason::LinkDown, node: to };
        }
        if !self.node_up[to.0 as usize] {
            return Hop::Drop { reason: DropReason::NodeDown, node: to };
        }
        if self.topology.kind(to) == NodeKind::Host {
            let destination =
                destination.or_else(|| ipv4_destination(&transmit.frame).and_then(|ip| self.host_for(ip)));
            return if destination == Some(to) {
                Hop::Deliver { host: to }
            } else {
                Hop::Drop { reason: DropReason::NotForHost, node: to }
            };
        }
        self.route(now, to, transmit, destination)
    }

    /// Routes the frame of `transmit` out of `node`: the forwarding decision of a host or a
    /// switch. `known` is the frame's destination host as the previous hop found it, if still
    /// valid.
    fn route(&mut self, now: SimTime, node: NodeId, transmit: &mut Transmit, known: Option<NodeId>) -> Hop {
        let frame = &mut transmit.frame;
        let destination = match known {
            Some(host) => host,
            None => {
                let Some(address) = ipv4_destination(frame) else {
                    return Hop::Drop { reason: DropReason::Malformed, node };
                };
                let Some(host) = self.host_for(address) else {
                    return Hop::Drop { reason: DropReason::NoRoute, node };
                };
                host
            }
        };
        if self.topology.kind(node) != NodeKind::Host && !decrement_ttl(frame) {
            return Hop::Drop { reason: DropReason::TtlExpired, node };
        }
        let next_hops = self.routing.next_hops(node, destination);
        let ecmp = match next_hops.len() {
            0 => {
                return Hop::Drop { reason: DropReason::NoRoute, node };
            }
            1 => EcmpChoice { members: 1, chosen: 0 },
            members => {
                // `ipv4_destination` succeeded, so the 5-tuple reads too.
                let hash = FiveTuple::from_ethernet(frame)
                    .map_or(0, |tuple| tuple.hash(self.ecmp_seeds[node.0 as usize]));
                // The remainder, without a division when the group is a power of two (most are).
                let chosen = if members.is_power_of_two() {
                    hash & (members as u64 - 1)
                } else {
                    hash % members as u64
                };
                EcmpChoice { members: members as u16, chosen: chosen as u16 }
            }
        };
        let port_index = next_hops[usize::from(ecmp.chosen)];
        self.enqueue(now, node, port_index, ecmp, transmit, destination)
    }

    /// Puts the frame of `transmit` in the egress queue of `node`'s port: tail drop, MTU
    /// check, exact timing; on success `transmit` describes the frame on that port's link.
    fn enqueue(
        &mut self,
        now: SimTime,
        node: NodeId,
        port_index: u16,
        ecmp: EcmpChoice,
        transmit: &mut Transmit,
        destination: NodeId,
    ) -> Hop {
        let port = self.topology.ports(node)[usize::from(port_index)];
        let state = &mut self.links[port.link.0 as usize];
        let fabric_config = self.topology.config();
        let config = if state.host_link { &fabric_config.host_link } else { &fabric_config.fabric_link };
        debug_assert_eq!(config, self.topology.link_config(port.link));
        let frame = &mut transmit.frame;
        let ip_len = frame.len().saturating_sub(ETHERNET_HEADER_LEN) as u64;
        if ip_len > u64::from(config.mtu_bytes) {
            return Hop::Drop { reason: DropReason::MtuExceeded, node };
        }
        if !state.up {
            return Hop::Drop { reason: DropReason::LinkDown, node };
        }
        let direction = usize::from(port.direction);
        let busy_until = state.busy_until[direction];
        let backlog_ns = busy_until.saturating_since(now).as_nanos();
        let backlog_bytes = mul_div(backlog_ns, config.bandwidth_bps, 8_000_000_000);
        let wire_bytes = frame.len() as u64 + WIRE_OVERHEAD_BYTES;
        let counters = &mut state.counters[direction];
        if backlog_bytes + wire_bytes > config.queue_bytes_max {
            counters.queue_drops += 1;
            return Hop::Drop { reason: DropReason::QueueFull, node };
        }
        counters.frames += 1;
        counters.bytes += frame.len() as u64;
        counters.backlog_bytes_max = counters.backlog_bytes_max.max(backlog_bytes + wire_bytes);
        let serialization_ns = mul_div_ceil(wire_bytes, 8_000_000_000, config.bandwidth_bps);
        let done = busy_until.max(now) + SimDuration::from_nanos(serialization_ns);
        state.busy_until[direction] = done;
        // Layer 2 of the next hop: our port's MAC as source, the peer port's as destination.
        if frame.len() >= 12 {
            let dst = self.topology.port_mac(port.peer, port.peer_port);
            let src = self.topology.port_mac(node, port_index);
            frame[0..6].copy_from_slice(&dst);
            frame[6..12].copy_from_slice(&src);
        }
        transmit.arrive_at = done + config.latency;
        transmit.link = port.link;
        transmit.direction = port.direction;
        transmit.from = node;
        transmit.to = port.peer;
        transmit.ecmp = ecmp;
        transmit.destination = Some((destination, self.announce_epoch));
        transmit.generation = state.generation;
        Hop::Transmit
    }

    /// `element` fails at `now`. Frames queued on or in flight over it are lost; routing
    /// reroutes around it after the detection delay.
    pub fn fail(&mut self, now: SimTime, element: Element) {
        self.set_physical(now, element, false);
    }

    /// `element` comes back at `now`; routing uses it again after the detection delay.
    pub fn recover(&mut self, now: SimTime, element: Element) {
        self.set_physical(now, element, true);
    }

    fn set_physical(&mut self, now: SimTime, element: Element, up: bool) {
        match element {
            Element::Link(link) => {
                let state = &mut self.links[link.0 as usize];
                if state.up == up {
                    return;
                }
                state.up = up;
                state.generation += 1;
                state.busy_until = [now; 2];
            }
            Element::Node(node) => {
                if self.node_up[node.0 as usize] == up {
                    return;
                }
                self.node_up[node.0 as usize] = up;
                // Whatever sat in the node's queues or was on its wires is gone.
                for port in self.topology.ports(node) {
                    let state = &mut self.links[port.link.0 as usize];
                    state.generation += 1;
                    state.busy_until = [now; 2];
                }
            }
        }
        let at = now + self.topology.config().detection_delay;
        self.detections.insert((at, self.detection_seq), Detection { element, up });
        self.detection_seq += 1;
    }

    /// When routing next needs [`Fabric::handle_timeout`], if ever.
    pub fn poll_timeout(&self) -> Option<SimTime> {
        self.detections.keys().next().map(|&(at, _)| at)
    }

    /// Acts on every detection due at or before `now`, then recomputes routing once.
    pub fn handle_timeout(&mut self, now: SimTime) {
        let mut changed = false;
        while let Some(entry) = self.detections.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let Detection { element, up } = entry.remove();
            match element {
                Element::Link(link) => self.links[link.0 as usize].routed_up = up,
                Element::Node(node) => self.node_routed_up[node.0 as usize] = up,
            }
            self.events.push_back(FabricEvent::RoutingUpdated { element, up });
            changed = true;
        }
        if changed {
            self.recompute_routing();
        }
    }

    /// The next notification, in the order they happened.
    pub fn poll_event(&mut self) -> Option<FabricEvent> {
        self.events.pop_front()
    }

    fn recompute_routing(&mut self) {
        let link_up: Vec<bool> = self.links.iter().map(|l| l.routed_up).collect();
        self.routing = RoutingTable::compute(&self.topology, &self.node_routed_up, &link_up);
    }
}

/// The destination address of an Ethernet II / IPv4 frame, read with etherparse's zero-copy
/// slices: `None` unless the Ethernet header is complete, the EtherType is IPv4 and the IPv4
/// header is well formed (version, header length, total length).
fn ipv4_destination(frame: &[u8]) -> Option<std::net::Ipv4Addr> {
    let ethernet = etherparse::Ethernet2HeaderSlice::from_slice(frame).ok()?;
    if ethernet.ether_type() != etherparse::EtherType::IPV4 {
        return None;
    }
    let ip = etherparse::Ipv4HeaderSlice::from_slice(&frame[ETHERNET_HEADER_LEN..]).ok()?;
    if usize::from(ip.total_len()) > frame.len() - ETHERNET_HEADER_LEN {
        return None;
    }
    Some(ip.destination_addr())
}

/// Decrements the IPv4 TTL of a frame, updating the header checksum (RFC 1624). `false` when
/// the TTL is exhausted (the frame must be dropped). The caller checked the header is present.
fn decrement_ttl(frame: &mut [u8]) -> bool {
    const TTL: usize = ETHERNET_HEADER_LEN + 8;
    const CHECKSUM: usize = ETHERNET_HEADER_LEN + 10;
    let ttl = frame[TTL];
    if ttl <= 1 {
        return false;
    }
    let protocol = frame[TTL + 1];
    let old_word = u16::from_be_bytes([ttl, protocol]);
    let new_word = u16::from_be_bytes([ttl - 1, protocol]);
    let old_checksum = u16::from_be_bytes([frame[CHECKSUM], frame[CHECKSUM + 1]]);
    let new_checksum = checksum::update(old_checksum, old_word, new_word);
    frame[TTL] = ttl - 1;
    frame[CHECKSUM..CHECKSUM + 2].copy_from_slice(&new_checksum.to_be_bytes());
    true
}

#[cfg(test)]
mod tests;

/// `a * b / divisor`, rounded down, exactly: in 64 bits when the product fits (every frame
/// and every realistic backlog), in 128 bits otherwise; a software 128-bit division on every
/// hop of every frame was a tenth of the fabric's cost.
fn mul_div(a: u64, b: u64, divisor: u64) -> u64 {
    match a.checked_mul(b) {
        Some(product) => product / divisor,
        None => (u128::from(a) * u128::from(b) / u128::from(divisor)) as u64,
    }
}

/// `a * b / divisor`, rounded up, exactly (see [`mul_div`]).
fn mul_div_ceil(a: u64, b: u64, divisor: u64) -> u64 {
    match a.checked_mul(b) {
        Some(product) => product.div_ceil(divisor),
        None => (u128::from(a) * u128::from(b)).div_ceil(u128::from(divisor)) as u64,
    }
}

/// The network mask of a prefix length (0 to 32).
fn prefix_mask(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}
