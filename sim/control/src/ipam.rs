//! IP address management: pod addresses from the cluster's pod CIDR, and service addresses
//! from the service CIDR.
//!
//! Two modes, one per data plane family:
//! - [`IpamMode::ClusterWide`] (the overlay): any pod may get any address of the pod CIDR; the
//!   overlay carries the pod's location separately. Addresses are handed out in order.
//! - [`IpamMode::HostBlocks`] (Calico): the CIDR is cut into blocks (default /26); a host claims
//!   a block when it needs one and gives its pods addresses from its own blocks, so that the
//!   routes between hosts are one per block rather than one per pod.
//!
//! Every allocation is deterministic: the same requests in the same order get the same
//! addresses. Addresses pinned by the user (`status.podIP`) are reserved first; a pinned address
//! inside another host's block is "borrowed" and needs its own host route, as in Calico.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// How pod addresses are organised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpamMode {
    /// Any address for any pod.
    ClusterWide,
    /// Per-host blocks of this prefix length.
    HostBlocks {
        /// Prefix length of each block (Calico's default: 26).
        prefix_len: u8,
    },
}

/// Why an address could not be had.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    /// No address (or block) is left.
    #[error("no address left in {0}")]
    Exhausted(Ipv4Net),
    /// The requested address is outside the range.
    #[error("{address} is outside {range}")]
    OutOfRange {
        /// The address.
        address: Ipv4Addr,
        /// The range it should be in.
        range: Ipv4Net,
    },
    /// The requested address is taken.
    #[error("{0} is already in use")]
    InUse(Ipv4Addr),
}

/// A sequential allocator over one CIDR, skipping its first `reserved` addresses and its last.
#[derive(Clone, Debug)]
pub struct AddressPool {
    range: Ipv4Net,
    first: u32,
    last: u32,
    cursor: u32,
    used: BTreeSet<u32>,
}

impl AddressPool {
    /// A pool over `range`, the first `reserved` addresses and the broadcast address excluded.
    pub fn new(range: Ipv4Net, reserved: u32) -> Self {
        let network = u32::from(range.network());
        let broadcast = u32::from(range.broadcast());
        let first = network.saturating_add(reserved).min(broadcast);
        let last = if range.prefix_len() >= 31 { broadcast } else { broadcast - 1 };
        AddressPool { range, first, last, cursor: first, used: BTreeSet::new() }
    }

    /// The range the pool serves.
    pub fn range(&self) -> Ipv4Net {
        self.range
    }

    /// Reserves a specific address.
    pub fn reserve(&mut self, address: Ipv4Addr) -> Result<(), IpamError> {
        let value = u32::from(address);
        if !(self.first..=self.last).contains(&value) {
            return Err(IpamError::OutOfRange { address, range: self.range });
        }
        if !self.used.insert(value) {
            return Err(IpamError::InUse(address));
        }
        Ok(())
    }

    /// The next free address after the last one handed out, wrapping around.
    pub fn allocate(&mut self) -> Result<Ipv4Addr, IpamError> {
        let size = u64::from(self.last) - u64::from(self.first) + 1;
        if self.first > self.last || self.used.len() as u64 >= size {
            return Err(IpamError::Exhausted(self.range));
        }
        loop {
            let candidate = self.cursor;
            self.cursor = if self.cursor >= self.last { self.first } else { self.cursor + 1 };
            if self.used.insert(candidate) {
                return Ok(Ipv4Addr::from(candidate));
            }
        }
    }

    /// Returns an address to the pool.
    pub fn release(&mut self, address: Ipv4Addr) {
        self.used.remove(&u32::from(address));
    }

    /// Whether the address is handed out.
    pub fn is_used(&self, address: Ipv4Addr) -> bool {
        self.used.contains(&u32::from(address))
    }
}

/// Pod address management for a cluster.
#[derive(Clone, Debug)]
pub struct PodIpam {
    mode: IpamMode,
    pool: AddressPool,
    /// Blocks claimed by each host, in claim order (host blocks mode).
    blocks: BTreeMap<u32, Vec<Ipv4Net>>,
    /// The next block to claim, as an index into the pool's blocks.
    next_block: u64,
}

impl PodIpam {
    /// IPAM over `pod_cidr` in `mode`. The network address and the first address (the
    /// overlay's gateway) are never handed out.
    pub fn new(pod_cidr: Ipv4Net, mode: IpamMode) -> Self {
        PodIpam { mode, pool: AddressPool::new(pod_cidr, 2), blocks: BTreeMap::new(), next_block: 0 }
    }

    /// The mode.
    pub fn mode(&self) -> IpamMode {
        self.mode
    }

    /// The blocks host `host` has claimed (empty in cluster-wide mode).
    pub fn blocks(&self, host: u32) -> &[Ipv4Net] {
        self.blocks.get(&host).map_or(&[], Vec::as_slice)
    }

    /// Every host's blocks, by host.
    pub fn all_blocks(&self) -> &BTreeMap<u32, Vec<Ipv4Net>> {
        &self.blocks
    }

