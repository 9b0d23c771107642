//! The shape of the underlay: which nodes exist, how they are wired, and what they are called.
//!
//! The default is the seeds' test bed: 100 hosts, each dual-homed to a pair of leaves with two
//! 10 Gb/s links, 20 leaves, 4 spines, every leaf connected to every spine.

use std::fmt;
use std::net::Ipv4Addr;

use netsim_core::SimDuration;
use petgraph::graph::{NodeIndex, UnGraph};

/// A node of the fabric: a host or a switch. Hosts come first, then leaves, then spines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u32);

/// An undirected link between two nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkId(pub u32);

/// What a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeKind {
    /// An end host: originates and receives traffic, never forwards.
    Host,
    /// A top-of-rack switch.
    Leaf,
    /// A spine switch.
    Spine,
}

/// Properties of one class of links.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkConfig {
    /// Line rate in bits per second.
    pub bandwidth_bps: u64,
    /// Propagation delay, one way.
    pub latency: SimDuration,
    /// Largest IP packet the link carries, in bytes (the Ethernet MTU).
    pub mtu_bytes: u32,
    /// Capacity of each direction's FIFO egress queue, in bytes on the wire; tail drop beyond.
    pub queue_bytes_max: u64,
}

/// How each switch seeds its ECMP hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EcmpSeeding {
    /// Each switch has its own seed, drawn from the scenario seed: choices at successive tiers
    /// are independent.
    #[default]
    PerSwitch,
    /// Every switch uses the same seed: successive tiers make correlated choices (hash
    /// polarization), as fabrics with identical default hash settings do.
    Uniform,
}

/// Everything needed to build a fabric.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FabricConfig {
    /// Number of hosts.
    pub hosts: u32,
    /// Number of leaf switches; a multiple of `uplinks_per_host`.
    pub leaves: u32,
    /// Number of spine switches.
    pub spines: u32,
    /// Links from each host to distinct leaves of its leaf group (2 = dual-homed).
    pub uplinks_per_host: u32,
    /// Host-to-leaf links.
    pub host_link: LinkConfig,
    /// Leaf-to-spine links.
    pub fabric_link: LinkConfig,
    /// Time from a failure or recovery until routing acts on it (BFD-like detection).
    pub detection_delay: SimDuration,
    /// How switches seed their ECMP hashes.
    pub ecmp_seeding: EcmpSeeding,
    /// Seed from which per-switch ECMP seeds are derived.
    pub seed: u64,
}

impl Default for FabricConfig {
    /// The seeds' test bed: 100 dual-homed hosts on 2x10 Gb/s, 20 leaves, 4 spines at 40 Gb/s.
    fn default() -> Self {
        FabricConfig {
            hosts: 100,
            leaves: 20,
            spines: 4,
            uplinks_per_host: 2,
            host_link: LinkConfig {
                bandwidth_bps: 10_000_000_000,
                latency: SimDuration::from_nanos(1_000),
                mtu_bytes: 1500,
                queue_bytes_max: 512 * 1024,
            },
            fabric_link: LinkConfig {
                bandwidth_bps: 40_000_000_000,
                latency: SimDuration::from_nanos(1_000),
                mtu_bytes: 1500,
                queue_bytes_max: 1024 * 1024,
            },
            detection_delay: SimDuration::from_millis(50),
            ecmp_seeding: EcmpSeeding::PerSwitch,
            seed: 0,
        }
    }
}

/// Why a configuration cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    /// A count that must be positive is zero.
    #[error("`{0}` must be at least 1")]
    Zero(&'static str),
    /// Leaves cannot be grouped evenly by the number of host uplinks.
    #[error("`leaves` ({leaves}) must be a multiple of `uplinks_per_host` ({uplinks})")]
    LeafGrouping {
        /// Configured leaves.
        leaves: u32,
        /// Configured uplinks per host.
        uplinks: u32,
    },
    /// A link class has zero bandwidth or a too-small MTU.
    #[error("`{0}`: bandwidth must be positive and the MTU at least 68 bytes (RFC 791)")]
    BadLink(&'static str),
    /// More nodes than addresses or identifiers allow.
    #[error("{0} nodes is more than the fabric supports (at most 1,000,000 hosts and 65,535 switches)")]
    TooLarge(u64),
}

/// Underlay address of host 0; host `i` has `UNDERLAY_BASE + 1 + i`.
pub const UNDERLAY_BASE: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 0);

