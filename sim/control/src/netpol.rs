//! A reference evaluator of Kubernetes NetworkPolicy, written from the Kubernetes documentation
//! ("Network Policies", and the `networking.k8s.io/v1` API reference), independent of both data
//! planes. It is the oracle that `netsim reach`, the isolation check and the data planes' tests
//! are judged against, so it favours being obviously right over being fast.
//!
//! The rules, as the documentation states them:
//!
//! - A pod is *isolated for ingress* if some NetworkPolicy in its namespace selects it
//!   (`podSelector`) and lists `Ingress` in its (defaulted) `policyTypes`; likewise for egress.
//!   A pod that is not isolated in a direction allows everything in that direction.
//! - Policies are additive: an isolated pod allows a connection if *any* rule of *any* policy
//!   selecting it allows it. There are no deny rules.
//! - A connection from A to B is allowed only if A's egress allows it *and* B's ingress allows
//!   it. Replies of an allowed connection are always allowed (the data planes' connection
//!   tracking); this evaluator judges connection initiations.
//! - A rule allows a connection if one of its `ports` matches (no `ports`: every port) and one
//!   of its peers matches (no `from`/`to`: every peer).
//! - A peer with only `podSelector` selects pods in the *policy's* namespace; with only
//!   `namespaceSelector`, every pod of the matching namespaces; with both, the matching pods of
//!   the matching namespaces. An empty selector `{}` matches everything.
//! - `ipBlock` matches addresses in `cidr` and in none of `except`. It is matched against the
//!   peer's IP address whether the peer is a pod or not (as the upstream conformance tests
//!   exercise it with pod IPs).
//! - A port entry matches the protocol (default TCP) and: no port (every port), a number (or the
//!   range `port..=endPort`), or a name, which resolves against the *destination pod's*
//!   container ports (so a named port never matches traffic to a non-pod address).

use std::net::Ipv4Addr;

use crate::k8s::{ContainerPort, Labels, NetworkPolicy, Peer, PolicyPort, PolicyRule, Protocol, TargetPort};

/// One end of a connection, as policy sees it.
#[derive(Clone, Copy, Debug)]
pub enum Endpoint<'a> {
    /// A pod of the cluster.
    Pod(PodView<'a>),
    /// An address outside the cluster's pods.
    External(Ipv4Addr),
}

/// What policy needs to know about a pod.
#[derive(Clone, Copy, Debug)]
pub struct PodView<'a> {
    /// Its namespace.
    pub namespace: &'a str,
    /// Its namespace's labels.
    pub namespace_labels: &'a Labels,
    /// Its labels.
    pub labels: &'a Labels,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its declared container ports (for named ports).
    pub ports: &'a [ContainerPort],
}

impl Endpoint<'_> {
    fn ip(&self) -> Ipv4Addr {
        match self {
            Endpoint::Pod(pod) => pod.ip,
            Endpoint::External(ip) => *ip,
        }
    }
}

/// How one direction (egress of the source, ingress of the destination) judged a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No policy isolates the pod in this direction (or the end is not a pod).
    NotIsolated,
    /// Isolated, and this policy (namespace/name) has a rule allowing it.
    AllowedBy(String),
    /// Isolated by these policies, none of which allows it.
    Denied(Vec<String>),
}

impl Decision {
    /// Whether this direction lets the connection through.
    pub fn allows(&self) -> bool {
        !matches!(self, Decision::Denied(_))
    }
}

/// The verdict on one connection, with both directions' reasons.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The source pod's egress.
    pub egress: Decision,
    /// The destination pod's ingress.
    pub ingress: Decision,
}

impl Verdict {
    /// Whether the connection is allowed.
    pub fn allowed(&self) -> bool {
        self.egress.allows() && self.ingress.allows()
    }
}

/// Judges a connection from `source` to `destination` on `port`/`protocol` under `policies`.
pub fn evaluate(
    policies: &[NetworkPolicy],
    source: &Endpoint<'_>,
    destination: &Endpoint<'_>,
    port: u16,
    protocol: Protocol,
) -> Verdict {
    let egress = match source {
        Endpoint::Pod(pod) => {
            direction(policies, pod, Direction::Egress, destination, destination, port, protocol)
        }
        Endpoint::External(_) => Decision::NotIsolated,
    };
    let ingress = match destination {
        Endpoint::Pod(pod) => {
            direction(policies, pod, Direction::Ingress, source, destination, port, protocol)
        }
        Endpoint::External(_) => Decision::NotIsolated,
    };
    Verdict { egress, ingress }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

/// The decision of `pod`'s policies in `direction` about traffic with `peer`, where
/// `destination` is the connection's destination (named ports resolve against it).
fn direction(
    policies: &[NetworkPolicy],
    pod: &PodView<'_>,
    direction: Direction,
    peer: &Endpoint<'_>,
    destination: &Endpoint<'_>,
    port: u16,
    protocol: Protocol,
) -> Decision {
    let mut isolating = Vec::new();
    for policy in policies {
        let applies = match direction {
            Direction::Ingress => policy.ingress_isolation,
            Direction::Egress => policy.egress_isolation,
        };
        if !applies || policy.namespace != pod.namespace || !policy.pod_selector.matches(pod.labels) {
            continue;
        }
        let name = format!("{}/{}", policy.namespace, policy.name);
        let rules = match direction {
            Direction::Ingress => &policy.ingress,
            Direction::Egress => &policy.egress,
        };
        if rules.iter().any(|rule| rule_allows(rule, &policy.namespace, peer, destination, port, protocol)) {
            return Decision::AllowedBy(name);
        }
        isolating.push(name);
    }
    if isolating.is_empty() { Decision::NotIsolated } else { Decision::Denied(isolating) }
}

fn rule_allows(
    rule: &PolicyRule,
    policy_namespace: &str,
    peer: &Endpoint<'_>,
    destination: &Endpoint<'_>,
    port: u16,
    protocol: Protocol,
) -> bool {
    let port_matches =
        rule.ports.is_empty() || rule.ports.iter().any(|p| port_allows(p, destination, port, protocol));
    let peer_matches =
        rule.peers.is_empty() || rule.peers.iter().any(|p| peer_matches(p, policy_namespace, peer));
    port_matches && peer_matches
}

fn port_allows(entry: &PolicyPort, destination: &Endpoint<'_>, port: u16, protocol: Protocol) -> bool {
    if entry.protocol != protocol {
        return false;
    }
    match &entry.port {
        None => true,
        Some(TargetPort::Number(start)) => {
            let end = entry.end_port.unwrap_or(*start);
            (*start..=end).contains(&port)
        }
        Some(TargetPort::Name(name)) => match destination {
            Endpoint::Pod(pod) => pod.ports.iter().any(|p| {
                p.name.as_deref() == Some(name.as_str()) && p.protocol == protocol && p.port == port
            }),
            Endpoint::External(_) => false,
        },
    }
}

fn peer_matches(peer: &Peer, policy_namespace: &str, endpoint: &Endpoint<'_>) -> bool {
    match peer {
        Peer::IpBlock { cidr, except } => {
            let ip = endpoint.ip();
            cidr.contains(&ip) && !except.iter().any(|hole| hole.contains(&ip))
        }
        Peer::Pods { pod_selector, namespace_selector } => {
            let Endpoint::Pod(pod) = endpoint else { return false };
            let namespace_ok = match namespace_selector {
                None => pod.namespace == policy_namespace,
                Some(selector) => selector.matches(pod.namespace_labels),
            };
            let pod_ok = pod_selector.as_ref().is_none_or(|selector| selector.matches(pod.labels));
            namespace_ok && pod_ok
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
