//! The Kubernetes object model netsim understands: what a cluster's manifests declare.
//!
//! Only the fields that decide networking are modelled: labels, container ports, placement,
//! replicas, service selectors and ports, and NetworkPolicy in full. Everything else in a real
//! manifest (images, resources, probes) is accepted and ignored.
//!
//! - [`manifest`]: loading multi-document YAML as users write it.

pub mod manifest;

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// Labels of an object: ordered, so that anything derived from them is deterministic.
pub type Labels = BTreeMap<String, String>;

/// The label every namespace carries automatically, with the namespace's name as value.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A transport protocol, as Kubernetes names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Protocol {
    /// TCP (the default everywhere in the API).
    #[default]
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }

    /// The API's spelling: `TCP`, `UDP`, `SCTP`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set-based label requirement (`matchExpressions` entry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    /// The label key.
    pub key: String,
    /// How the key's value is tested.
    pub operator: Operator,
    /// Values for `In` and `NotIn`.
    pub values: Vec<String>,
}

/// A `matchExpressions` operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    /// The label is present with one of the values.
    In,
    /// The label is absent, or present with none of the values.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

/// A label selector: `matchLabels` and `matchExpressions`, all of which must hold. The empty
/// selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    /// Exact key/value pairs.
    pub match_labels: Labels,
    /// Set-based requirements.
    pub match_expressions: Vec<Requirement>,
}

impl LabelSelector {
    /// A selector of exact labels only (as services and replication controllers use).
    pub fn from_labels(labels: Labels) -> Self {
        LabelSelector { match_labels: labels, match_expressions: Vec::new() }
    }

    /// Whether `labels` satisfy every term.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let value = labels.get(&r.key);
                match r.operator {
                    Operator::In => value.is_some_and(|v| r.values.contains(v)),
                    Operator::NotIn => value.is_none_or(|v| !r.values.contains(v)),
                    Operator::Exists => value.is_some(),
                    Operator::DoesNotExist => value.is_none(),
                }
            })
    }

    /// Whether this is the empty selector (matches everything).
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }
}

/// A port a container declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerPort {
    /// Its name, which services and policies may refer to.
    pub name: Option<String>,
    /// The port number.
    pub port: u16,
    /// The protocol.
    pub protocol: Protocol,
}

/// A namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    /// Its name.
    pub name: String,
    /// Its labels, including the automatic `kubernetes.io/metadata.name`.
    pub labels: Labels,
}

impl Namespace {
    /// A namespace with `labels` plus the automatic name label, as the API server sets it.
    pub fn new(name: &str, mut labels: Labels) -> Self {
        labels.insert(NAMESPACE_NAME_LABEL.to_string(), name.to_string());
        Namespace { name: name.to_string(), labels }
    }
}

/// What a pod is made of, whether declared alone or as a workload's template.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodTemplate {
    /// The pod's labels.
    pub labels: Labels,
    /// Every container's declared ports, in order.
    pub ports: Vec<ContainerPort>,
}

/// A pod as declared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Labels and ports.
    pub template: PodTemplate,
    /// `spec.nodeName`: the host it must run on (`host-7`), if pinned.
    pub node: Option<String>,
    /// `status.podIP`: the address it must have, if pinned.
    pub ip: Option<Ipv4Addr>,
    /// The workload that owns it (`Deployment/frontend`), if any.
    pub owner: Option<String>,
}

/// The kinds of workload that stamp out pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkloadKind {
    /// `apps/v1` Deployment.
    Deployment,
    /// `v1` ReplicationController.
    ReplicationController,
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::ReplicationController => "ReplicationController",
        })
    }
}

/// A Deployment or ReplicationController.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    /// Which kind.
    pub kind: WorkloadKind,
    /// Its namespace.
    pub namespace: String,
    /// Its name; its pods are `<name>-<index>`.
    pub name: String,
    /// How many pods it keeps.
    pub replicas: u32,
    /// The selector (validated to match the template's labels).
    pub selector: LabelSelector,
    /// The pods' template.
    pub template: PodTemplate,
}

/// A service port's target on the pods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetPort {
    /// A port number.
    Number(u16),
    /// A container port's name.
    Name(String),
}

/// One port of a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    /// Its name (required when a service has several ports).
    pub name: Option<String>,
    /// The port clients connect to on the ClusterIP.
    pub port: u16,
    /// Where it goes on the backends.
    pub target_port: TargetPort,
    /// The protocol.
    pub protocol: Protocol,
    /// The NodePort, for `type: NodePort` and `LoadBalancer` services.
    pub node_port: Option<u16>,
}

/// A service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its labels (the seeds' network manager reads `name` from here).
    pub labels: Labels,
    /// Pods backing it: `None` for a service without selector (no managed endpoints).
    pub selector: Option<Labels>,
    /// Its ports.
    pub ports: Vec<ServicePort>,
    /// What the service asked for as ClusterIP.
    pub cluster_ip: ClusterIpRequest,
    /// `spec.externalIPs` (the seeds' "public IP").
    pub external_ips: Vec<Ipv4Addr>,
}

