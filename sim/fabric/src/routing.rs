//! Underlay routing: shortest paths to every host, with all equal-cost next hops kept (ECMP).
//!
//! Every link costs one hop. For each destination host a breadth-first search over the links and
//! nodes that routing believes up gives each node's distance; a node's next hops toward the host
//! are its up ports whose peer is one hop closer. Hosts never forward, so the search does not
//! pass through them. The result is stored compactly (one offset per node and destination into
//! a shared array of port indices) and rebuilt whenever routing learns of a change.

use std::collections::VecDeque;

use crate::topology::{NodeId, NodeKind, Topology};

/// Distance marking a node that cannot reach the destination.
const UNREACHABLE: u16 = u16::MAX;

/// Next-hop ports of every node toward every host.
#[derive(Clone, Debug, Default)]
pub struct RoutingTable {
    nodes: usize,
    /// `offsets[host * nodes + node] .. offsets[.. + 1]` indexes `ports`.
    offsets: Vec<u32>,
    ports: Vec<u16>,
}

impl RoutingTable {
    /// Computes the table over the elements `node_up` and `link_up` report as up.
    pub fn compute(topology: &Topology, node_up: &[bool], link_up: &[bool]) -> RoutingTable {
        let nodes = topology.node_count();
        let hosts = topology.host_count() as usize;
        let mut offsets = Vec::with_capacity(hosts * nodes + 1);
        let mut ports = Vec::new();
        let mut distance = vec![UNREACHABLE; nodes];
        let mut queue = VecDeque::with_capacity(nodes);
        offsets.push(0);
        for destination in 0..hosts {
            distance.fill(UNREACHABLE);
            if node_up[destination] {
                distance[destination] = 0;
                queue.push_back(destination);
            }
            while let Some(node) = queue.pop_front() {
                let next = distance[node] + 1;
                for port in topology.ports(NodeId(node as u32)) {
                    let peer = port.peer.0 as usize;
                    if link_up[port.link.0 as usize] && node_up[peer] && distance[peer] == UNREACHABLE {
                        distance[peer] = next;
                        // Hosts are leaves of the search: they never carry transit traffic.
                        if topology.kind(port.peer) != NodeKind::Host {
                            queue.push_back(peer);
                        }
                    }
                }
            }
            for node in 0..nodes {
                let own = distance[node];
                if own != UNREACHABLE && own > 0 {
                    for (index, port) in topology.ports(NodeId(node as u32)).iter().enumerate() {
                        let peer = port.peer.0 as usize;
                        let closer = distance[peer] == own - 1;
                        let transit = peer == destination || topology.kind(port.peer) != NodeKind::Host;
                        if closer && transit && link_up[port.link.0 as usize] && node_up[peer] {
                            ports.push(index as u16);
                        }
                    }
                }
                offsets.push(ports.len() as u32);
            }
        }
        RoutingTable { nodes, offsets, ports }
    }

    /// The equal-cost next-hop ports of `node` toward host `destination`, in port order; empty
    /// when there is no route.
    #[inline]
    pub fn next_hops(&self, node: NodeId, destination: NodeId) -> &[u16] {
        let slot = destination.0 as usize * self.nodes + node.0 as usize;
        let start = self.offsets[slot] as usize;
        let end = self.offsets[slot + 1] as usize;
        &self.ports[start..end]
    }

    /// Total next-hop entries held, a measure of forwarding state.
    pub fn entries(&self) -> usize {
        self.ports.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::FabricConfig;

    fn all_up(topology: &Topology) -> (Vec<bool>, Vec<bool>) {
        (vec![true; topology.node_count()], vec![true; topology.link_count()])
    }

    #[test]
    fn default_fabric_has_the_expected_ecmp_fan_out() {
        let topology = Topology::build(&FabricConfig::default()).expect("valid");
        let (nodes, links) = all_up(&topology);
        let table = RoutingTable::compute(&topology, &nodes, &links);
        let (src, far, near) = (NodeId(0), NodeId(99), NodeId(1));
        // A host reaches any other host over both uplinks.
        assert_eq!(table.next_hops(src, far).len(), 2);
        // A leaf reaches a host in another pair through all four spines...
        assert_eq!(table.next_hops(topology.leaf(0), far).len(), 4);
        // ...and a host of its own pair directly.
        assert_eq!(table.next_hops(topology.leaf(0), near).len(), 1);
        // A spine reaches a host through both leaves of its pair.
        assert_eq!(table.next_hops(topology.spine(0), far).len(), 2);
        // Hosts do not route through other hosts.
        assert!(table.next_hops(NodeId(1), NodeId(1)).is_empty());
    }

    #[test]
    fn failures_remove_next_hops() {
        let topology = Topology::build(&FabricConfig::default()).expect("valid");
        let (mut nodes, mut links) = all_up(&topology);
        // Fail spine 0 and host 99's first uplink.
        nodes[topology.spine(0).0 as usize] = false;
        let uplink = topology.ports(NodeId(99))[0].link;
        links[uplink.0 as usize] = false;
        let table = RoutingTable::compute(&topology, &nodes, &links);
        assert_eq!(table.next_hops(topology.leaf(0), NodeId(99)).len(), 3);
        assert_eq!(table.next_hops(NodeId(0), NodeId(99)).len(), 2);
        // The spine now reaches host 99 only through the leaf that still has its link.
        assert_eq!(table.next_hops(topology.spine(1), NodeId(99)).len(), 1);
        // The leaf that lost its link to host 99 goes up to the spines (or across, never through
        // another host).
        let orphan_leaf = topology.ports(NodeId(99))[0].peer;
        let hops = table.next_hops(orphan_leaf, NodeId(99));
        assert!(!hops.is_empty());
        for &port in hops {
            let peer = topology.ports(orphan_leaf)[usize::from(port)].peer;
            assert_eq!(topology.kind(peer), NodeKind::Spine);
        }
    }

    #[test]
    fn isolated_host_is_unreachable() {
        let topology = Topology::build(&FabricConfig::default()).expect("valid");
        let (mut nodes, links) = all_up(&topology);
        nodes[42] = false;
        let table = RoutingTable::compute(&topology, &nodes, &links);
        assert!(table.next_hops(NodeId(0), NodeId(42)).is_empty());
        assert!(table.next_hops(topology.spine(2), NodeId(42)).is_empty());
    }
}