/// One end of a link as seen from a node: the port, where it leads, and which direction of the
/// link a frame sent from it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Port {
    /// The link behind the port.
    pub link: LinkId,
    /// The node at the other end.
    pub peer: NodeId,
    /// Direction index (0 or 1) of the link for frames leaving through this port.
    pub direction: u8,
    /// The port's index at the peer, where frames sent from here arrive.
    pub peer_port: u16,
}

/// The wired fabric: nodes, links and ports, with the petgraph graph they were built from.
#[derive(Clone, Debug)]
pub struct Topology {
    config: FabricConfig,
    graph: UnGraph<NodeKind, LinkId>,
    /// Ports of each node, in the order links were created.
    ports: Vec<Vec<Port>>,
    /// Each link's two ends: (node, port index at that node).
    link_ends: Vec<[(NodeId, u16); 2]>,
}

impl Topology {
    /// Wires a leaf-spine fabric from its configuration.
    ///
    /// Leaves are grouped by `uplinks_per_host` (pairs when dual-homed); hosts are spread over
    /// the groups in blocks, host `i`'s uplink `k` going to the `k`-th leaf of its group.
    pub fn build(config: &FabricConfig) -> Result<Topology, TopologyError> {
        for (name, value) in [
            ("hosts", config.hosts),
            ("leaves", config.leaves),
            ("spines", config.spines),
            ("uplinks_per_host", config.uplinks_per_host),
        ] {
            if value == 0 {
                return Err(TopologyError::Zero(name));
            }
        }
        if !config.leaves.is_multiple_of(config.uplinks_per_host) {
            return Err(TopologyError::LeafGrouping {
                leaves: config.leaves,
                uplinks: config.uplinks_per_host,
            });
        }
        for (name, link) in [("host_link", &config.host_link), ("fabric_link", &config.fabric_link)] {
            if link.bandwidth_bps == 0 || link.mtu_bytes < 68 {
                return Err(TopologyError::BadLink(name));
            }
        }
        let switches = u64::from(config.leaves) + u64::from(config.spines);
        if config.hosts > 1_000_000 || switches > 65_535 {
            return Err(TopologyError::TooLarge(u64::from(config.hosts) + switches));
        }

        let total = (config.hosts + config.leaves + config.spines) as usize;
        let mut graph = UnGraph::with_capacity(total, total * 4);
        for _ in 0..config.hosts {
            graph.add_node(NodeKind::Host);
        }
        for _ in 0..config.leaves {
            graph.add_node(NodeKind::Leaf);
        }
        for _ in 0..config.spines {
            graph.add_node(NodeKind::Spine);
        }
        let mut topology =
            Topology { config: config.clone(), graph, ports: vec![Vec::new(); total], link_ends: Vec::new() };
        let groups = config.leaves / config.uplinks_per_host;
        let hosts_per_group = config.hosts.div_ceil(groups);
        for host in 0..config.hosts {
            let group = host / hosts_per_group;
            for uplink in 0..config.uplinks_per_host {
                let leaf = topology.leaf(group * config.uplinks_per_host + uplink);
                topology.connect(NodeId(host), leaf);
            }
        }
        for leaf in 0..config.leaves {
            for spine in 0..config.spines {
                topology.connect(topology.leaf(leaf), topology.spine(spine));
            }
        }
        Ok(topology)
    }

    fn connect(&mut self, a: NodeId, b: NodeId) {
        let link = LinkId(self.link_ends.len() as u32);
        self.graph.add_edge(NodeIndex::new(a.0 as usize), NodeIndex::new(b.0 as usize), link);
        let a_port = self.ports[a.0 as usize].len() as u16;
        let b_port = self.ports[b.0 as usize].len() as u16;
        self.ports[a.0 as usize].push(Port { link, peer: b, direction: 0, peer_port: b_port });
        self.ports[b.0 as usize].push(Port { link, peer: a, direction: 1, peer_port: a_port });
        self.link_ends.push([(a, a_port), (b, b_port)]);
    }

    /// The configuration the fabric was built from.
    pub fn config(&self) -> &FabricConfig {
        &self.config
    }

    /// The petgraph graph of the fabric (node weights are kinds, edge weights link ids), for
    /// analyses such as path counting.
    pub fn graph(&self) -> &UnGraph<NodeKind, LinkId> {
        &self.graph
    }

