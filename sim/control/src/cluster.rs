//! The cluster's state: the declared objects made concrete. Workloads are stamped into pods,
//! pods are scheduled and addressed, services get ClusterIPs and endpoints.
//!
//! Everything is kept in creation order (vectors and ordered maps), so that whatever a data
//! plane or a check derives from it is deterministic.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::ipam::{AddressPool, IpamMode, PodIpam};
use crate::k8s::Workload;
use crate::k8s::{
    ClusterIpRequest, Labels, Namespace, NetworkPolicy, Objects, Pod, Protocol, Service, ServicePort,
    TargetPort,
};
use crate::netpol::{Endpoint, PodView};
use crate::scheduler::Scheduler;

/// Cluster-wide settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Number of hosts (nodes) pods can run on; host `i` is `host-i`.
    pub hosts: u32,
    /// Most pods a host runs (Kubernetes' default: 110).
    pub pods_per_host_max: u32,
    /// Where pod addresses come from.
    pub pod_cidr: Ipv4Net,
    /// Where ClusterIPs come from.
    pub service_cidr: Ipv4Net,
    /// How pod addresses are organised.
    pub ipam: IpamMode,
}

impl Default for ClusterConfig {
    /// 100 hosts, 110 pods each, pods in 10.0.0.0/16 (the seeds' private space), services in
    /// 10.96.0.0/12 (Kubernetes' default), cluster-wide addressing.
    fn default() -> Self {
        ClusterConfig {
            hosts: 100,
            pods_per_host_max: 110,
            pod_cidr: "10.0.0.0/16".parse().expect("a valid CIDR literal"),
            service_cidr: "10.96.0.0/12".parse().expect("a valid CIDR literal"),
            ipam: IpamMode::ClusterWide,
        }
    }
}

/// Why objects could not be applied to the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterError {
    /// The object, as `Kind namespace/name`.
    pub object: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.object, self.message)
    }
}

impl std::error::Error for ClusterError {}

/// Index of a pod in [`Cluster::pods`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct PodId(pub u32);

/// A running pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodState {
    /// The pod as declared (or stamped from a workload).
    pub pod: Pod,
    /// The host it runs on.
    pub host: u32,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Whether its address lies outside its host's blocks (host-block IPAM only).
    pub borrowed_ip: bool,
    /// Whether it has been deleted (its id and address are not reused within a run).
    pub deleted: bool,
}

impl PodState {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.pod.namespace, self.pod.name)
    }
}

/// One backend of one service port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backend {
    /// The pod.
    pub pod: PodId,
    /// Its address.
    pub ip: Ipv4Addr,
    /// The port on the pod.
    pub port: u16,
}

/// A service with its address and endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceState {
    /// The service as declared.
    pub service: Service,
    /// Its ClusterIP (`None` when headless).
    pub cluster_ip: Option<Ipv4Addr>,
    /// Backends of each port, in the order of `service.ports` (none once deleted).
    pub backends: Vec<Vec<Backend>>,
    /// Whether it has been deleted. Its slot stays, so that indices into
    /// [`Cluster::services`] stay valid within a run; its ClusterIP is not handed out again.
    pub deleted: bool,
}

impl ServiceState {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.service.namespace, self.service.name)
    }

    /// The service port matching `port`/`protocol`, with its index.
    pub fn port(&self, port: u16, protocol: Protocol) -> Option<(usize, &ServicePort)> {
        self.service.ports.iter().enumerate().find(|(_, p)| p.port == port && p.protocol == protocol)
    }
}

