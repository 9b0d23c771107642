//! `netsim-vrouter`: the per-host forwarding planes, as sans-IO libraries.
//!
//! This crate will hold both data planes the simulator compares, each behind one trait the
//! simulator drives (`handle_packet(now, port, bytes)`, `handle_timeout(now)`,
//! `handle_command(now, cmd)`; `poll_transmit()`, `poll_event()`, `poll_timeout()`):
//!
//! - the **overlay** data plane after OpenContrail's vrouter: a VRF (private forwarding table)
//!   per virtual network, MPLS over UDP (also MPLS over GRE and VXLAN) between hosts, ECMP over
//!   the backends of a service's floating IP, flow pairs with destination NAT, ACL policy;
//! - the **Calico** data plane: a Linux-like routing table per host with per-node address
//!   blocks, per-endpoint policy chains with connection tracking, kube-proxy-style service NAT.
//!
//! Like the fabric, it never reads a clock, spawns a thread or touches a file: it takes bytes
//! and the current time and returns bytes, drops with reasons, and counters — so it could run
//! behind a real interface unchanged.
//!
//! **Status:** not yet implemented; the overlay and Calico issues fill it.