    /// Reserves a pinned address for a pod on `host`. Returns whether it is borrowed: outside
    /// every block of `host` (host blocks mode only), so it needs its own route.
    pub fn reserve(&mut self, host: u32, address: Ipv4Addr) -> Result<bool, IpamError> {
        self.pool.reserve(address)?;
        Ok(match self.mode {
            IpamMode::ClusterWide => false,
            IpamMode::HostBlocks { .. } => !self.blocks(host).iter().any(|b| b.contains(&address)),
        })
    }

    /// An address for a new pod on `host`.
    pub fn allocate(&mut self, host: u32) -> Result<Ipv4Addr, IpamError> {
        let IpamMode::HostBlocks { prefix_len } = self.mode else {
            return self.pool.allocate();
        };
        for block in self.blocks(host).to_vec() {
            if let Some(address) = block_addresses(block).find(|a| self.pool.reserve(*a).is_ok()) {
                return Ok(address);
            }
        }
        // Claim the next block with a free address.
        let range = self.pool.range();
        let prefix_len = prefix_len.max(range.prefix_len());
        let count = 1u64 << (prefix_len - range.prefix_len());
        while self.next_block < count {
            let start = u32::from(range.network()) + (self.next_block << (32 - prefix_len)) as u32;
            self.next_block += 1;
            // The prefix length is validated by construction (at most 32, at least the range's).
            let block = Ipv4Net::new(Ipv4Addr::from(start), prefix_len).expect("a valid prefix length");
            self.blocks.entry(host).or_default().push(block);
            if let Some(address) = block_addresses(block).find(|a| self.pool.reserve(*a).is_ok()) {
                return Ok(address);
            }
        }
        Err(IpamError::Exhausted(range))
    }

    /// Returns a pod's address.
    pub fn release(&mut self, address: Ipv4Addr) {
        self.pool.release(address);
    }
}

/// Every address of a block (blocks are not subnets: their first and last are usable, the
/// pool's own reserved addresses being refused by the pool).
fn block_addresses(block: Ipv4Net) -> impl Iterator<Item = Ipv4Addr> {
    let start = u32::from(block.network());
    let end = u32::from(block.broadcast());
    (start..=end).map(Ipv4Addr::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Ipv4Net {
        text.parse().expect("valid CIDR")
    }

    #[test]
    fn cluster_wide_hands_out_addresses_in_order_skipping_reserved() {
        let mut ipam = PodIpam::new(net("10.0.0.0/16"), IpamMode::ClusterWide);
        assert_eq!(ipam.reserve(0, "10.0.0.3".parse().unwrap()), Ok(false));
        let got: Vec<Ipv4Addr> = (0..3).map(|h| ipam.allocate(h).unwrap()).collect();
        assert_eq!(got, ["10.0.0.2", "10.0.0.4", "10.0.0.5"].map(|a| a.parse::<Ipv4Addr>().unwrap()));
        assert_eq!(
            ipam.reserve(0, "10.0.0.4".parse().unwrap()),
            Err(IpamError::InUse("10.0.0.4".parse().unwrap()))
        );
        assert!(matches!(ipam.reserve(0, "10.1.0.4".parse().unwrap()), Err(IpamError::OutOfRange { .. })));
        assert!(matches!(ipam.reserve(0, "10.0.0.1".parse().unwrap()), Err(IpamError::OutOfRange { .. })));
    }

    #[test]
    fn small_pools_run_out_cleanly() {
        let mut pool = AddressPool::new(net("10.0.0.0/29"), 2);
        // .2 to .6: five addresses.
        let got: Vec<_> = std::iter::from_fn(|| pool.allocate().ok()).collect();
        assert_eq!(got.len(), 5);
        assert_eq!(pool.allocate(), Err(IpamError::Exhausted(net("10.0.0.0/29"))));
        pool.release(got[2]);
        assert_eq!(pool.allocate(), Ok(got[2]));
    }

    #[test]
    fn host_blocks_give_each_host_its_own_block() {
        let mut ipam = PodIpam::new(net("10.0.0.0/16"), IpamMode::HostBlocks { prefix_len: 26 });
        let a0 = ipam.allocate(0).unwrap();
        let b0 = ipam.allocate(1).unwrap();
        let a1 = ipam.allocate(0).unwrap();
        assert_eq!(ipam.blocks(0), [net("10.0.0.0/26")]);
        assert_eq!(ipam.blocks(1), [net("10.0.0.64/26")]);
        assert!(net("10.0.0.0/26").contains(&a0) && net("10.0.0.0/26").contains(&a1));
        assert_eq!(b0, "10.0.0.64".parse::<Ipv4Addr>().unwrap());
        // The pool's reserved addresses are skipped inside the first block.
        assert_eq!(a0, "10.0.0.2".parse::<Ipv4Addr>().unwrap());
        // Filling host 0's block claims a second one.
        for _ in 0..61 {
            ipam.allocate(0).unwrap();
        }
        assert_eq!(ipam.blocks(0), [net("10.0.0.0/26"), net("10.0.0.128/26")]);
        // A pinned address in host 1's block is borrowed when reserved for host 0.
        assert_eq!(ipam.reserve(0, "10.0.0.70".parse().unwrap()), Ok(true));
        assert_eq!(ipam.reserve(1, "10.0.0.71".parse().unwrap()), Ok(false));
    }
}