/// The cluster.
#[derive(Clone, Debug)]
pub struct Cluster {
    config: ClusterConfig,
    namespaces: BTreeMap<String, Namespace>,
    pods: Vec<PodState>,
    /// Each pod's `deleted`, densely: the simulator asks it of every packet a pod sends or
    /// receives, and a pod's state is larger than a cache line.
    pods_deleted: Vec<bool>,
    pods_by_ip: BTreeMap<Ipv4Addr, PodId>,
    pods_by_key: BTreeMap<(String, String), PodId>,
    /// Live pods by (namespace, label key, label value): the endpoints controller's index, so
    /// that a service's endpoints cost its matching pods, not every pod of the cluster.
    pods_by_label: BTreeMap<(String, String, String), BTreeSet<PodId>>,
    /// Live pods by (namespace, owning workload as `Kind/name`), for the controllers.
    pods_by_owner: BTreeMap<(String, String), BTreeSet<PodId>>,
    services: Vec<ServiceState>,
    policies: Vec<NetworkPolicy>,
    workloads: Vec<(Workload, u32)>,
    scheduler: Scheduler,
    ipam: PodIpam,
    service_ips: AddressPool,
}

/// Whether a service selector selects a pod (every pair among the pod's labels).
fn selects(selector: &Labels, pod: &Pod) -> bool {
    selector.iter().all(|(k, v)| pod.template.labels.get(k) == Some(v))
}

impl Cluster {
    /// An empty cluster with the `default` namespace.
    pub fn new(config: ClusterConfig) -> Cluster {
        let mut cluster = Cluster {
            namespaces: BTreeMap::new(),
            pods: Vec::new(),
            pods_deleted: Vec::new(),
            pods_by_ip: BTreeMap::new(),
            pods_by_key: BTreeMap::new(),
            pods_by_label: BTreeMap::new(),
            pods_by_owner: BTreeMap::new(),
            services: Vec::new(),
            policies: Vec::new(),
            workloads: Vec::new(),
            scheduler: Scheduler::new(config.hosts, config.pods_per_host_max),
            ipam: PodIpam::new(config.pod_cidr, config.ipam),
            // .0 is the network, .1 the API server's service.
            service_ips: AddressPool::new(config.service_cidr, 2),
            config,
        };
        cluster.ensure_namespace("default");
        cluster
    }

    /// Builds a cluster from declared objects.
    pub fn build(config: ClusterConfig, objects: Objects) -> Result<Cluster, Vec<ClusterError>> {
        let mut cluster = Cluster::new(config);
        cluster.apply(objects)?;
        Ok(cluster)
    }