    /// Number of nodes of every kind.
    pub fn node_count(&self) -> usize {
        self.ports.len()
    }

    /// Number of links.
    pub fn link_count(&self) -> usize {
        self.link_ends.len()
    }

    /// Number of hosts.
    pub fn host_count(&self) -> u32 {
        self.config.hosts
    }

    /// The `index`-th leaf.
    pub fn leaf(&self, index: u32) -> NodeId {
        NodeId(self.config.hosts + index)
    }

    /// The `index`-th spine.
    pub fn spine(&self, index: u32) -> NodeId {
        NodeId(self.config.hosts + self.config.leaves + index)
    }

    /// What kind of node `node` is.
    pub fn kind(&self, node: NodeId) -> NodeKind {
        if node.0 < self.config.hosts {
            NodeKind::Host
        } else if node.0 < self.config.hosts + self.config.leaves {
            NodeKind::Leaf
        } else {
            NodeKind::Spine
        }
    }

    /// The ports of `node`.
    pub fn ports(&self, node: NodeId) -> &[Port] {
        &self.ports[node.0 as usize]
    }

    /// The two ends of `link`: (node, port index).
    pub fn link_ends(&self, link: LinkId) -> [(NodeId, u16); 2] {
        self.link_ends[link.0 as usize]
    }

    /// The properties of `link`, by its class.
    pub fn link_config(&self, link: LinkId) -> &LinkConfig {
        let [(a, _), _] = self.link_ends(link);
        if self.kind(a) == NodeKind::Host { &self.config.host_link } else { &self.config.fabric_link }
    }

    /// The underlay IPv4 address of a host.
    pub fn host_ip(&self, host: NodeId) -> Ipv4Addr {
        debug_assert_eq!(self.kind(host), NodeKind::Host);
        Ipv4Addr::from(u32::from(UNDERLAY_BASE) + 1 + host.0)
    }

    /// The host that owns an underlay address, if any.
    pub fn host_by_ip(&self, ip: Ipv4Addr) -> Option<NodeId> {
        let offset = u32::from(ip).checked_sub(u32::from(UNDERLAY_BASE) + 1)?;
        (offset < self.config.hosts).then_some(NodeId(offset))
    }

    /// The MAC address of a node's port: locally administered, unique in the fabric.
    pub fn port_mac(&self, node: NodeId, port: u16) -> [u8; 6] {
        let n = node.0.to_be_bytes();
        let p = port.to_be_bytes();
        [0x02, n[1], n[2], n[3], p[0], p[1]]
    }

    /// The name of a node: `host-7`, `leaf-3`, `spine-1`.
    pub fn node_name(&self, node: NodeId) -> NodeName {
        let (kind, index) = match self.kind(node) {
            NodeKind::Host => (NodeKind::Host, node.0),
            NodeKind::Leaf => (NodeKind::Leaf, node.0 - self.config.hosts),
            NodeKind::Spine => (NodeKind::Spine, node.0 - self.config.hosts - self.config.leaves),
        };
        NodeName { kind, index }
    }

    /// Finds a node by name (`host-7`, `leaf-3`, `spine-1`).
    pub fn node_by_name(&self, name: &str) -> Option<NodeId> {
        let (prefix, index) = name.rsplit_once('-')?;
        if index.starts_with('+') || (index.len() > 1 && index.starts_with('0')) {
            return None;
        }
        let index: u32 = index.parse().ok()?;
        let (limit, node) = match prefix {
            "host" => (self.config.hosts, NodeId(index)),
            "leaf" => (self.config.leaves, self.leaf(index)),
            "spine" => (self.config.spines, self.spine(index)),
            _ => return None,
        };
        (index < limit).then_some(node)
    }

    /// The name of a port: `host-7:uplink0` for host uplinks, `leaf-3:spine-1` (node, then the
    /// peer) for switch ports.
    pub fn port_name(&self, node: NodeId, port: u16) -> String {
        if self.kind(node) == NodeKind::Host {
            format!("{}:uplink{port}", self.node_name(node))
        } else {
            let peer = self.ports(node)[usize::from(port)].peer;
            format!("{}:{}", self.node_name(node), self.node_name(peer))
        }
    }

