//! The seeds' isolation model: OpenContrail's network manager reading the `name` and `uses`
//! labels, and its reference evaluator.
//!
//! As the seeds describe it:
//! - every *collection* (the pods of one namespace sharing a `name` label) gets a virtual
//!   network; a pod reaches, by default, only the pods of its own collection, on any port;
//! - a service gets a service network holding its ClusterIP (and external IPs) as a floating IP
//!   on every backend;
//! - a collection labelled `uses: X` may reach service X's addresses, on the service's ports
//!   only. `X` names the service by its `name` label (as in the k8petstore example, where
//!   service `redismaster` carries `name: redis-master`) or by its object name.
//!
//! Pods without a `name` label form their namespace's `default` collection. Replies of an
//! allowed connection are allowed (flow pairs); this evaluator judges connection initiations.

use std::fmt;
use std::net::Ipv4Addr;

use crate::cluster::{Cluster, PodId, ServiceState};
use crate::k8s::{Labels, Protocol};

/// The label naming a pod's collection.
pub const NAME_LABEL: &str = "name";
/// The label naming the service a collection uses.
pub const USES_LABEL: &str = "uses";
/// The collection of pods without a `name` label.
pub const DEFAULT_COLLECTION: &str = "default";

/// A collection: the unit of isolation, with its own virtual network.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Collection {
    /// Namespace.
    pub namespace: String,
    /// The `name` label's value, or `default`.
    pub name: String,
}

impl Collection {
    /// The collection of a pod with these labels in this namespace.
    pub fn of(namespace: &str, labels: &Labels) -> Collection {
        let name = labels.get(NAME_LABEL).cloned().unwrap_or_else(|| DEFAULT_COLLECTION.to_string());
        Collection { namespace: namespace.to_string(), name }
    }
}

impl fmt::Display for Collection {
    /// The virtual network's name, as the network manager writes it: `namespace:name`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.namespace, self.name)
    }
}

/// Whether `service` is the one a `uses: value` label names.
pub fn service_is_named(service: &ServiceState, value: &str) -> bool {
    service.service.labels.get(NAME_LABEL).map(String::as_str) == Some(value) || service.service.name == value
}

/// Why the label model allows or denies a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelVerdict {
    /// Both pods are in the same collection.
    SameCollection,
    /// The source's collection uses the service and the port is one of the service's.
    UsesService(String),
    /// Denied: a pod of another collection.
    OtherCollection,
    /// Denied: the service is not the one the source uses.
    ServiceNotUsed(String),
    /// Denied: the service does not listen on that port.
    PortNotInService(String),
    /// Denied: the address was this service's, which has been deleted.
    DeletedService(String),
    /// Denied: the address is neither a pod nor a service.
    Unknown,
}

impl LabelVerdict {
    /// Whether the connection is allowed.
    pub fn allowed(&self) -> bool {
        matches!(self, LabelVerdict::SameCollection | LabelVerdict::UsesService(_))
    }
}

/// Judges a connection from pod `source` to `destination` on `port`/`protocol`.
pub fn evaluate(
    cluster: &Cluster,
    source: PodId,
    destination: Ipv4Addr,
    port: u16,
    protocol: Protocol,
) -> LabelVerdict {
    let source = cluster.pod(source);
    let source_collection = Collection::of(&source.pod.namespace, &source.pod.template.labels);
    if let Some(target) = cluster.pod_by_ip(destination) {
        let target = cluster.pod(target);
        let target_collection = Collection::of(&target.pod.namespace, &target.pod.template.labels);
        return if target_collection == source_collection {
            LabelVerdict::SameCollection
        } else {
            LabelVerdict::OtherCollection
        };
    }
    let Some(service) = cluster.service_by_ip(destination) else {
        let deleted = cluster.services().iter().rev().find(|s| s.cluster_ip == Some(destination));
        return deleted.map_or(LabelVerdict::Unknown, |s| LabelVerdict::DeletedService(s.key()));
    };
    let key = service.key();
    let uses = source.pod.template.labels.get(USES_LABEL);
    let same_namespace = service.service.namespace == source.pod.namespace;
    if !same_namespace || !uses.is_some_and(|value| service_is_named(service, value)) {
        return LabelVerdict::ServiceNotUsed(key);
    }
    if service.port(port, protocol).is_none() {
        return LabelVerdict::PortNotInService(key);
    }
    LabelVerdict::UsesService(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterConfig;
    use crate::k8s::manifest;

    const TIERS: &str = r#"
apiVersion: v1
kind: ReplicationController
metadata: {name: bps}
spec:
  replicas: 1
  template:
    metadata: {labels: {name: bps, uses: frontend}}
    spec: {containers: [{name: load}]}
---
apiVersion: v1
kind: ReplicationController
metadata: {name: frontend}
spec:
  replicas: 2
  template:
    metadata: {labels: {name: frontend, uses: redis-master}}
    spec: {containers: [{name: web, ports: [{containerPort: 3000}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: frontend, labels: {name: frontend}}
spec: {selector: {name: frontend}, ports: [{port: 3000}]}
---
apiVersion: v1
kind: Pod
metadata: {name: redis-master, labels: {name: redis-master}}
spec: {containers: [{name: redis, ports: [{containerPort: 6379}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: redismaster, labels: {name: redis-master}}
spec: {selector: {name: redis-master}, ports: [{port: 6379}]}
"#;

    #[test]
    fn the_petstore_tiers_reach_exactly_what_they_use() {
        let (objects, _) = manifest::parse("tiers.yaml", TIERS).expect("valid");
        let cluster = Cluster::build(ClusterConfig::default(), objects).expect("builds");
        let pod = |name: &str| cluster.pod_by_name("default", name).expect(name);
        let ip = |name: &str| cluster.pod(pod(name)).ip;
        let vip = |name: &str| {
            cluster.services().iter().find(|s| s.service.name == name).unwrap().cluster_ip.unwrap()
        };
        let tcp = Protocol::Tcp;
        let check = |from: &str, to: Ipv4Addr, port: u16, expected: LabelVerdict| {
            assert_eq!(evaluate(&cluster, pod(from), to, port, tcp), expected, "{from} -> {to}:{port}");
        };
        check("bps-0", vip("frontend"), 3000, LabelVerdict::UsesService("default/frontend".into()));
        check("bps-0", vip("frontend"), 3001, LabelVerdict::PortNotInService("default/frontend".into()));
        check("bps-0", vip("redismaster"), 6379, LabelVerdict::ServiceNotUsed("default/redismaster".into()));
        check("bps-0", ip("frontend-0"), 3000, LabelVerdict::OtherCollection);
        check(
            "frontend-0",
            vip("redismaster"),
            6379,
            LabelVerdict::UsesService("default/redismaster".into()),
        );
        check("frontend-0", ip("frontend-1"), 9999, LabelVerdict::SameCollection);
        check("frontend-0", ip("redis-master"), 6379, LabelVerdict::OtherCollection);
        check("redis-master", "192.0.2.1".parse().unwrap(), 80, LabelVerdict::Unknown);
        assert_eq!(
            Collection::of("default", &cluster.pod(pod("bps-0")).pod.template.labels).to_string(),
            "default:bps"
        );
    }
}
