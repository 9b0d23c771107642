//! Next hops, and the ECMP member choice of composite next hops.
//!
//! ECMP uses rendezvous (highest-random-weight) hashing: each member gets a score, a fixed hash
//! of the flow's inner 5-tuple and the member's identity (its host and label), and the flow
//! takes the member with the highest score. Hence:
//! - the same 5-tuple takes the same member while the member set is unchanged;
//! - when a member is removed, only the flows that used it move (each to its runner-up);
//! - when a member is added, only the flows for which it now scores highest move to it — about
//!   1/(n+1) of them, the minimum for an even spread.
//!
//! The choice depends on the set of members, not their order, and needs no state to be kept in
//! step across control-plane updates. It costs one hash per member, paid at flow setup only:
//! later packets of the flow hit the flow table.

use std::net::Ipv4Addr;

use netsim_core::{FiveTuple, mix64};

use crate::InterfaceId;

/// Where a route sends packets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NextHop {
    /// A pod interface on this host.
    Interface(InterfaceId),
    /// A tunnel to another host (or to this one: then the packet is handled as if it had
    /// arrived with that label, without leaving the host).
    Tunnel(Tunnel),
    /// Equal-cost members (interfaces or tunnels), chosen per flow.
    Composite(Vec<NextHop>),
    /// Drop.
    Discard,
    /// The host itself (its own address in the overlay, e.g. a gateway or metadata service):
    /// handed to the host's stack.
    Receive,
}

/// An overlay tunnel endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tunnel {
    /// The remote host's underlay address.
    pub host: Ipv4Addr,
    /// The MPLS label of the remote interface (in the route's VRF).
    pub label: u32,
    /// The VNI of the route's virtual network, for VXLAN.
    pub vni: u32,
}

impl NextHop {
    /// A stable identity for ECMP scoring.
    fn key(&self) -> u64 {
        match self {
            NextHop::Interface(id) => 0x1_0000_0000 | u64::from(id.0),
            NextHop::Tunnel(t) => (u64::from(u32::from(t.host)) << 32) | u64::from(t.label),
            NextHop::Composite(_) | NextHop::Discard | NextHop::Receive => 0,
        }
    }
}

/// The member a flow with `tuple` takes among `members` (rendezvous hashing); `None` if there
/// are none.
pub fn select<'a>(members: &'a [NextHop], tuple: &FiveTuple) -> Option<&'a NextHop> {
    let flow = tuple.hash(0x0ec3_9a5c_5eed);
    members.iter().max_by_key(|member| (mix64(flow ^ mix64(member.key())), std::cmp::Reverse(member.key())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tunnel(host: u8, label: u32) -> NextHop {
        NextHop::Tunnel(Tunnel { host: Ipv4Addr::new(172, 16, 0, host), label, vni: 0 })
    }

    fn tuple(port: u16) -> FiveTuple {
        FiveTuple {
            src: Ipv4Addr::new(10, 0, 0, 9),
            dst: Ipv4Addr::new(10, 96, 0, 2),
            protocol: 6,
            src_port: port,
            dst_port: 3000,
        }
    }

    #[test]
    fn spreads_evenly() {
        let members: Vec<NextHop> = (1..=4).map(|h| tunnel(h, 16 + u32::from(h))).collect();
        let mut counts = [0u32; 4];
        for port in 0..8000 {
            let chosen = select(&members, &tuple(port)).unwrap();
            counts[members.iter().position(|m| m == chosen).unwrap()] += 1;
        }
        assert!(counts.iter().all(|&c| (1800..2200).contains(&c)), "{counts:?}");
    }

    proptest! {
        /// Removing a member moves exactly the flows that used it; the order of members never
        /// matters.
        #[test]
        fn removal_moves_only_the_removed_members_flows(members in 2usize..8, removed in 0usize..8, ports in prop::collection::vec(any::<u16>(), 1..200)) {
            let all: Vec<NextHop> = (0..members).map(|i| tunnel(i as u8 + 1, 100 + i as u32)).collect();
            let removed = removed % members;
            let rest: Vec<NextHop> = all.iter().enumerate().filter(|(i, _)| *i != removed).map(|(_, m)| m.clone()).collect();
            let mut reversed = all.clone();
            reversed.reverse();
            for port in ports {
                let before = select(&all, &tuple(port)).unwrap();
                prop_assert_eq!(select(&reversed, &tuple(port)).unwrap(), before);
                let after = select(&rest, &tuple(port)).unwrap();
                if before != &all[removed] {
                    prop_assert_eq!(after, before);
                }
            }
        }
    }
}
