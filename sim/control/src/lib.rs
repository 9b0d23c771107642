//! `netsim-control`: the control plane, as sans-IO state machines.
//!
//! This crate will hold the Kubernetes side and the network managers that turn it into
//! forwarding state:
//!
//! - the Kubernetes object model (namespaces, pods, deployments, services and endpoints,
//!   NetworkPolicy), loaded from real YAML manifests, with a scheduler and IPAM;
//! - the OpenContrail network manager (a virtual network per `name` label, `uses` labels as
//!   policy, a service's ClusterIP as a floating IP on every backend) and its control nodes,
//!   which push routes to the vrouter agents as messages;
//! - the Calico side: per-node IPAM blocks, BGP route distribution (full mesh or route
//!   reflectors), and felix's compilation of NetworkPolicy into rule chains.
//!
//! Its messages travel as packets over the simulated fabric, so control-plane faults and delays
//! are real. It knows nothing of the fabric's internals and never reads a clock.
//!
//! **Status:** not yet implemented; the control-plane issue fills it.