    /// Finds a port by name: `host-7:uplink0`, or `node:peer` for any two linked nodes
    /// (`leaf-3:spine-1`, `host-7:leaf-0`).
    pub fn port_by_name(&self, name: &str) -> Option<(NodeId, u16)> {
        let (node_name, port_name) = name.split_once(':')?;
        let node = self.node_by_name(node_name)?;
        if let Some(index) = port_name.strip_prefix("uplink") {
            if self.kind(node) != NodeKind::Host {
                return None;
            }
            let index: u16 = index.parse().ok()?;
            return (usize::from(index) < self.ports(node).len()).then_some((node, index));
        }
        let peer = self.node_by_name(port_name)?;
        let port = self.ports(node).iter().position(|p| p.peer == peer)?;
        Some((node, port as u16))
    }

    /// Two example port names (a host uplink, a leaf-spine port), for error messages.
    pub fn example_port_names(&self) -> Vec<String> {
        let mut names = vec![self.port_name(NodeId(0), 0)];
        let leaf = self.leaf(0);
        if let Some(spine_port) = self.ports(leaf).iter().position(|p| self.kind(p.peer) == NodeKind::Spine) {
            names.push(self.port_name(leaf, spine_port as u16));
        }
        names
    }
}

/// The printable name of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeName {
    kind: NodeKind,
    index: u32,
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = match self.kind {
            NodeKind::Host => "host",
            NodeKind::Leaf => "leaf",
            NodeKind::Spine => "spine",
        };
        write!(f, "{prefix}-{}", self.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_the_seeds_test_bed() {
        let topology = Topology::build(&FabricConfig::default()).expect("default config is valid");
        assert_eq!(topology.node_count(), 124);
        // 100 hosts x 2 uplinks + 20 leaves x 4 spines.
        assert_eq!(topology.link_count(), 280);
        for host in 0..100 {
            let ports = topology.ports(NodeId(host));
            assert_eq!(ports.len(), 2);
            // Dual-homed to the two leaves of one pair.
            let leaves: Vec<u32> = ports.iter().map(|p| p.peer.0 - 100).collect();
            assert_eq!(leaves[0] / 2, leaves[1] / 2, "host {host}");
            assert_ne!(leaves[0], leaves[1]);
        }
        // Each leaf: 10 hosts + 4 spines.
        assert_eq!(topology.ports(topology.leaf(0)).len(), 14);
        assert_eq!(topology.ports(topology.spine(3)).len(), 20);
    }

    #[test]
    fn names_round_trip() {
        let topology = Topology::build(&FabricConfig::default()).expect("valid");
        for name in ["host-0", "host-99", "leaf-19", "spine-3"] {
            let node = topology.node_by_name(name).expect(name);
            assert_eq!(topology.node_name(node).to_string(), name);
        }
        for name in ["host-100", "leaf-20", "spine-4", "router-1", "host-x", "host-07", "host"] {
            assert_eq!(topology.node_by_name(name), None, "{name}");
        }
        let (node, port) = topology.port_by_name("host-7:uplink1").expect("exists");
        assert_eq!(topology.port_name(node, port), "host-7:uplink1");
        let (node, port) = topology.port_by_name("leaf-3:spine-1").expect("exists");
        assert_eq!(topology.port_name(node, port), "leaf-3:spine-1");
        assert_eq!(topology.port_by_name("leaf-3:leaf-4"), None);
        assert_eq!(topology.port_by_name("host-7:uplink2"), None);
    }

    #[test]
    fn addresses_map_both_ways() {
        let topology = Topology::build(&FabricConfig::default()).expect("valid");
        assert_eq!(topology.host_ip(NodeId(0)), Ipv4Addr::new(172, 16, 0, 1));
        assert_eq!(topology.host_by_ip(Ipv4Addr::new(172, 16, 0, 100)), Some(NodeId(99)));
        assert_eq!(topology.host_by_ip(Ipv4Addr::new(172, 16, 0, 101)), None);
        assert_eq!(topology.host_by_ip(Ipv4Addr::new(172, 16, 0, 0)), None);
    }

    #[test]
    fn bad_configs_are_errors() {
        let mut config = FabricConfig { leaves: 3, ..FabricConfig::default() };
        assert!(matches!(Topology::build(&config), Err(TopologyError::LeafGrouping { .. })));
        config = FabricConfig { spines: 0, ..FabricConfig::default() };
        assert_eq!(Topology::build(&config).unwrap_err(), TopologyError::Zero("spines"));
    }
}
