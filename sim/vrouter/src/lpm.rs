//! A longest-prefix-match route table, as a VRF or a host routing table needs.
//!
//! Prefixes are kept in one ordered map per prefix length, searched from the longest populated
//! length down: at most 33 map lookups, usually a handful. Lookups happen at flow setup, not per
//! packet, so clarity wins over a compressed trie. Iteration is ordered (by length, then
//! address): anything derived from it is deterministic.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// Routes from IPv4 prefixes to values of type `T`.
#[derive(Clone, Debug)]
pub struct RouteTable<T> {
    by_length: Vec<BTreeMap<u32, T>>,
    /// Populated prefix lengths, longest first.
    lengths: Vec<u8>,
    len: usize,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        RouteTable { by_length: (0..=32).map(|_| BTreeMap::new()).collect(), lengths: Vec::new(), len: 0 }
    }
}

impl<T> RouteTable<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces the route for `prefix` (host bits are ignored); returns the old value.
    pub fn insert(&mut self, prefix: Ipv4Net, value: T) -> Option<T> {
        let prefix = prefix.trunc();
        let length = prefix.prefix_len();
        let old = self.by_length[usize::from(length)].insert(u32::from(prefix.network()), value);
        if old.is_none() {
            self.len += 1;
            if let Err(at) = self.lengths.binary_search_by(|l| length.cmp(l)) {
                self.lengths.insert(at, length);
            }
        }
        old
    }

    /// Removes the route for exactly `prefix`.
    pub fn remove(&mut self, prefix: Ipv4Net) -> Option<T> {
        let prefix = prefix.trunc();
        let length = prefix.prefix_len();
        let map = &mut self.by_length[usize::from(length)];
        let old = map.remove(&u32::from(prefix.network()));
        if old.is_some() {
            self.len -= 1;
            if map.is_empty() {
                self.lengths.retain(|&l| l != length);
            }
        }
        old
    }

    /// The route for exactly `prefix`.
    pub fn get(&self, prefix: Ipv4Net) -> Option<&T> {
        let prefix = prefix.trunc();
        self.by_length[usize::from(prefix.prefix_len())].get(&u32::from(prefix.network()))
    }

    /// The most specific route covering `address`.
    pub fn lookup(&self, address: Ipv4Addr) -> Option<(Ipv4Net, &T)> {
        let address = u32::from(address);
        for &length in &self.lengths {
            let mask = if length == 0 { 0 } else { u32::MAX << (32 - length) };
            if let Some(value) = self.by_length[usize::from(length)].get(&(address & mask)) {
                // `length` is at most 32 by construction.
                let prefix =
                    Ipv4Net::new(Ipv4Addr::from(address & mask), length).expect("a valid prefix length");
                return Some((prefix, value));
            }
        }
        None
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every route, shortest prefixes first, then by address.
    pub fn iter(&self) -> impl Iterator<Item = (Ipv4Net, &T)> {
        self.by_length.iter().enumerate().flat_map(|(length, map)| {
            map.iter().map(move |(&network, value)| {
                (Ipv4Net::new(Ipv4Addr::from(network), length as u8).expect("a valid prefix length"), value)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(text: &str) -> Ipv4Net {
        text.parse().expect("valid")
    }

    #[test]
    fn the_most_specific_route_wins() {
        let mut table = RouteTable::new();
        table.insert(net("0.0.0.0/0"), "default");
        table.insert(net("10.0.0.0/16"), "pods");
        table.insert(net("10.0.3.4/32"), "one pod");
        fn at(table: &RouteTable<&'static str>, a: &str) -> Option<(String, &'static str)> {
            table.lookup(a.parse().unwrap()).map(|(p, v)| (p.to_string(), *v))
        }
        assert_eq!(at(&table, "10.0.3.4"), Some(("10.0.3.4/32".into(), "one pod")));
        assert_eq!(at(&table, "10.0.3.5"), Some(("10.0.0.0/16".into(), "pods")));
        assert_eq!(at(&table, "192.0.2.1"), Some(("0.0.0.0/0".into(), "default")));
        assert_eq!(table.remove(net("0.0.0.0/0")), Some("default"));
        assert_eq!(at(&table, "192.0.2.1"), None);
        assert_eq!(table.len(), 2);
    }

    proptest! {
        /// Agrees with a naive reference (scan everything, keep the longest match) under random
        /// inserts and removals.
        #[test]
        fn agrees_with_a_linear_scan(
            ops in prop::collection::vec((any::<u32>(), 0u8..=32, any::<bool>(), 0u8..4), 1..60),
            probes in prop::collection::vec(any::<u32>(), 1..40),
        ) {
            let mut table = RouteTable::new();
            let mut reference: Vec<(Ipv4Net, u32)> = Vec::new();
            for (index, (address, length, remove, spread)) in ops.into_iter().enumerate() {
                // Cluster addresses so that prefixes overlap often.
                let address = address & (0xff00_0000 | (u32::from(spread) << 16) | 0xffff);
                let prefix = Ipv4Net::new(Ipv4Addr::from(address), length).unwrap().trunc();
                reference.retain(|(p, _)| *p != prefix);
                if remove {
                    table.remove(prefix);
                } else {
                    table.insert(prefix, index as u32);
                    reference.push((prefix, index as u32));
                }
            }
            prop_assert_eq!(table.len(), reference.len());
            for probe in probes {
                let address = Ipv4Addr::from(probe);
                let expected = reference
                    .iter()
                    .filter(|(p, _)| p.contains(&address))
                    .max_by_key(|(p, _)| p.prefix_len())
                    .map(|(p, v)| (*p, *v));
                prop_assert_eq!(table.lookup(address).map(|(p, v)| (p, *v)), expected);
            }
        }
    }
}
