//! Calico-style policy: IP sets, one rule chain per policy and direction, and per endpoint the
//! ordered list of policies that apply to it — the vocabulary felix compiles Kubernetes
//! NetworkPolicy into, and the evaluator the Calico data plane runs on every new connection.
//!
//! As felix programs iptables: an endpoint that no policy selects in a direction is open; one
//! that some policy selects runs each policy's chain in order, the first rule that matches
//! decides (allow or deny), a policy whose rules all miss passes to the next, and when every
//! policy passes the packet is dropped. Peers that are pods are matched through IP sets
//! (membership is a binary search, like `ipset hash:ip`), not one rule per address; named
//! ports through sets of (address, protocol, port), like felix's named-port IP sets.
//!
//! A rule may also match where a connection was headed *before* destination NAT, as iptables'
//! `-m conntrack --ctorigdst ... --ctorigdstport ...` does: kube-proxy translates a ClusterIP
//! to a backend at the client's host, so only that host's chains can tell "called the service"
//! from "called the backend pod directly". [`PolicyStore::evaluate_original`] takes the
//! original destination; [`PolicyStore::evaluate`] judges an untranslated connection, whose
//! original destination is its destination.

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::acl::{FlowView, Verdict};

/// Protocols whose packets carry ports.
const PORTED_PROTOCOLS: [u8; 3] = [6, 17, 132];

/// An IP set's identity, as rules name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpSetId(pub u32);

/// A policy's identity, as endpoints list it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyId(pub u32);

/// One member of an IP set: an address, or (for named-port sets) an address with a protocol
/// and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SetMember {
    /// The address.
    pub address: Ipv4Addr,
    /// Protocol and port, for named-port sets.
    pub port: Option<(u8, u16)>,
}

impl SetMember {
    /// A plain address member.
    pub fn address(address: Ipv4Addr) -> SetMember {
        SetMember { address, port: None }
    }
}

/// How a rule matches one end of a packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddrMatch {
    /// Any address.
    Any,
    /// An address in the IP set.
    Set(IpSetId),
    /// The destination (address, protocol, port) is in the named-port set (destination only).
    NamedPorts(IpSetId),
    /// An address in `nets` and in none of `not_nets` (a NetworkPolicy ipBlock).
    Nets {
        /// Blocks that match.
        nets: Vec<Ipv4Net>,
        /// Holes in them.
        not_nets: Vec<Ipv4Net>,
    },
    /// The connection's original destination address — before destination NAT, iptables'
    /// `-m conntrack --ctorigdst` — is in the IP set (destination only; any port).
    OriginalSet(IpSetId),
    /// The original destination (address, protocol, port) — `--ctorigdst` with
    /// `--ctorigdstport` — is in the set (destination only).
    OriginalPorts(IpSetId),
}

impl fmt::Display for AddrMatch {
    /// As a trace shows it: `any`, `set #3`, `ctorigdst:port in set #5`, `10.0.0.0/8 except ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrMatch::Any => write!(f, "any"),
            AddrMatch::Set(id) => write!(f, "set #{}", id.0),
            AddrMatch::NamedPorts(id) => write!(f, "named-port set #{}", id.0),
            AddrMatch::Nets { nets, not_nets } => {
                let list =
                    |nets: &[Ipv4Net]| nets.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
                write!(f, "{}", list(nets))?;
                if !not_nets.is_empty() {
                    write!(f, " except {}", list(not_nets))?;
                }
                Ok(())
            }
            AddrMatch::OriginalSet(id) => write!(f, "ctorigdst in set #{}", id.0),
            AddrMatch::OriginalPorts(id) => write!(f, "ctorigdst:port in set #{}", id.0),
        }
    }
}

/// One rule of a policy chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// IP protocol number, or any.
    pub protocol: Option<u8>,
    /// The packet's source.
    pub src: AddrMatch,
    /// The packet's destination.
    pub dst: AddrMatch,
    /// Destination port ranges, inclusive; empty means any port.
    pub dst_ports: Vec<(u16, u16)>,
    /// What a match decides.
    pub action: Verdict,
}

