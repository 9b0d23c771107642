//! Access control lists: the policy vocabulary shared by the control plane, which compiles
//! policies into them, and the data planes, which evaluate them at flow setup. The first rule
//! that matches decides.
//!
//! Rules match the source and destination by virtual network (as OpenContrail's network
//! policies between VNs do) or by address prefix with holes (as security groups compiled from
//! NetworkPolicy do), plus protocol and destination port range. A VRF carries the policy of its
//! virtual network; an interface may carry ingress and egress lists of its own.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// A virtual network's identity, as routes and ACL rules name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct VnId(pub u32);

/// What an ACL decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Verdict {
    /// Let the flow through.
    Allow,
    /// Drop it (reason `policy`).
    Deny,
}

/// How a rule matches one end of a flow.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Match {
    /// Anything.
    Any,
    /// Addresses of this virtual network.
    Vn(VnId),
    /// Addresses in `net` but in none of `except`.
    Prefix {
        /// The block.
        net: Ipv4Net,
        /// Holes in it.
        except: Vec<Ipv4Net>,
    },
}

impl Match {
    fn matches(&self, vn: Option<VnId>, address: Ipv4Addr) -> bool {
        match self {
            Match::Any => true,
            Match::Vn(id) => vn == Some(*id),
            Match::Prefix { net, except } => {
                net.contains(&address) && !except.iter().any(|e| e.contains(&address))
            }
        }
    }
}

/// One rule.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AclRule {
    /// The flow's source.
    pub src: Match,
    /// The flow's destination.
    pub dst: Match,
    /// IP protocol number, or any.
    pub protocol: Option<u8>,
    /// Destination ports, inclusive (ignored for protocols without ports).
    pub dst_ports: (u16, u16),
    /// What a match decides.
    pub verdict: Verdict,
}

impl AclRule {
    /// A rule allowing everything from `src` to `dst`.
    pub fn allow(src: Match, dst: Match) -> AclRule {
        AclRule { src, dst, protocol: None, dst_ports: (0, u16::MAX), verdict: Verdict::Allow }
    }
}

/// An ordered list of rules and what happens when none matches.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Acl {
    /// The rules, in order.
    pub rules: Vec<AclRule>,
    /// The verdict when no rule matches.
    pub default: Verdict,
}

impl Acl {
    /// An ACL that allows everything.
    pub fn allow_all() -> Acl {
        Acl { rules: Vec::new(), default: Verdict::Allow }
    }

    /// Judges a flow; also returns the index of the deciding rule (`None`: the default).
    pub fn evaluate(&self, flow: &FlowView) -> (Verdict, Option<usize>) {
        for (index, rule) in self.rules.iter().enumerate() {
            let protocol_ok = rule.protocol.is_none_or(|p| p == flow.protocol);
            let has_ports = matches!(flow.protocol, 6 | 17 | 132);
            let ports_ok = !has_ports || (rule.dst_ports.0..=rule.dst_ports.1).contains(&flow.dst_port);
            if protocol_ok
                && ports_ok
                && rule.src.matches(flow.src_vn, flow.src)
                && rule.dst.matches(flow.dst_vn, flow.dst)
            {
                return (rule.verdict, Some(index));
            }
        }
        (self.default, None)
    }
}

/// A flow as an ACL sees it.
#[derive(Clone, Copy, Debug)]
pub struct FlowView {
    /// Source address.
    pub src: Ipv4Addr,
    /// Virtual network of the source, if known.
    pub src_vn: Option<VnId>,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Virtual network of the destination (of the route that reaches it), if known.
    pub dst_vn: Option<VnId>,
    /// IP protocol number.
    pub protocol: u8,
    /// Destination port (0 for protocols without ports).
    pub dst_port: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(dst_vn: u32, protocol: u8, dst_port: u16) -> FlowView {
        FlowView {
            src: "10.0.0.5".parse().unwrap(),
            src_vn: Some(VnId(1)),
            dst: "10.96.0.2".parse().unwrap(),
            dst_vn: Some(VnId(dst_vn)),
            protocol,
            dst_port,
        }
    }

    #[test]
    fn first_match_decides_and_default_applies_last() {
        let acl = Acl {
            rules: vec![
                AclRule::allow(Match::Vn(VnId(1)), Match::Vn(VnId(1))),
                AclRule {
                    src: Match::Vn(VnId(1)),
                    dst: Match::Vn(VnId(2)),
                    protocol: Some(6),
                    dst_ports: (3000, 3000),
                    verdict: Verdict::Allow,
                },
                AclRule {
                    src: Match::Any,
                    dst: Match::Prefix {
                        net: "10.96.0.0/12".parse().unwrap(),
                        except: vec!["10.96.0.2/32".parse().unwrap()],
                    },
                    protocol: None,
                    dst_ports: (0, u16::MAX),
                    verdict: Verdict::Allow,
                },
            ],
            default: Verdict::Deny,
        };
        assert_eq!(acl.evaluate(&flow(1, 17, 53)), (Verdict::Allow, Some(0)));
        assert_eq!(acl.evaluate(&flow(2, 6, 3000)), (Verdict::Allow, Some(1)));
        assert_eq!(
            acl.evaluate(&flow(2, 6, 3001)),
            (Verdict::Deny, None),
            "the except hole excludes 10.96.0.2"
        );
        assert_eq!(acl.evaluate(&flow(2, 17, 3000)), (Verdict::Deny, None));
        // ICMP has no ports: the port range does not apply.
        let icmp = Acl {
            rules: vec![AclRule { dst_ports: (80, 80), ..AclRule::allow(Match::Any, Match::Any) }],
            default: Verdict::Deny,
        };
        assert_eq!(icmp.evaluate(&flow(2, 1, 0)).0, Verdict::Allow);
    }
}
