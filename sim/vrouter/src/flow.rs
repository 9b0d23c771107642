//! The flow table: the first packet of a flow is judged (route, policy, ECMP, NAT) and the
//! outcome is stored, with the reply direction's entry, as a flow pair; later packets of either
//! direction only look their entry up.
//!
//! The table is bounded: when it is full, new flows are dropped (`flow_table_full`) and existing
//! ones keep working. Idle pairs age out: a pair is removed when neither half has seen a packet
//! for the idle timeout.
//!
//! The table is generic in what an entry decides: the overlay stores a whole [`FlowAction`];
//! Calico's connection tracking stores only the NAT of a connection.

#[allow(clippy::disallowed_types)] // lookups only, never iterated: see `FlowTable::index`
use std::collections::HashMap;
use std::net::Ipv4Addr;

use netsim_core::{FiveTuple, SimDuration, SimTime};
use rustc_hash::FxBuildHasher;

use crate::nexthop::Tunnel;
use crate::{DropReason, InterfaceId, VrfId};

/// What identifies a flow at one vrouter: the VRF it is looked up in and its 5-tuple as it
/// arrives there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// The VRF.
    pub vrf: VrfId,
    /// The packet's 5-tuple.
    pub tuple: FiveTuple,
}

/// Where a flow's packets leave this vrouter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Egress {
    /// To a local pod interface.
    Interface(InterfaceId),
    /// Into a tunnel.
    Tunnel(Tunnel),
    /// To the host's own stack.
    Host,
}

/// An address and port rewrite (NAT).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// New source address and port.
    pub src: Option<(Ipv4Addr, u16)>,
    /// New destination address and port.
    pub dst: Option<(Ipv4Addr, u16)>,
}

impl std::fmt::Display for Rewrite {
    /// `rewrite source -> A:P, destination -> B:Q`, for traces.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some((ip, port)) = self.src {
            parts.push(format!("source -> {ip}:{port}"));
        }
        if let Some((ip, port)) = self.dst {
            parts.push(format!("destination -> {ip}:{port}"));
        }
        write!(f, "rewrite {}", parts.join(", "))
    }
}

/// What a flow's packets get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowAction {
    /// Forwarded.
    Forward {
        /// Where to.
        egress: Egress,
        /// NAT applied first, if any.
        rewrite: Option<Rewrite>,
        /// Whether the vrouter routes the packet (decrementing its TTL) or only delivers it
        /// after a tunnel.
        routed: bool,
    },
    /// Dropped.
    Drop(DropReason),
}

/// One direction of a flow pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowEntry<A = FlowAction> {
    /// Its key.
    pub key: FlowKey,
    /// Its action.
    pub action: A,
    /// The other half of the pair.
    pub reverse: Option<u32>,
    /// When it was created.
    pub created: SimTime,
    /// When it last saw a packet.
    pub last_used: SimTime,
    /// Packets that hit it.
    pub packets: u64,
    /// ECMP decision at setup: (members, chosen index), when there was a choice.
    pub ecmp: Option<(u16, u16)>,
}

/// The table is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableFull;

/// The flow table.
#[derive(Clone, Debug)]
pub struct FlowTable<A = FlowAction> {
    // A hash map for lookups only; it is never iterated, so its order cannot leak into results.
    #[allow(clippy::disallowed_types)]
    index: HashMap<FlowKey, u32, FxBuildHasher>,
    entries: Vec<Option<FlowEntry<A>>>,
    free: Vec<u32>,
    max: usize,
}

impl<A> FlowTable<A> {
    /// An empty table for at most `max` entries (each half of a pair is one entry).
    pub fn new(max: usize) -> Self {
        #[allow(clippy::disallowed_types)]
        let index = HashMap::with_hasher(FxBuildHasher);
        FlowTable { index, entries: Vec::new(), free: Vec::new(), max }
    }

    /// Entries in use.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The bound.
    pub fn capacity(&self) -> usize {
        self.max
    }