impl fmt::Display for Rule {
    /// One line, iptables' order: `allow tcp from set #2 to any ports 80-81`; what matches
    /// anything is left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.action {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        })?;
        match self.protocol {
            None => {}
            Some(6) => f.write_str(" tcp")?,
            Some(17) => f.write_str(" udp")?,
            Some(132) => f.write_str(" sctp")?,
            Some(other) => write!(f, " protocol {other}")?,
        }
        if self.src != AddrMatch::Any {
            write!(f, " from {}", self.src)?;
        }
        if self.dst != AddrMatch::Any {
            write!(f, " to {}", self.dst)?;
        }
        if !self.dst_ports.is_empty() {
            let ports: Vec<String> = self
                .dst_ports
                .iter()
                .map(|&(low, high)| if low == high { low.to_string() } else { format!("{low}-{high}") })
                .collect();
            write!(f, " ports {}", ports.join(","))?;
        }
        if self.protocol.is_none()
            && self.src == AddrMatch::Any
            && self.dst == AddrMatch::Any
            && self.dst_ports.is_empty()
        {
            f.write_str(" everything")?;
        }
        Ok(())
    }
}

/// A policy compiled: its ingress and egress chains.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyChains {
    /// Rules for packets towards the endpoints it selects.
    pub ingress: Vec<Rule>,
    /// Rules for packets from them.
    pub egress: Vec<Rule>,
}

/// The policies of one endpoint, per direction, in order; `None` where none selects it (open).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointPolicy {
    /// Policies judging traffic towards the endpoint.
    pub ingress: Option<Vec<PolicyId>>,
    /// Policies judging traffic from it.
    pub egress: Option<Vec<PolicyId>>,
}

/// A direction of policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Towards the endpoint.
    Ingress,
    /// From the endpoint.
    Egress,
}

/// What decided a verdict, for traces: a rule, or the endpoint's default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decider {
    /// No policy selects the endpoint in this direction: open.
    Unselected,
    /// Rule `rule` of policy `policy` matched.
    Rule {
        /// The policy.
        policy: PolicyId,
        /// The rule's index in its chain.
        rule: usize,
    },
    /// Every policy passed: the endpoint's default drop.
    DefaultDeny,
}

/// The IP sets and policy chains a host has, indexed by id for constant-time lookup.
#[derive(Clone, Debug, Default)]
pub struct PolicyStore {
    sets: Vec<Option<Vec<SetMember>>>,
    policies: Vec<Option<PolicyChains>>,
}

impl PolicyStore {
    /// Sets (or replaces) an IP set's members.
    pub fn set_ipset(&mut self, id: IpSetId, mut members: Vec<SetMember>) {
        members.sort_unstable();
        members.dedup();
        let index = id.0 as usize;
        if self.sets.len() <= index {
            self.sets.resize(index + 1, None);
        }
        self.sets[index] = Some(members);
    }

    /// Removes an IP set (rules naming it then match nothing).
    pub fn remove_ipset(&mut self, id: IpSetId) {
        if let Some(slot) = self.sets.get_mut(id.0 as usize) {
            *slot = None;
        }
    }

    /// Sets (or replaces) a policy's chains.
    pub fn set_policy(&mut self, id: PolicyId, chains: PolicyChains) {
        let index = id.0 as usize;
        if self.policies.len() <= index {
            self.policies.resize(index + 1, None);
        }
        self.policies[index] = Some(chains);
    }

    /// Removes a policy (endpoints listing it then skip it).
    pub fn remove_policy(&mut self, id: PolicyId) {
        if let Some(slot) = self.policies.get_mut(id.0 as usize) {
            *slot = None;
        }
    }

    /// An IP set's members, sorted.
    pub fn ipset(&self, id: IpSetId) -> Option<&[SetMember]> {
        self.sets.get(id.0 as usize).and_then(Option::as_deref)
    }

    /// A policy's chains.
    pub fn policy(&self, id: PolicyId) -> Option<&PolicyChains> {
        self.policies.get(id.0 as usize).and_then(Option::as_ref)
    }

    /// Number of IP sets and of policies present.
    pub fn sizes(&self) -> (usize, usize) {
        (self.sets.iter().flatten().count(), self.policies.iter().flatten().count())
    }

