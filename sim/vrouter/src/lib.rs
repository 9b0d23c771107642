//! `netsim-vrouter`: per-host forwarding planes, as sans-IO libraries.
//!
//! A data plane takes frames and the current time and returns, for each frame, exactly one
//! [`Forward`]: out to the fabric, out to a local pod interface, or dropped with a
//! [`DropReason`]. It never reads a clock, spawns a thread or touches a file, so it could run
//! behind a real interface unchanged; the simulator drives it through the [`DataPlane`] trait.
//!
//! - [`overlay`]: the OpenContrail-style vrouter — a VRF per virtual network, MPLS over UDP
//!   (or MPLS over GRE, or VXLAN) between hosts, ECMP over a service's backends, flow pairs with
//!   destination NAT for floating IPs, ACL policy at flow setup.
//! - [`wire`]: MPLS, VXLAN and GRE headers; [`lpm`]: longest-prefix-match tables;
//!   [`nexthop`]: next hops and ECMP by rendezvous hashing; [`acl`]: access control lists;
//!   [`flow`]: the bounded, aging flow table; [`nat`]: address and port rewriting;
//!   [`testbed`]: a hand-programmed two-host pair for tests and benchmarks.
//! - [`calico`]: the Calico host — an IPv4 router for its pods (/32 routes, BGP-learnt blocks,
//!   ECMP), felix's policy chains with connection tracking, kube-proxy's NAT at the client,
//!   optional IP-in-IP or VXLAN.
//!
//! Both sit behind the same trait, so the simulator drives either unchanged.

pub use netsim_core::acl;
pub mod calico;
pub mod flow;
mod ipv4;
pub mod lpm;
pub mod nat;
pub mod nexthop;
pub mod overlay;
#[cfg(test)]
mod test_support;
pub mod testbed;
pub mod wire;

use std::fmt;

use netsim_core::SimTime;

/// A pod interface of a vrouter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InterfaceId(pub u32);

/// A VRF (routing instance) of a vrouter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VrfId(pub u32);

/// Where a frame enters or leaves a data plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// A local pod's interface.
    Interface(InterfaceId),
    /// The host's uplink to the fabric.
    Fabric,
}

/// The fate of one frame handed to a data plane.
#[derive(Debug)]
pub enum Forward {
    /// Send on the host's uplink.
    Fabric(Vec<u8>),
    /// Deliver to a local pod.
    Interface(InterfaceId, Vec<u8>),
    /// Deliver to the host's own stack (a receive next hop).
    Host(Vec<u8>),
    /// Dropped.
    Drop {
        /// Why.
        reason: DropReason,
        /// The frame, for accounting and reuse.
        frame: Vec<u8>,
    },
}

/// Why a data plane dropped a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// Not Ethernet II carrying IPv4 (or its encapsulation), or too short for its headers.
    Malformed,
    /// An IPv4 header checksum does not verify.
    BadChecksum,
    /// The frame came from an interface the vrouter does not have.
    UnknownInterface,
    /// A pod sent a packet whose source is not its own address.
    SourceMismatch,
    /// A tunnelled packet addressed to another host.
    NotForHost,
    /// An outer packet that is not one of the configured encapsulations.
    UnknownEncapsulation,
    /// An MPLS label the vrouter did not hand out.
    UnknownLabel,
    /// A VXLAN VNI the vrouter does not know.
    UnknownVni,
    /// The VRF has no route to the destination.
    NoRoute,
    /// The route's next hop discards.
    Discard,
    /// A policy (ACL) denies the flow.
    Policy,
    /// No NAT mapping for the destination port of a floating IP.
    NatNoMapping,
    /// The flow table is full: new flows are refused.
    FlowTableFull,
    /// The TTL ran out.
    TtlExpired,
    /// After encapsulation the packet exceeds the underlay MTU (the vrouter does not fragment).
    MtuExceeded,
}

impl DropReason {
    /// The reason's name in results and traces.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::UnknownInterface => "unknown_interface",
            DropReason::SourceMismatch => "source_mismatch",
            DropReason::NotForHost => "not_for_host",
            DropReason::UnknownEncapsulation => "unknown_encapsulation",
            DropReason::UnknownLabel => "unknown_label",
            DropReason::UnknownVni => "unknown_vni",
            DropReason::NoRoute => "no_route",
            DropReason::Discard => "discard",
            DropReason::Policy => "policy",
            DropReason::NatNoMapping => "nat_no_mapping",
            DropReason::FlowTableFull => "flow_table_full",
            DropReason::TtlExpired => "ttl_expired",
            DropReason::MtuExceeded => "mtu_exceeded",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the simulator needs from any data plane: frames in, fates out, and timers.
pub trait DataPlane {
    /// Handles one frame arriving on `port` at `now`; returns its fate.
    fn handle_packet(&mut self, now: SimTime, port: Port, frame: Vec<u8>) -> Forward;
    /// Performs the work due at `now` (flow aging).
    fn handle_timeout(&mut self, now: SimTime);
    /// When [`DataPlane::handle_timeout`] is next needed, if ever.
    fn poll_timeout(&self) -> Option<SimTime>;
    /// What [`DataPlane::handle_packet`] would do with `frame` on `port` at `now`, one step a
    /// line — decapsulation, flow or connection state, route, NAT, policy, encapsulation — and
    /// last its fate (`drop: REASON` for a drop), without changing any state (`netsim trace`).
    fn explain(&self, now: SimTime, port: Port, frame: &[u8]) -> Vec<String>;
}

/// Where the forwarding path's judgement writes down what it decided, when asked to
/// ([`DataPlane::explain`]); `None` on the forwarding path itself, which then pays one branch.
pub(crate) type Notes<'a> = Option<&'a mut Vec<String>>;

/// Writes a note, if notes are taken.
pub(crate) fn note(notes: &mut Notes<'_>, text: impl FnOnce() -> String) {
    if let Some(notes) = notes {
        notes.push(text());
    }
}
