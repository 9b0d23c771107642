//! `netsim-control`: the control plane, as sans-IO state machines.
//!
//! It holds the Kubernetes side and the logic that turns it into forwarding state:
//!
//! - [`k8s`]: the Kubernetes object model (namespaces, pods, deployments and replication
//!   controllers, services, NetworkPolicy), and [`k8s::manifest`], loading real multi-document
//!   YAML manifests with errors that name file, document and field;
//! - [`netpol`]: a reference evaluator of NetworkPolicy, written from the Kubernetes
//!   documentation and independent of both data planes: the oracle they are judged against;
//! - [`labels`]: the seeds' `name`/`uses` isolation model and its reference evaluator;
//! - [`cluster`]: the cluster's state: pods stamped out of workloads, scheduled on hosts
//!   ([`scheduler`]), given addresses ([`ipam`]), and services with their endpoints;
//! - [`network_manager`]: the OpenContrail network manager, turning the cluster into every
//!   host's vrouter programming, in the seeds' label model or under NetworkPolicy, compiled into
//!   per-pod ACLs by [`overlay_policy`];
//! - [`felix`]: Calico's per-host programming: NetworkPolicy compiled into IP sets, policy
//!   chains and endpoint lists, and kube-proxy's service table;
//! - [`bgp`]: a BGP speaker (Calico's BIRD): full mesh or route reflection, real messages over a
//!   minimal TCP, with timers.
//!
//! The control nodes that carry the network manager's updates to the agents over the fabric, the
//! BGP sessions' frames, and churn live in the simulator (`netsim::control_channel`,
//! `netsim::runner`), which owns time.
//!
//! **Architecture invariant:** nothing here reads a clock, a file or the network. Manifests
//! arrive as text; the simulator reads the files.

pub mod bgp;
pub mod cluster;
pub mod felix;
pub mod ipam;
pub mod k8s;
pub mod labels;
pub mod netpol;
pub mod network_manager;
pub mod overlay_policy;
pub mod scheduler;