    fn in_set(&self, id: IpSetId, member: SetMember) -> bool {
        self.ipset(id).is_some_and(|members| members.binary_search(&member).is_ok())
    }

    /// (protocol, port) of a flow whose protocol has ports.
    fn ported(protocol: u8, port: u16) -> Option<(u8, u16)> {
        PORTED_PROTOCOLS.contains(&protocol).then_some((protocol, port))
    }

    fn addr_matches(
        &self,
        matcher: &AddrMatch,
        address: Ipv4Addr,
        flow: &FlowView,
        original: (Ipv4Addr, u16),
    ) -> bool {
        match matcher {
            AddrMatch::Any => true,
            AddrMatch::Set(id) => self.in_set(*id, SetMember::address(address)),
            AddrMatch::NamedPorts(id) => Self::ported(flow.protocol, flow.dst_port)
                .is_some_and(|port| self.in_set(*id, SetMember { address, port: Some(port) })),
            AddrMatch::Nets { nets, not_nets } => {
                nets.iter().any(|n| n.contains(&address)) && !not_nets.iter().any(|n| n.contains(&address))
            }
            AddrMatch::OriginalSet(id) => self.in_set(*id, SetMember::address(original.0)),
            AddrMatch::OriginalPorts(id) => Self::ported(flow.protocol, original.1)
                .is_some_and(|port| self.in_set(*id, SetMember { address: original.0, port: Some(port) })),
        }
    }

    fn rule_matches(&self, rule: &Rule, flow: &FlowView, original: (Ipv4Addr, u16)) -> bool {
        rule.protocol.is_none_or(|p| p == flow.protocol)
            && (rule.dst_ports.is_empty()
                || (PORTED_PROTOCOLS.contains(&flow.protocol)
                    && rule.dst_ports.iter().any(|&(low, high)| (low..=high).contains(&flow.dst_port))))
            && self.addr_matches(&rule.src, flow.src, flow, original)
            && self.addr_matches(&rule.dst, flow.dst, flow, original)
    }

    /// Judges `flow` for an endpoint whose policies in `direction` are `policies`, as felix's
    /// chains would; also says what decided. The flow is taken as untranslated: its original
    /// destination is its destination.
    pub fn evaluate(
        &self,
        policies: Option<&[PolicyId]>,
        direction: Direction,
        flow: &FlowView,
    ) -> (Verdict, Decider) {
        self.evaluate_original(policies, direction, flow, (flow.dst, flow.dst_port))
    }

    /// Judges `flow` (as translated by destination NAT) whose connection was first addressed
    /// to `original` (address, port): the `OriginalSet`/`OriginalPorts` matches look at
    /// `original`, every other match at `flow`. Only the host that translated the connection
    /// knows its original destination.
    pub fn evaluate_original(
        &self,
        policies: Option<&[PolicyId]>,
        direction: Direction,
        flow: &FlowView,
        original: (Ipv4Addr, u16),
    ) -> (Verdict, Decider) {
        let Some(policies) = policies else { return (Verdict::Allow, Decider::Unselected) };
        for &policy in policies {
            let Some(chains) = self.policy(policy) else { continue };
            let chain = match direction {
                Direction::Ingress => &chains.ingress,
                Direction::Egress => &chains.egress,
            };
            if let Some(rule) = chain.iter().position(|rule| self.rule_matches(rule, flow, original)) {
                return (chain[rule].action, Decider::Rule { policy, rule });
            }
        }
        (Verdict::Deny, Decider::DefaultDeny)
    }