    /// The entry for `key`, marked as used at `now`.
    #[inline]
    pub fn hit(&mut self, key: &FlowKey, now: SimTime) -> Option<&FlowEntry<A>> {
        let &slot = self.index.get(key)?;
        // Every indexed slot holds an entry.
        let entry = self.entries[slot as usize].as_mut().expect("indexed flow slot is filled");
        entry.last_used = now;
        entry.packets += 1;
        Some(entry)
    }

    /// The entry for `key`, without touching it.
    pub fn get(&self, key: &FlowKey) -> Option<&FlowEntry<A>> {
        self.index.get(key).and_then(|&slot| self.entries[slot as usize].as_ref())
    }

    /// Whether [`FlowTable::insert_pair`] would find room for a pair with these keys.
    pub fn fits_pair(&self, forward: &FlowKey, reverse: Option<&FlowKey>) -> bool {
        let mut needed = usize::from(!self.index.contains_key(forward));
        if let Some(reverse) = reverse {
            needed += usize::from(!self.index.contains_key(reverse) && reverse != forward);
        }
        self.index.len() + needed <= self.max
    }

    /// Adds a flow and, if given, its reverse as a pair. Fails, adding nothing, if the table
    /// lacks room for all of it. An existing entry with the same key is replaced.
    pub fn insert_pair(
        &mut self,
        forward: FlowEntry<A>,
        reverse: Option<FlowEntry<A>>,
    ) -> Result<(), TableFull> {
        if !self.fits_pair(&forward.key, reverse.as_ref().map(|r| &r.key)) {
            return Err(TableFull);
        }
        let forward_slot = self.put(forward);
        if let Some(reverse) = reverse {
            let reverse_slot = self.put(reverse);
            if reverse_slot != forward_slot {
                self.entries[forward_slot as usize].as_mut().expect("just put").reverse = Some(reverse_slot);
                self.entries[reverse_slot as usize].as_mut().expect("just put").reverse = Some(forward_slot);
            }
        }
        Ok(())
    }