/// What a service asks for as its ClusterIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterIpRequest {
    /// Allocate one from the service CIDR.
    Allocate,
    /// This address.
    Fixed(Ipv4Addr),
    /// `None`: a headless service.
    Headless,
}

/// A NetworkPolicy (networking.k8s.io/v1), with `policyTypes` already defaulted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkPolicy {
    /// Its namespace: it selects pods there only.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The pods it applies to.
    pub pod_selector: LabelSelector,
    /// Whether it isolates its pods for ingress.
    pub ingress_isolation: bool,
    /// Whether it isolates its pods for egress.
    pub egress_isolation: bool,
    /// Ingress rules: traffic allowed in.
    pub ingress: Vec<PolicyRule>,
    /// Egress rules: traffic allowed out.
    pub egress: Vec<PolicyRule>,
}

/// One ingress or egress rule: allowed when a port matches (or none are listed) and a peer
/// matches (or none are listed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyRule {
    /// Ports; empty means every port and protocol.
    pub ports: Vec<PolicyPort>,
    /// Peers (`from` or `to`); empty means everyone.
    pub peers: Vec<Peer>,
}

/// A `ports` entry of a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyPort {
    /// The protocol (default TCP).
    pub protocol: Protocol,
    /// The port: a number, a container port name, or `None` for every port.
    pub port: Option<TargetPort>,
    /// With a numeric port, the last port of a range.
    pub end_port: Option<u16>,
}

/// A `from` or `to` entry of a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// Pods chosen by selectors. `namespace_selector: None` means the policy's own namespace;
    /// `pod_selector: None` means every pod of the chosen namespaces.
    Pods {
        /// Which pods.
        pod_selector: Option<LabelSelector>,
        /// Which namespaces.
        namespace_selector: Option<LabelSelector>,
    },
    /// Addresses: `cidr` minus each of `except`.
    IpBlock {
        /// The block.
        cidr: Ipv4Net,
        /// Holes in it.
        except: Vec<Ipv4Net>,
    },
}

/// Every object a set of manifests declares, in declaration order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Objects {
    /// Namespaces declared explicitly (others are created on first use).
    pub namespaces: Vec<Namespace>,
    /// Bare pods.
    pub pods: Vec<Pod>,
    /// Deployments and replication controllers.
    pub workloads: Vec<Workload>,
    /// Services.
    pub services: Vec<Service>,
    /// Network policies.
    pub policies: Vec<NetworkPolicy>,
}

impl Objects {
    /// Appends another set of objects (another manifest file).
    pub fn extend(&mut self, other: Objects) {
        self.namespaces.extend(other.namespaces);
        self.pods.extend(other.pods);
        self.workloads.extend(other.workloads);
        self.services.extend(other.services);
        self.policies.extend(other.policies);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn selectors_follow_the_api_semantics() {
        let pod = labels(&[("app", "web"), ("tier", "front")]);
        let requirement = |key: &str, operator, values: &[&str]| Requirement {
            key: key.into(),
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        let cases = [
            (LabelSelector::default(), true),
            (LabelSelector::from_labels(labels(&[("app", "web")])), true),
            (LabelSelector::from_labels(labels(&[("app", "db")])), false),
            (LabelSelector::from_labels(labels(&[("app", "web"), ("x", "y")])), false),
            (
                LabelSelector {
                    match_labels: Labels::new(),
                    match_expressions: vec![requirement("tier", Operator::In, &["front", "back"])],
                },
                true,
            ),
            (
                LabelSelector {
                    match_labels: Labels::new(),
                    match_expressions: vec![requirement("tier", Operator::NotIn, &["front"])],
                },
                false,
            ),
            (
                LabelSelector {
                    match_labels: Labels::new(),
                    match_expressions: vec![requirement("zone", Operator::NotIn, &["a"])],
                },
                true,
            ),
            (
                LabelSelector {
                    match_labels: Labels::new(),
                    match_expressions: vec![requirement("zone", Operator::Exists, &[])],
                },
                false,
            ),
            (
                LabelSelector {
                    match_labels: Labels::new(),
                    match_expressions: vec![requirement("zone", Operator::DoesNotExist, &[])],
                },
                true,
            ),
            (
                LabelSelector {
                    match_labels: Labels::new(),
                    match_expressions: vec![requirement("app", Operator::In, &[])],
                },
                false,
            ),
        ];
        for (index, (selector, expected)) in cases.into_iter().enumerate() {
            assert_eq!(selector.matches(&pod), expected, "case {index}: {selector:?}");
        }
    }

    #[test]
    fn namespaces_carry_their_name_label() {
        let namespace = Namespace::new("x", labels(&[("team", "a")]));
        assert_eq!(namespace.labels.get(NAMESPACE_NAME_LABEL).map(String::as_str), Some("x"));
        assert_eq!(namespace.labels.len(), 2);
    }
}