    /// The rule a [`Decider::Rule`] names, if the policy still has it.
    pub fn policy_rule(&self, policy: PolicyId, direction: Direction, rule: usize) -> Option<&Rule> {
        let chains = self.policy(policy)?;
        match direction {
            Direction::Ingress => chains.ingress.get(rule),
            Direction::Egress => chains.egress.get(rule),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(src: [u8; 4], dst: [u8; 4], protocol: u8, dst_port: u16) -> FlowView {
        FlowView {
            src: Ipv4Addr::from(src),
            src_vn: None,
            dst: Ipv4Addr::from(dst),
            dst_vn: None,
            protocol,
            dst_port,
        }
    }

    fn allow(src: AddrMatch, dst: AddrMatch, protocol: Option<u8>, dst_ports: Vec<(u16, u16)>) -> Rule {
        Rule { protocol, src, dst, dst_ports, action: Verdict::Allow }
    }

    #[test]
    fn unselected_endpoints_are_open_and_selected_ones_default_to_deny() {
        let store = PolicyStore::default();
        let f = flow([10, 0, 0, 1], [10, 0, 0, 2], 6, 80);
        assert_eq!(store.evaluate(None, Direction::Ingress, &f), (Verdict::Allow, Decider::Unselected));
        assert_eq!(store.evaluate(Some(&[]), Direction::Ingress, &f), (Verdict::Deny, Decider::DefaultDeny));
    }

    #[test]
    fn a_policy_that_misses_passes_to_the_next_and_sets_match_by_membership() {
        let mut store = PolicyStore::default();
        store.set_ipset(IpSetId(3), vec![SetMember::address([10, 0, 0, 9].into())]);
        store.set_ipset(IpSetId(4), vec![SetMember { address: [10, 0, 0, 2].into(), port: Some((6, 8080)) }]);
        store.set_policy(
            PolicyId(1),
            PolicyChains {
                ingress: vec![allow(AddrMatch::Set(IpSetId(3)), AddrMatch::Any, Some(6), vec![(80, 80)])],
                egress: Vec::new(),
            },
        );
        store.set_policy(
            PolicyId(2),
            PolicyChains {
                ingress: vec![
                    allow(
                        AddrMatch::Nets {
                            nets: vec!["10.0.0.0/24".parse().unwrap()],
                            not_nets: vec!["10.0.0.128/25".parse().unwrap()],
                        },
                        AddrMatch::NamedPorts(IpSetId(4)),
                        None,
                        Vec::new(),
                    ),
                    Rule {
                        protocol: None,
                        src: AddrMatch::Any,
                        dst: AddrMatch::Any,
                        dst_ports: Vec::new(),
                        action: Verdict::Deny,
                    },
                ],
                egress: Vec::new(),
            },
        );
        let list = [PolicyId(1), PolicyId(2)];
        let judge = |store: &PolicyStore, f: FlowView| store.evaluate(Some(&list), Direction::Ingress, &f);
        // In set 3, port 80: policy 1's rule.
        assert_eq!(
            judge(&store, flow([10, 0, 0, 9], [10, 0, 0, 2], 6, 80)),
            (Verdict::Allow, Decider::Rule { policy: PolicyId(1), rule: 0 })
        );
        // Policy 1 misses (port), policy 2's named port matches.
        assert_eq!(
            judge(&store, flow([10, 0, 0, 9], [10, 0, 0, 2], 6, 8080)),
            (Verdict::Allow, Decider::Rule { policy: PolicyId(2), rule: 0 })
        );
        // The named port is TCP only; the hole excludes .200; both fall to policy 2's deny.
        assert_eq!(judge(&store, flow([10, 0, 0, 9], [10, 0, 0, 2], 17, 8080)).0, Verdict::Deny);
        assert_eq!(
            judge(&store, flow([10, 0, 0, 200], [10, 0, 0, 2], 6, 8080)),
            (Verdict::Deny, Decider::Rule { policy: PolicyId(2), rule: 1 })
        );
        // A removed policy is skipped; a removed set matches nothing.
        store.remove_policy(PolicyId(2));
        store.remove_ipset(IpSetId(3));
        assert_eq!(
            judge(&store, flow([10, 0, 0, 9], [10, 0, 0, 2], 6, 80)),
            (Verdict::Deny, Decider::DefaultDeny)
        );
    }

    #[test]
    fn port_rules_never_match_portless_protocols() {
        let mut store = PolicyStore::default();
        store.set_policy(
            PolicyId(0),
            PolicyChains {
                ingress: vec![allow(AddrMatch::Any, AddrMatch::Any, None, vec![(0, u16::MAX)])],
                egress: Vec::new(),
            },
        );
        let icmp = flow([10, 0, 0, 1], [10, 0, 0, 2], 1, 0);
        assert_eq!(store.evaluate(Some(&[PolicyId(0)]), Direction::Ingress, &icmp).0, Verdict::Deny);
    }

    #[test]
    fn original_destination_matches_see_the_address_called_before_nat() {
        // The label model's egress chain: own collection by original address, any port; a
        // used service's (ClusterIP, protocol, port) by original destination.
        let (vip, backend, peer) = ([10, 96, 0, 2], [10, 0, 0, 70], [10, 0, 0, 9]);
        let mut store = PolicyStore::default();
        store
            .set_ipset(IpSetId(0), vec![SetMember::address(peer.into()), SetMember::address(backend.into())]);
        store.set_ipset(IpSetId(1), vec![SetMember { address: vip.into(), port: Some((6, 3000)) }]);
        let chain = vec![
            allow(AddrMatch::Any, AddrMatch::OriginalSet(IpSetId(0)), None, Vec::new()),
            allow(AddrMatch::Any, AddrMatch::OriginalPorts(IpSetId(1)), None, Vec::new()),
        ];
        store.set_policy(PolicyId(0), PolicyChains { ingress: Vec::new(), egress: chain });
        let list = [PolicyId(0)];
        let judge = |store: &PolicyStore, f: FlowView, original: [u8; 4], port: u16| {
            store.evaluate_original(Some(&list), Direction::Egress, &f, (original.into(), port))
        };
        let rule = |rule| (Verdict::Allow, Decider::Rule { policy: PolicyId(0), rule });
        let to_backend = flow([10, 0, 0, 1], backend, 6, 8080);
        // Called through the ClusterIP on the service's port: the service rule, though the
        // translated destination is a backend in the collection's set too.
        assert_eq!(judge(&store, to_backend, vip, 3000), rule(1));
        // The ClusterIP on another port, or over UDP: nothing matches.
        assert_eq!(judge(&store, to_backend, vip, 3001), (Verdict::Deny, Decider::DefaultDeny));
        assert_eq!(judge(&store, flow([10, 0, 0, 1], backend, 17, 8080), vip, 3000).0, Verdict::Deny);
        // Called directly: the original destination is the destination.
        assert_eq!(
            store.evaluate(Some(&list), Direction::Egress, &flow([10, 0, 0, 1], peer, 17, 53)),
            rule(0)
        );
        assert_eq!(
            store.evaluate(Some(&list), Direction::Egress, &flow([10, 0, 0, 1], [10, 0, 0, 99], 6, 3000)).0,
            Verdict::Deny
        );
        // A pod of the service's backends, called by its own address on the service's port, is
        // not the service.
        store.set_ipset(IpSetId(0), vec![SetMember::address(peer.into())]);
        assert_eq!(judge(&store, to_backend, backend, 8080).0, Verdict::Deny);
        assert_eq!(
            store.policy_rule(PolicyId(0), Direction::Egress, 1).map(ToString::to_string).as_deref(),
            Some("allow to ctorigdst:port in set #1")
        );
        assert_eq!(store.policy_rule(PolicyId(0), Direction::Ingress, 0), None);
    }

    #[test]
    fn rules_read_like_iptables_lines() {
        let cases = [
            (allow(AddrMatch::Any, AddrMatch::Any, None, Vec::new()), "allow everything"),
            (
                allow(AddrMatch::Set(IpSetId(2)), AddrMatch::Any, Some(6), vec![(80, 81)]),
                "allow tcp from set #2 ports 80-81",
            ),
            (
                allow(
                    AddrMatch::Nets {
                        nets: vec!["10.0.0.0/8".parse().unwrap()],
                        not_nets: vec!["10.1.0.0/16".parse().unwrap()],
                    },
                    AddrMatch::NamedPorts(IpSetId(4)),
                    Some(17),
                    vec![(53, 53), (5353, 5353)],
                ),
                "allow udp from 10.0.0.0/8 except 10.1.0.0/16 to named-port set #4 ports 53,5353",
            ),
            (
                Rule {
                    action: Verdict::Deny,
                    ..allow(AddrMatch::Any, AddrMatch::OriginalSet(IpSetId(0)), Some(1), Vec::new())
                },
                "deny protocol 1 to ctorigdst in set #0",
            ),
        ];
        for (rule, text) in cases {
            assert_eq!(rule.to_string(), text);
        }
    }
}