    fn put(&mut self, entry: FlowEntry<A>) -> u32 {
        if let Some(&slot) = self.index.get(&entry.key) {
            self.unlink(slot);
            self.entries[slot as usize] = Some(entry);
            return slot;
        }
        let key = entry.key;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.entries[slot as usize] = Some(entry);
                slot
            }
            None => {
                self.entries.push(Some(entry));
                (self.entries.len() - 1) as u32
            }
        };
        self.index.insert(key, slot);
        slot
    }

    /// Detaches the entry in `slot` from its pair (the partner stays, unpaired).
    fn unlink(&mut self, slot: u32) {
        if let Some(partner) = self.entries[slot as usize].as_ref().and_then(|e| e.reverse)
            && let Some(partner) = self.entries[partner as usize].as_mut()
        {
            partner.reverse = None;
        }
    }

    fn remove_slot(&mut self, slot: u32) {
        if let Some(entry) = self.entries[slot as usize].take() {
            self.index.remove(&entry.key);
            self.free.push(slot);
        }
    }

    /// Removes the entry for `key` and its partner.
    pub fn remove_pair(&mut self, key: &FlowKey) {
        let Some(&slot) = self.index.get(key) else { return };
        if let Some(partner) = self.entries[slot as usize].as_ref().and_then(|e| e.reverse) {
            self.remove_slot(partner);
        }
        self.remove_slot(slot);
    }

    /// Removes pairs (and lone entries) idle for longer than `idle`; returns how many entries
    /// went. Visits slots in order: deterministic.
    pub fn expire(&mut self, now: SimTime, idle: SimDuration) -> usize {
        let before = self.index.len();
        for slot in 0..self.entries.len() as u32 {
            let Some(entry) = &self.entries[slot as usize] else { continue };
            let partner_used =
                entry.reverse.and_then(|r| self.entries[r as usize].as_ref()).map(|p| p.last_used);
            let last = partner_used.map_or(entry.last_used, |p| p.max(entry.last_used));
            if now.saturating_since(last) > idle {
                if let Some(partner) = entry.reverse {
                    self.remove_slot(partner);
                }
                self.remove_slot(slot);
            }
        }
        before - self.index.len()
    }

    /// Every entry, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = &FlowEntry<A>> {
        self.entries.iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(port: u16) -> FlowKey {
        FlowKey {
            vrf: VrfId(1),
            tuple: FiveTuple {
                src: Ipv4Addr::new(10, 0, 0, 1),
                dst: Ipv4Addr::new(10, 0, 0, 2),
                protocol: 17,
                src_port: port,
                dst_port: 80,
            },
        }
    }

    fn entry(key: FlowKey, now: u64) -> FlowEntry {
        FlowEntry {
            key,
            action: FlowAction::Drop(DropReason::Policy),
            reverse: None,
            created: SimTime(now),
            last_used: SimTime(now),
            packets: 0,
            ecmp: None,
        }
    }

    #[test]
    fn pairs_age_out_together_and_only_when_both_are_idle() {
        let mut table: FlowTable = FlowTable::new(10);
        table.insert_pair(entry(key(1), 0), Some(entry(key(2), 0))).unwrap();
        table.insert_pair(entry(key(3), 0), Some(entry(key(4), 0))).unwrap();
        // The reply half of the first pair stays busy.
        table.hit(&key(2), SimTime(90));
        assert_eq!(table.expire(SimTime(100), SimDuration(50)), 2);
        assert!(table.get(&key(1)).is_some() && table.get(&key(3)).is_none());
        assert_eq!(
            table.get(&key(1)).unwrap().reverse.map(|r| table.entries[r as usize].as_ref().unwrap().key),
            Some(key(2))
        );
        assert_eq!(table.expire(SimTime(200), SimDuration(50)), 2);
        assert!(table.is_empty());
    }

    #[test]
    fn a_full_table_refuses_whole_pairs() {
        let mut table: FlowTable = FlowTable::new(3);
        table.insert_pair(entry(key(1), 0), Some(entry(key(2), 0))).unwrap();
        assert_eq!(table.insert_pair(entry(key(3), 0), Some(entry(key(4), 0))), Err(TableFull));
        assert_eq!(table.len(), 2);
        table.insert_pair(entry(key(3), 0), None).unwrap();
        assert_eq!(table.len(), 3);
    }

    proptest! {
        /// Under random inserts, hits and expiries the table never exceeds its bound, and its
        /// index and slots agree.
        #[test]
        fn never_exceeds_its_bound(max in 1usize..20, ops in prop::collection::vec((0u8..3, 0u16..40, 0u64..1000), 1..200)) {
            let mut table: FlowTable = FlowTable::new(max);
            let mut now = 0;
            for (op, port, step) in ops {
                now += step;
                match op {
                    0 => { let _ = table.insert_pair(entry(key(port), now), Some(entry(key(port + 1000), now))); }
                    1 => { table.hit(&key(port), SimTime(now)); }
                    _ => { table.expire(SimTime(now), SimDuration(500)); }
                }
                prop_assert!(table.len() <= max);
                prop_assert_eq!(table.iter().count(), table.len());
                for entry in table.iter() {
                    if let Some(r) = entry.reverse {
                        let partner = table.entries[r as usize].as_ref().unwrap();
                        prop_assert_eq!(partner.reverse.map(|s| table.entries[s as usize].as_ref().unwrap().key), Some(entry.key));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod memory {
    use super::*;

    /// Bytes one flow costs a table: its slot, its index entry (key, slot, hashbrown's control
    /// byte) at the index's worst load (7/8 full), and a free-list entry once it goes.
    fn bytes_per_flow<A>() -> usize {
        let slot = std::mem::size_of::<Option<FlowEntry<A>>>();
        let index = (std::mem::size_of::<(FlowKey, u32)>() + 1) * 8 / 7;
        slot + index + std::mem::size_of::<u32>()
    }

    /// The book's performance chapter states these figures; a field added to a flow entry
    /// shows up here first.
    #[test]
    fn memory_per_flow_is_bounded() {
        let overlay = bytes_per_flow::<FlowAction>();
        let calico = bytes_per_flow::<Option<Rewrite>>();
        println!("bytes per flow: overlay {overlay}, calico conntrack {calico}");
        assert!(overlay <= 128, "overlay flow entry grew to {overlay} bytes");
        assert!(calico <= 112, "conntrack entry grew to {calico} bytes");
    }
}