    /// Creates declared objects: namespaces, then pods with pinned addresses, then the other
    /// pods and the workloads' pods in declaration order, then services and policies. Every
    /// problem is reported; on error the cluster may be partly updated.
    pub fn apply(&mut self, objects: Objects) -> Result<(), Vec<ClusterError>> {
        let mut errors = Vec::new();
        for namespace in objects.namespaces {
            if self.namespaces.contains_key(&namespace.name) && namespace.name != "default" {
                errors.push(ClusterError {
                    object: format!("Namespace {}", namespace.name),
                    message: "declared twice".into(),
                });
            }
            self.namespaces.insert(namespace.name.clone(), namespace);
        }
        let mut pods: Vec<Pod> = objects.pods;
        for workload in &objects.workloads {
            for index in 0..workload.replicas {
                pods.push(Pod {
                    namespace: workload.namespace.clone(),
                    name: format!("{}-{index}", workload.name),
                    template: workload.template.clone(),
                    node: None,
                    ip: None,
                    owner: Some(format!("{}/{}", workload.kind, workload.name)),
                });
            }
        }
        self.workloads.extend(objects.workloads.iter().map(|w| (w.clone(), w.replicas)));
        // Pinned addresses first, so that allocation never hands one out.
        pods.sort_by_key(|pod| pod.ip.is_none());
        for pod in pods {
            if let Err(message) = self.insert_pod(pod.clone()) {
                errors.push(ClusterError { object: format!("Pod {}/{}", pod.namespace, pod.name), message });
            }
        }
        for service in objects.services {
            let object = format!("Service {}/{}", service.namespace, service.name);
            if let Err(message) = self.add_service(service) {
                errors.push(ClusterError { object, message });
            }
        }
        for policy in objects.policies {
            self.ensure_namespace(&policy.namespace);
            // As `kubectl apply`: a policy of the same name is replaced (edited).
            match self.policies.iter_mut().find(|p| p.namespace == policy.namespace && p.name == policy.name)
            {
                Some(existing) => *existing = policy,
                None => self.policies.push(policy),
            }
        }
        self.refresh_endpoints();
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    fn ensure_namespace(&mut self, name: &str) {
        if !self.namespaces.contains_key(name) {
            self.namespaces.insert(name.to_string(), Namespace::new(name, Labels::new()));
        }
    }

    /// Deletes a NetworkPolicy (`kubectl delete networkpolicy`).
    pub fn delete_policy(&mut self, namespace: &str, name: &str) -> Result<(), String> {
        let before = self.policies.len();
        self.policies.retain(|p| !(p.namespace == namespace && p.name == name));
        if self.policies.len() == before {
            return Err(format!("no NetworkPolicy {namespace}/{name}"));
        }
        Ok(())
    }

    /// Schedules, addresses and records a pod, and updates the services' endpoints.
    pub fn add_pod(&mut self, pod: Pod) -> Result<PodId, String> {
        let id = self.insert_pod(pod)?;
        self.refresh_endpoints_of(&[id]);
        Ok(id)
    }

    fn insert_pod(&mut self, pod: Pod) -> Result<PodId, String> {
        let key = (pod.namespace.clone(), pod.name.clone());
        if self.pods_by_key.contains_key(&key) {
            return Err("a pod of this name already exists".into());
        }
        let host = match &pod.node {
            Some(node) => {
                let host = node
                    .strip_prefix("host-")
                    .and_then(|n| n.parse::<u32>().ok())
                    .filter(|&h| h < self.config.hosts)
                    .ok_or_else(|| {
                        format!(
                            "spec.nodeName: `{node}` is not a host of this cluster (host-0 to host-{})",
                            self.config.hosts.saturating_sub(1)
                        )
                    })?;
                self.scheduler.pin(host).map_err(|e| e.to_string())?;
                host
            }
            None => self.scheduler.place().map_err(|e| e.to_string())?,
        };
        let address = match pod.ip {
            Some(ip) => self.ipam.reserve(host, ip).map(|borrowed| (ip, borrowed)),
            None => self.ipam.allocate(host).map(|ip| (ip, false)),
        };
        let (ip, borrowed_ip) = match address {
            Ok(address) => address,
            Err(error) => {
                self.scheduler.remove(host);
                return Err(format!("address: {error}"));
            }
        };
        self.ensure_namespace(&pod.namespace);
        let id = PodId(self.pods.len() as u32);
        for (k, v) in &pod.template.labels {
            self.pods_by_label.entry((pod.namespace.clone(), k.clone(), v.clone())).or_default().insert(id);
        }
        if let Some(owner) = &pod.owner {
            self.pods_by_owner.entry((pod.namespace.clone(), owner.clone())).or_default().insert(id);
        }
        self.pods.push(PodState { pod, host, ip, borrowed_ip, deleted: false });
        self.pods_deleted.push(false);
        self.pods_by_ip.insert(ip, id);
        self.pods_by_key.insert(key, id);
        Ok(id)
    }

    /// Deletes a pod: it leaves its host and every service's endpoints. Its id and address
    /// are not reused within a run.
    pub fn delete_pod(&mut self, id: PodId) -> Result<(), String> {
        self.remove_pod(id)?;
        self.refresh_endpoints_of(&[id]);
        Ok(())
    }

    /// Marks a pod deleted and takes it out of its host and the indices; endpoints are left to
    /// the caller, so that a batch of changes refreshes them once.
    fn remove_pod(&mut self, id: PodId) -> Result<(), String> {
        let state = self.pods.get_mut(id.0 as usize).ok_or("no such pod")?;
        if state.deleted {
            return Err(format!("pod {} is already deleted", state.key()));
        }
        state.deleted = true;
        self.pods_deleted[id.0 as usize] = true;
        let state = &self.pods[id.0 as usize];
        let (host, ip, namespace) = (state.host, state.ip, &state.pod.namespace);
        self.scheduler.remove(host);
        self.pods_by_ip.remove(&ip);
        self.pods_by_key.remove(&(namespace.clone(), state.pod.name.clone()));
        for (k, v) in &state.pod.template.labels {
            let key = (namespace.clone(), k.clone(), v.clone());
            if let Some(ids) = self.pods_by_label.get_mut(&key) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.pods_by_label.remove(&key);
                }
            }
        }
        if let Some(owner) = &state.pod.owner
            && let Some(ids) = self.pods_by_owner.get_mut(&(namespace.clone(), owner.clone()))
        {
            ids.remove(&id);
        }
        Ok(())
    }

    /// Restarts a pod: a workload's pod is deleted and its controller creates a replacement
    /// (a new name, host and address); a bare pod comes back under its own name, rescheduled and
    /// readdressed. Returns the new pod.
    pub fn restart_pod(&mut self, id: PodId) -> Result<PodId, String> {
        let state = self.pods.get(id.0 as usize).ok_or("no such pod")?.clone();
        self.delete_pod(id)?;
        if state.pod.owner.is_some() {
            let created = self.reconcile()?;
            return created
                .first()
                .copied()
                .ok_or_else(|| "the controller created no replacement".to_string());
        }
        let pod = Pod { node: None, ip: None, ..state.pod };
        let created = self.insert_pod(pod)?;
        self.refresh_endpoints_of(&[created]);
        Ok(created)
    }

    /// Drains a host (as `kubectl drain`): cordons it, deletes its pods, and lets the workloads'
    /// controllers recreate theirs elsewhere; bare pods are gone. Returns the pods deleted.
    pub fn drain(&mut self, host: u32) -> Result<Vec<PodId>, String> {
        if host >= self.config.hosts {
            return Err(format!("host-{host} is not a host of this cluster"));
        }
        self.scheduler.cordon(host);
        let victims: Vec<PodId> = (0..self.pods.len() as u32)
            .map(PodId)
            .filter(|&id| !self.pods[id.0 as usize].deleted && self.pods[id.0 as usize].host == host)
            .collect();
        for &id in &victims {
            self.delete_pod(id)?;
        }
        self.reconcile()?;
        Ok(victims)
    }

    /// Brings every workload back to its replica count, as its controller does; returns the
    /// pods created.
    pub fn reconcile(&mut self) -> Result<Vec<PodId>, String> {
        let mut created = Vec::new();
        for index in 0..self.workloads.len() {
            let (workload, _) = &self.workloads[index];
            let (namespace, name, replicas) =
                (workload.namespace.clone(), workload.name.clone(), workload.replicas);
            created.extend(self.scale(&namespace, &name, replicas)?.0);
        }
        Ok(created)
    }

    /// Scales a workload to `replicas`: new pods get the next indices; scaling down deletes the
    /// highest-indexed pods first. Returns the pods created and deleted.
    pub fn scale(
        &mut self,
        namespace: &str,
        name: &str,
        replicas: u32,
    ) -> Result<(Vec<PodId>, Vec<PodId>), String> {
        let index = self
            .workloads
            .iter()
            .position(|(w, _)| w.namespace == namespace && w.name == name)
            .ok_or_else(|| format!("no Deployment or ReplicationController `{namespace}/{name}`"))?;
        self.workloads[index].0.replicas = replicas;
        let owner = format!("{}/{}", self.workloads[index].0.kind, name);
        let mut live: Vec<PodId> = self
            .pods_by_owner
            .get(&(namespace.to_string(), owner.clone()))
            .map(|ids| ids.iter().copied().collect())
            .unwrap_or_default();
        let (mut created, mut deleted) = (Vec::new(), Vec::new());
        while live.len() > replicas as usize {
            let id = live.pop().expect("more live pods than wanted");
            self.remove_pod(id)?;
            deleted.push(id);
        }
        while live.len() < replicas as usize {
            let (workload, next) = &mut self.workloads[index];
            let pod = Pod {
                namespace: workload.namespace.clone(),
                name: format!("{}-{next}", workload.name),
                template: workload.template.clone(),
                node: None,
                ip: None,
                owner: Some(owner.clone()),
            };
            *next += 1;
            let id = self.insert_pod(pod)?;
            live.push(id);
            created.push(id);
        }
        self.refresh_endpoints_of(&[created.as_slice(), deleted.as_slice()].concat());
        Ok((created, deleted))
    }

    fn add_service(&mut self, service: Service) -> Result<(), String> {
        if let Some(existing) = self.services.iter_mut().find(|s| {
            !s.deleted && s.service.namespace == service.namespace && s.service.name == service.name
        }) {
            // As `kubectl apply`: the service is edited in place; its ClusterIP is immutable.
            if let ClusterIpRequest::Fixed(ip) = service.cluster_ip
                && existing.cluster_ip != Some(ip)
            {
                return Err("spec.clusterIP is immutable: the service exists with another address".into());
            }
            if matches!(service.cluster_ip, ClusterIpRequest::Headless) != existing.cluster_ip.is_none() {
                return Err(
                    "spec.clusterIP is immutable: a service cannot become or stop being headless".into()
                );
            }
            existing.service = service;
            return Ok(());
        }
        let cluster_ip = match service.cluster_ip {
            ClusterIpRequest::Headless => None,
            ClusterIpRequest::Fixed(ip) => {
                self.service_ips.reserve(ip).map_err(|e| format!("spec.clusterIP: {e}"))?;
                Some(ip)
            }
            ClusterIpRequest::Allocate => {
                Some(self.service_ips.allocate().map_err(|e| format!("spec.clusterIP: {e}"))?)
            }
        };
        self.ensure_namespace(&service.namespace);
        self.services.push(ServiceState { service, cluster_ip, backends: Vec::new(), deleted: false });
        Ok(())
    }

    /// Deletes a service (`kubectl delete service`): it loses its endpoints and its addresses
    /// stop being a service's. Applying a service of the same name later creates a new one, with
    /// a new ClusterIP unless it asks for one.
    pub fn delete_service(&mut self, namespace: &str, name: &str) -> Result<(), String> {
        let state = self
            .services
            .iter_mut()
            .find(|s| !s.deleted && s.service.namespace == namespace && s.service.name == name)
            .ok_or_else(|| format!("no Service {namespace}/{name}"))?;
        state.deleted = true;
        state.backends = vec![Vec::new(); state.service.ports.len()];
        Ok(())
    }

    /// Recomputes every service's backends from the selectors (as the endpoints controller).
    fn refresh_endpoints(&mut self) {
        for index in 0..self.services.len() {
            if self.services[index].deleted {
                continue;
            }
            self.services[index].backends = self.backends_of(&self.services[index].service);
        }
    }

    /// Recomputes the backends of the services whose selectors match any of these pods (created
    /// or deleted ones alike: a deleted pod keeps its labels).
    fn refresh_endpoints_of(&mut self, changed: &[PodId]) {
        for index in 0..self.services.len() {
            if self.services[index].deleted {
                continue;
            }
            let service = &self.services[index].service;
            let affected = changed.iter().any(|&id| {
                let pod = &self.pods[id.0 as usize].pod;
                pod.namespace == service.namespace
                    && service.selector.as_ref().is_some_and(|s| selects(s, pod))
            });
            if affected {
                self.services[index].backends = self.backends_of(&self.services[index].service);
            }
        }
    }

    /// A service's backends per port, in pod creation order. The candidates come from the label
    /// index (the selector's first pair); a selector without pairs selects its whole namespace.
    fn backends_of(&self, service: &Service) -> Vec<Vec<Backend>> {
        let Some(selector) = &service.selector else {
            return vec![Vec::new(); service.ports.len()];
        };
        let candidates: Vec<PodId> = match selector.iter().next() {
            Some((k, v)) => self
                .pods_by_label
                .get(&(service.namespace.clone(), k.clone(), v.clone()))
                .map(|ids| ids.iter().copied().collect())
                .unwrap_or_default(),
            None => (0..self.pods.len() as u32)
                .map(PodId)
                .filter(|id| {
                    let p = &self.pods[id.0 as usize];
                    !p.deleted && p.pod.namespace == service.namespace
                })
                .collect(),
        };
        let selected: Vec<PodId> =
            candidates.into_iter().filter(|id| selects(selector, &self.pods[id.0 as usize].pod)).collect();
        service
            .ports
            .iter()
            .map(|service_port| {
                selected
                    .iter()
                    .filter_map(|&id| {
                        let p = &self.pods[id.0 as usize];
                        let port = match &service_port.target_port {
                            TargetPort::Number(n) => Some(*n),
                            TargetPort::Name(name) => p
                                .pod
                                .template
                                .ports
                                .iter()
                                .find(|c| {
                                    c.name.as_deref() == Some(name) && c.protocol == service_port.protocol
                                })
                                .map(|c| c.port),
                        }?;
                        Some(Backend { pod: id, ip: p.ip, port })
                    })
                    .collect()
            })
            .collect()
    }

    /// The configuration.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// Every pod, in creation order.
    pub fn pods(&self) -> &[PodState] {
        &self.pods
    }

    /// A pod by id.
    pub fn pod(&self, id: PodId) -> &PodState {
        &self.pods[id.0 as usize]
    }

    /// Whether a pod has been deleted (as its state says), without reading its state.
    pub fn is_deleted(&self, id: PodId) -> bool {
        let deleted = self.pods_deleted[id.0 as usize];
        debug_assert_eq!(deleted, self.pods[id.0 as usize].deleted);
        deleted
    }

    /// A pod by namespace and name.
    pub fn pod_by_name(&self, namespace: &str, name: &str) -> Option<PodId> {
        self.pods_by_key.get(&(namespace.to_string(), name.to_string())).copied()
    }

    /// The pod with this address.
    pub fn pod_by_ip(&self, ip: Ipv4Addr) -> Option<PodId> {
        self.pods_by_ip.get(&ip).copied()
    }

    /// Every service, in creation order, deleted ones included (see [`ServiceState::deleted`]).
    pub fn services(&self) -> &[ServiceState] {
        &self.services
    }

    /// The services that exist now, in creation order.
    pub fn live_services(&self) -> impl Iterator<Item = &ServiceState> {
        self.services.iter().filter(|s| !s.deleted)
    }

    /// The (live) service with this ClusterIP or external IP.
    pub fn service_by_ip(&self, ip: Ipv4Addr) -> Option<&ServiceState> {
        self.live_services().find(|s| s.cluster_ip == Some(ip) || s.service.external_ips.contains(&ip))
    }

    /// Every network policy, in creation order.
    pub fn policies(&self) -> &[NetworkPolicy] {
        &self.policies
    }

    /// Every namespace, by name.
    pub fn namespaces(&self) -> &BTreeMap<String, Namespace> {
        &self.namespaces
    }

    /// Pod address management (for host blocks).
    pub fn ipam(&self) -> &PodIpam {
        &self.ipam
    }

    /// The view of a pod that policy evaluation needs.
    pub fn view(&self, id: PodId) -> PodView<'_> {
        let state = self.pod(id);
        let namespace = &self.namespaces[&state.pod.namespace];
        PodView {
            namespace: &state.pod.namespace,
            namespace_labels: &namespace.labels,
            labels: &state.pod.template.labels,
            ip: state.ip,
            ports: &state.pod.template.ports,
        }
    }

    /// The policy endpoint for an address: a pod's view if a pod has it, else external.
    pub fn endpoint(&self, ip: Ipv4Addr) -> Endpoint<'_> {
        match self.pod_by_ip(ip) {
            Some(id) => Endpoint::Pod(self.view(id)),
            None => Endpoint::External(ip),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::manifest;

    const PETSTORE: &str = r#"
apiVersion: v1
kind: ReplicationController
metadata: {name: frontend}
spec:
  replicas: 3
  template:
    metadata:
      labels: {name: frontend, uses: redis-master}
    spec:
      containers:
      - name: web
        ports: [{containerPort: 3000, name: http}]
---
apiVersion: v1
kind: Service
metadata: {name: frontend, labels: {name: frontend}}
spec:
  selector: {name: frontend}
  ports: [{port: 3000, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: redis-master, labels: {name: redis-master}}
spec:
  nodeName: host-42
  containers: [{name: redis, ports: [{containerPort: 6379}]}]
status: {podIP: 10.0.9.9}
"#;

    #[test]
    fn workloads_become_scheduled_addressed_pods_behind_services() {
        let (objects, warnings) = manifest::parse("petstore.yaml", PETSTORE).expect("valid");
        assert!(warnings.is_empty());
        let cluster = Cluster::build(ClusterConfig::default(), objects).expect("builds");
        let names: Vec<String> = cluster.pods().iter().map(PodState::key).collect();
        // The pinned pod is created first.
        assert_eq!(
            names,
            ["default/redis-master", "default/frontend-0", "default/frontend-1", "default/frontend-2"]
        );
        let redis = cluster.pod(cluster.pod_by_name("default", "redis-master").unwrap());
        assert_eq!((redis.host, redis.ip), (42, "10.0.9.9".parse().unwrap()));
        let frontend = &cluster.services()[0];
        assert_eq!(frontend.cluster_ip, Some("10.96.0.2".parse().unwrap()));
        let backends: Vec<(u32, u16)> = frontend.backends[0].iter().map(|b| (b.pod.0, b.port)).collect();
        assert_eq!(backends, [(1, 3000), (2, 3000), (3, 3000)]);
        // Spread: the three replicas on three different hosts, none on the pinned one.
        let hosts: Vec<u32> = cluster.pods()[1..].iter().map(|p| p.host).collect();
        assert_eq!(hosts, [0, 37, 74]);
        assert_eq!(cluster.namespaces()["default"].labels[crate::k8s::NAMESPACE_NAME_LABEL], "default");
    }

    #[test]
    fn a_deleted_pod_reads_as_deleted_and_only_it() {
        let (objects, _) = manifest::parse("petstore.yaml", PETSTORE).expect("valid");
        let mut cluster = Cluster::build(ClusterConfig::default(), objects).expect("builds");
        let frontend = cluster.pod_by_name("default", "frontend-1").expect("a replica");
        cluster.delete_pod(frontend).expect("a live pod");
        let deleted: Vec<bool> = (0..4).map(|id| cluster.is_deleted(PodId(id))).collect();
        assert_eq!(deleted, [false, false, true, false]);
        assert!(cluster.pod(frontend).deleted);
        assert!(cluster.delete_pod(frontend).is_err(), "deleted twice");
    }

    #[test]
    fn conflicts_are_reported_per_object() {
        let text = format!(
            "{PETSTORE}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: squatter}}\nspec: {{nodeName: host-100}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: twin}}\nspec: {{}}\nstatus: {{podIP: 10.0.9.9}}\n"
        );
        let (objects, _) = manifest::parse("x.yaml", &text).expect("parses");
        let errors = Cluster::build(ClusterConfig::default(), objects).unwrap_err();
        let rendered: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            rendered,
            [
                "Pod default/twin: address: 10.0.9.9 is already in use",
                "Pod default/squatter: spec.nodeName: `host-100` is not a host of this cluster (host-0 to host-99)",
            ]
        );
    }

    #[test]
    fn a_deleted_service_keeps_its_slot_and_a_new_one_gets_a_new_address() {
        let (objects, _) = manifest::parse("p.yaml", PETSTORE).expect("valid");
        let mut cluster = Cluster::build(ClusterConfig::default(), objects).expect("builds");
        let frontend = cluster.services().iter().position(|s| s.service.name == "frontend").unwrap();
        let ip = cluster.services()[frontend].cluster_ip.unwrap();
        assert!(!cluster.services()[frontend].backends[0].is_empty());
        cluster.delete_service("default", "frontend").expect("exists");
        let state = &cluster.services()[frontend];
        assert!(state.deleted && state.backends.iter().all(Vec::is_empty));
        assert!(cluster.service_by_ip(ip).is_none());
        assert!(cluster.delete_service("default", "frontend").is_err(), "deleted twice");
        // Pods coming and going leave a deleted service without endpoints.
        cluster.scale("default", "frontend", 5).expect("scales");
        assert!(cluster.services()[frontend].backends.iter().all(Vec::is_empty));
        // Applying it again creates a new service with a new ClusterIP, selecting the pods.
        let (again, _) = manifest::parse("p.yaml", PETSTORE).expect("valid");
        let services = Objects { services: again.services, ..Objects::default() };
        cluster.apply(services).expect("applies");
        let new = cluster.live_services().find(|s| s.service.name == "frontend").expect("recreated");
        assert_ne!(new.cluster_ip, Some(ip));
        assert_eq!(new.backends[0].len(), 5);
        assert_eq!(cluster.services()[frontend].cluster_ip, Some(ip), "the old slot stays");
    }

    #[test]
    fn applying_an_object_again_edits_it_and_policies_can_be_deleted() {
        let (objects, _) = manifest::parse("p.yaml", PETSTORE).unwrap();
        let mut cluster = Cluster::build(ClusterConfig::default(), objects).unwrap();
        let ip = cluster.services()[0].cluster_ip;
        let policy = |port: u16| {
            format!(
                "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: web}}\nspec:\n  podSelector: {{matchLabels: {{name: frontend}}}}\n  ingress: [{{ports: [{{port: {port}}}]}}]\n"
            )
        };
        for port in [3000, 3001] {
            cluster.apply(manifest::parse("np.yaml", &policy(port)).unwrap().0).unwrap();
        }
        // The second apply replaced the first.
        assert_eq!(cluster.policies().len(), 1);
        assert_eq!(format!("{:?}", cluster.policies()[0].ingress).matches("3001").count(), 1);
        // A service applied again is edited in place: same ClusterIP, new port, new endpoints.
        let edited = "apiVersion: v1\nkind: Service\nmetadata: {name: frontend}\nspec:\n  selector: {name: frontend}\n  ports: [{port: 80, targetPort: http}]\n";
        cluster.apply(manifest::parse("svc.yaml", edited).unwrap().0).unwrap();
        assert_eq!((cluster.services().len(), cluster.services()[0].cluster_ip), (1, ip));
        assert_eq!(cluster.services()[0].service.ports[0].port, 80);
        assert_eq!(cluster.services()[0].backends[0].len(), 3);
        let moved = "apiVersion: v1\nkind: Service\nmetadata: {name: frontend}\nspec:\n  clusterIP: 10.96.9.9\n  selector: {name: frontend}\n  ports: [{port: 80}]\n";
        let errors = cluster.apply(manifest::parse("svc.yaml", moved).unwrap().0).unwrap_err();
        assert!(errors[0].message.contains("immutable"), "{errors:?}");
        cluster.delete_policy("default", "web").unwrap();
        assert!(cluster.policies().is_empty());
        assert_eq!(cluster.delete_policy("default", "web"), Err("no NetworkPolicy default/web".into()));
    }
}
