//! The scheduler: places pods on hosts, deterministically, spreading them out.
//!
//! A pod goes to the least-loaded host with room; among equally loaded hosts, to the first in a
//! fixed order that steps through the hosts with a stride coprime with their number (37 when it
//! can), so that consecutive pods land on different racks rather than filling one leaf pair
//! first. Pods pinned with `spec.nodeName` go where they are told, if there is room.

use std::collections::BTreeSet;

/// Why a pod could not be placed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Every host is at its pod limit.
    #[error("every host runs its maximum of {0} pods")]
    Full(u32),
    /// The pinned host is at its pod limit.
    #[error("host-{host} already runs its maximum of {limit} pods")]
    HostFull {
        /// The host.
        host: u32,
        /// The limit.
        limit: u32,
    },
}

/// Pod placement state.
#[derive(Clone, Debug)]
pub struct Scheduler {
    pods_max: u32,
    load: Vec<u32>,
    rank: Vec<u32>,
    /// (load, rank, host) of every schedulable host with room.
    candidates: BTreeSet<(u32, u32, u32)>,
    /// Hosts no new pod goes to.
    cordoned: BTreeSet<u32>,
}

impl Scheduler {
    /// A scheduler for `hosts` hosts of at most `pods_max` pods each.
    pub fn new(hosts: u32, pods_max: u32) -> Self {
        let stride = spread_stride(hosts);
        let mut rank = vec![0; hosts as usize];
        for step in 0..hosts {
            let host = (u64::from(step) * u64::from(stride) % u64::from(hosts.max(1))) as usize;
            rank[host] = step;
        }
        let candidates = if pods_max == 0 {
            BTreeSet::new()
        } else {
            (0..hosts).map(|h| (0, rank[h as usize], h)).collect()
        };
        Scheduler { pods_max, load: vec![0; hosts as usize], rank, candidates, cordoned: BTreeSet::new() }
    }

    /// Marks `host` unschedulable (as `kubectl cordon`): no new pod goes there.
    pub fn cordon(&mut self, host: u32) {
        self.cordoned.insert(host);
        let load = self.load[host as usize];
        self.candidates.remove(&(load, self.rank[host as usize], host));
    }

    /// Places a pod: returns its host.
    pub fn place(&mut self) -> Result<u32, ScheduleError> {
        let &(_, _, host) = self.candidates.first().ok_or(ScheduleError::Full(self.pods_max))?;
        self.add(host);
        Ok(host)
    }

    /// Places a pod on `host` (the caller checked the host exists).
    pub fn pin(&mut self, host: u32) -> Result<(), ScheduleError> {
        if self.load[host as usize] >= self.pods_max {
            return Err(ScheduleError::HostFull { host, limit: self.pods_max });
        }
        self.add(host);
        Ok(())
    }

    /// A pod on `host` is gone.
    pub fn remove(&mut self, host: u32) {
        let load = self.load[host as usize];
        debug_assert!(load > 0, "removing a pod from an empty host");
        let rank = self.rank[host as usize];
        self.candidates.remove(&(load, rank, host));
        self.load[host as usize] = load - 1;
        if !self.cordoned.contains(&host) {
            self.candidates.insert((load - 1, rank, host));
        }
    }

    /// Pods on `host`.
    pub fn load(&self, host: u32) -> u32 {
        self.load[host as usize]
    }

    fn add(&mut self, host: u32) {
        let load = self.load[host as usize];
        let rank = self.rank[host as usize];
        self.candidates.remove(&(load, rank, host));
        self.load[host as usize] = load + 1;
        if load + 1 < self.pods_max && !self.cordoned.contains(&host) {
            self.candidates.insert((load + 1, rank, host));
        }
    }
}

/// 37, or the next number coprime with `hosts`.
fn spread_stride(hosts: u32) -> u32 {
    if hosts <= 1 {
        return 1;
    }
    let gcd = |mut a: u32, mut b: u32| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    let mut stride = 37 % hosts;
    while stride == 0 || gcd(stride, hosts) != 1 {
        stride += 1;
    }
    stride
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_before_stacking_and_respects_limits() {
        let mut scheduler = Scheduler::new(100, 2);
        let first: Vec<u32> = (0..5).map(|_| scheduler.place().unwrap()).collect();
        assert_eq!(first, [0, 37, 74, 11, 48]);
        for _ in 5..200 {
            scheduler.place().unwrap();
        }
        assert!((0..100).all(|h| scheduler.load(h) == 2));
        assert_eq!(scheduler.place(), Err(ScheduleError::Full(2)));
        assert_eq!(scheduler.pin(5), Err(ScheduleError::HostFull { host: 5, limit: 2 }));
        scheduler.remove(5);
        assert_eq!(scheduler.place(), Ok(5));
    }

    #[test]
    fn cordoned_hosts_get_no_new_pods() {
        let mut scheduler = Scheduler::new(3, 10);
        scheduler.cordon(1);
        let placed: Vec<u32> = (0..6).map(|_| scheduler.place().unwrap()).collect();
        assert!(!placed.contains(&1), "{placed:?}");
        assert_eq!(scheduler.load(0) + scheduler.load(2), 6);
    }

    #[test]
    fn every_host_is_reached_for_any_count() {
        for hosts in 1..80 {
            let mut scheduler = Scheduler::new(hosts, 1);
            let mut placed: Vec<u32> = (0..hosts).map(|_| scheduler.place().unwrap()).collect();
            placed.sort();
            assert_eq!(placed, (0..hosts).collect::<Vec<_>>(), "{hosts} hosts");
        }
    }
}
