//! Known bugs a test can plant in the data and control planes, to prove that the conformance
//! checks catch real faults with the right diagnosis. All off by default; scenario files cannot
//! set them — only code (tests) can.

/// Which bugs to plant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlantedBugs {
    /// The overlay's ECMP hash over a service's backends ignores ports: every flow between two
    /// addresses lands on one backend (the `ecmp` check must fail).
    pub ecmp_ignores_ports: bool,
    /// Service NAT forgets the reverse translation: replies come back from the backend's own
    /// address and port (the `nat` check must fail).
    pub nat_forgets_reverse: bool,
    /// Calico programs a new pod's route before its policy, one propagation delay later (the
    /// `isolation` check must fail when forbidden traffic reaches the new pod meanwhile).
    pub policy_after_route: bool,
    /// kube-proxy never removes a deleted backend from a service (the `nat` check must fail).
    pub stale_backends: bool,
    /// Calico tracks a connection before judging it, so a denied connection's later packets
    /// pass as established (the `isolation` check must fail).
    pub conntrack_before_policy: bool,
    /// The overlay vrouter skips policy on what it takes for a reverse flow: a new flow whose
    /// addresses and protocol are those of an existing flow the other way round (ports not
    /// compared) is installed as that flow's reverse, unjudged — so a server may open
    /// connections to a client that may only call it (the `isolation` check must fail).
    pub reverse_flow_skips_policy: bool,
    /// The overlay's ECMP over a service's backends hashes modulo the member count, and a changed
    /// route flushes all its flows: on a change of backends every flow is hashed again and most
    /// move, not only those of removed backends (the `ecmp` check's disruption must fail).
    pub ecmp_rehashes_on_change: bool,
}
