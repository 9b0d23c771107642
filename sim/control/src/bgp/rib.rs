//! The speaker's routing information bases, stored prefix by prefix.
//!
//! Every prefix the speaker knows gets a dense [`PrefixId`] (in the order it was first seen,
//! never reused) and one [`Entry`]: the paths received from peers (RFC 4271's Adj-RIBs-In,
//! kept here rather than per peer so that selection finds every candidate in one place), the
//! best path's source and what it is exported as (the Loc-RIB), and the next hops installed.
//! Per-peer state is a bit per prefix (what the peer was sent, what to look at again for it).
//!
//! Memory is what limits a simulation of thousands of speakers, so an entry holds no heap
//! allocation in the common case: a path is 12 bytes (the attributes most routes share, such as
//! AS_PATH and CLUSTER_LIST, are interned per speaker), two paths are inline and more spill into
//! a side table, a single next hop is inline and several (ECMP) go to a side table. Exported
//! attributes are interned too and kept encoded, so that one computation serves every peer.

use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use netsim_core::mix64;

use super::wire::{self, AttributesView, LOCAL_PREF_DEFAULT, Origin, PathAttributes};
use super::{BgpConfig, RouteEvent};

/// A prefix's index in its speaker's [`Rib`].
pub(super) type PrefixId = u32;

/// Values handed out by id with a reference count, and found again by value: equal values share
/// one id. Freed ids are reused, last freed first.
#[derive(Clone, Debug)]
pub(super) struct Interner<K, V> {
    slots: Vec<Option<Slot<K, V>>>,
    index: BTreeMap<K, u32>,
    free: Vec<u32>,
}

#[derive(Clone, Debug)]
struct Slot<K, V> {
    key: K,
    value: V,
    refs: u32,
}

impl<K: Ord + Clone, V> Interner<K, V> {
    fn new() -> Self {
        Interner { slots: Vec::new(), index: BTreeMap::new(), free: Vec::new() }
    }

    /// The id of `key` with one more reference; `value` makes its value if it is new.
    fn intern(&mut self, key: K, value: impl FnOnce(&K) -> V) -> u32 {
        if let Some(&id) = self.index.get(&key) {
            self.retain(id);
            return id;
        }
        let slot = Slot { value: value(&key), key: key.clone(), refs: 1 };
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some(slot);
                id
            }
            None => {
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(key, id);
        id
    }

    fn slot(&self, id: u32) -> &Slot<K, V> {
        // Ids come from `intern` and are used only while referenced.
        self.slots[id as usize].as_ref().expect("a live interned id")
    }

    fn key(&self, id: u32) -> &K {
        &self.slot(id).key
    }

    fn value(&self, id: u32) -> &V {
        &self.slot(id).value
    }

    fn retain(&mut self, id: u32) {
        // Ids come from `intern` and are used only while referenced.
        self.slots[id as usize].as_mut().expect("a live interned id").refs += 1;
    }

    /// Drops a reference; returns the key when it was the last.
    fn release(&mut self, id: u32) -> Option<K> {
        // Ids come from `intern` and are used only while referenced.
        let slot = self.slots[id as usize].as_mut().expect("a live interned id");
        slot.refs -= 1;
        if slot.refs > 0 {
            return None;
        }
        // The reference count just reached zero.
        let slot = self.slots[id as usize].take().expect("a live interned id");
        self.index.remove(&slot.key);
        self.free.push(id);
        Some(slot.key)
    }

    fn live(&self) -> usize {
        self.index.len()
    }
}

/// The attributes of a path that many routes share (all but NEXT_HOP): interned, so a path
/// holds a 4-byte id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Shared {
    pub(super) origin: Origin,
    pub(super) as_path: Box<[u16]>,
    pub(super) local_pref: Option<u32>,
    pub(super) cluster_list: Box<[Ipv4Addr]>,
    /// ORIGINATOR_ID if the path has one, else the peer's BGP identifier (what both the
    /// tie-break and reflection use, RFC 4456 sections 8 and 9), when it is not the NEXT_HOP:
    /// most paths come from the host they lead to, and then share this part.
    pub(super) originator: Option<Ipv4Addr>,
}

impl Shared {
    /// The shared part of `a`, received from a peer whose BGP identifier is `peer_id`.
    pub(super) fn from_view(a: &AttributesView<'_>, peer_id: Ipv4Addr) -> Shared {
        Shared {
            origin: a.origin,
            as_path: a.as_path().collect(),
            local_pref: a.local_pref,
            cluster_list: a.cluster_list().collect(),
            originator: Self::originator_of(a, peer_id),
        }
    }

    fn originator_of(a: &AttributesView<'_>, peer_id: Ipv4Addr) -> Option<Ipv4Addr> {
        Some(a.originator_id.unwrap_or(peer_id)).filter(|&id| id != a.next_hop)
    }

    /// Whether `a`, received from `peer_id`, has these shared attributes.
    pub(super) fn matches(&self, a: &AttributesView<'_>, peer_id: Ipv4Addr) -> bool {
        self.origin == a.origin
            && self.local_pref == a.local_pref
            && self.originator == Self::originator_of(a, peer_id)
            && self.as_path.iter().copied().eq(a.as_path())
            && self.cluster_list.iter().copied().eq(a.cluster_list())
    }
}

/// One path to a prefix, as received from a peer and accepted: 12 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Path {
    /// The peer it came from.
    pub(super) peer: Ipv4Addr,
    /// NEXT_HOP.
    pub(super) next_hop: Ipv4Addr,
    /// The interned [`Shared`] attributes.
    pub(super) shared: u32,
}

const NO_PATH: Path = Path { peer: Ipv4Addr::UNSPECIFIED, next_hop: Ipv4Addr::UNSPECIFIED, shared: u32::MAX };

/// What a prefix is exported as, and to whom: equal keys mean equal attributes on the wire,
/// sent to the same peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ExportKey {
    /// Originated here: this speaker as NEXT_HOP, to every peer.
    Local,
    /// A path reflected (RFC 4456): its shared attributes with this speaker's cluster id
    /// prepended to CLUSTER_LIST, ORIGINATOR_ID set, NEXT_HOP unchanged; to every peer but
    /// `source`, and from a non-client to clients only.
    Reflected { shared: u32, next_hop: Ipv4Addr, source: Ipv4Addr, source_client: bool },
}

/// One prefix: 40 bytes.
#[derive(Clone, Debug)]
pub(super) struct Entry {
    pub(super) prefix: Ipv4Net,
    /// Originated by this speaker.
    pub(super) local: bool,
    /// Waiting in `Rib::dirty` for its best path to be chosen again.
    dirty: bool,
    /// Paths in `paths` (the others are in `Rib::spill`).
    inline: u8,
    /// Installed next hops: 0 none, 1 `hop`, 2 several (in `Rib::ecmp`).
    hops: u8,
    /// The installed next hop, when there is exactly one.
    hop: Ipv4Addr,
    paths: [Path; 2],
}

// The sizes the module documentation states.
const _: () = assert!(std::mem::size_of::<Entry>() == 40 && std::mem::size_of::<Path>() == 12);

/// Entries in chunks: growing never moves one, and wastes at most a chunk.
#[derive(Clone, Debug, Default)]
struct Entries {
    chunks: Vec<Vec<Entry>>,
    len: usize,
}

const CHUNK_SHIFT: usize = 8;
const CHUNK: usize = 1 << CHUNK_SHIFT;

impl Entries {
    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, id: usize) -> Option<&Entry> {
        (id < self.len).then(|| &self[id])
    }

    fn push(&mut self, entry: Entry) {
        if self.len.is_multiple_of(CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        // A chunk was just added if the last one was full.
        self.chunks.last_mut().expect("a chunk with room").push(entry);
        self.len += 1;
    }
}

impl std::ops::Index<usize> for Entries {
    type Output = Entry;

    fn index(&self, id: usize) -> &Entry {
        &self.chunks[id >> CHUNK_SHIFT][id & (CHUNK - 1)]
    }
}

impl std::ops::IndexMut<usize> for Entries {
    fn index_mut(&mut self, id: usize) -> &mut Entry {
        &mut self.chunks[id >> CHUNK_SHIFT][id & (CHUNK - 1)]
    }
}

/// Exported attributes, encoded, for one or more prefixes, and who gets them.
#[derive(Clone, Debug)]
pub(super) struct Export {
    pub(super) encoded: Box<[u8]>,
    /// The peer the route came from (none if local): it does not get it back.
    pub(super) source: Option<Ipv4Addr>,
    /// `source` is a reflector client: the route goes to every peer, not only to clients.
    pub(super) source_client: bool,
}

impl Export {
    /// Whether a peer (`addr`, a reflector client or not) gets this export (RFC 4456
    /// section 6: from a client to all peers, from a non-client to clients, never back).
    pub(super) fn to(&self, addr: Ipv4Addr, client: bool) -> bool {
        match self.source {
            None => true,
            Some(source) => source != addr && (self.source_client || client),
        }
    }
}

/// Prefix ids by prefix: open addressing with linear probing over the entries, 8 bytes a slot
/// (a hash tag and the id), between 60 and 75 % full (it grows by a quarter). Only looked up,
/// never iterated.
#[derive(Clone, Debug, Default)]
struct Index {
    slots: Vec<u64>,
}

const EMPTY: u64 = u64::MAX;

impl Index {
    /// Where a tag (the high half of a key's hash) starts probing: scaled to the table, so no
    /// power of two is needed and growing needs only the tags.
    fn home(&self, tag: u64) -> usize {
        ((tag * self.slots.len() as u64) >> 32) as usize
    }

    fn find(&self, entries: &Entries, key: u64) -> Option<PrefixId> {
        if self.slots.is_empty() {
            return None;
        }
        let tag = mix64(key) >> 32;
        let mut i = self.home(tag);
        loop {
            let slot = self.slots[i];
            if slot == EMPTY {
                return None;
            }
            let id = slot as u32;
            if slot >> 32 == tag && self::key(entries[id as usize].prefix) == key {
                return Some(id);
            }
            i = if i + 1 == self.slots.len() { 0 } else { i + 1 };
        }
    }

    /// Adds the last entry's id.
    fn push(&mut self, entries: &Entries) {
        if entries.len() * 4 > self.slots.len() * 3 {
            let len = self.slots.len() + self.slots.len() / 4 + 16;
            let old = std::mem::replace(&mut self.slots, vec![EMPTY; len]);
            for slot in old.into_iter().filter(|&s| s != EMPTY) {
                self.place(slot);
            }
        }
        let id = (entries.len() - 1) as PrefixId;
        self.place((mix64(key(entries[id as usize].prefix)) >> 32) << 32 | u64::from(id));
    }

    /// Stores a slot (tag and id) at the first free place from its home.
    fn place(&mut self, slot: u64) {
        let mut i = self.home(slot >> 32);
        while self.slots[i] != EMPTY {
            i = if i + 1 == self.slots.len() { 0 } else { i + 1 };
        }
        self.slots[i] = slot;
    }
}

/// The routing information bases. See the [module documentation](self).
#[derive(Clone, Debug)]
pub(super) struct Rib {
    index: Index,
    entries: Entries,
    /// What each prefix is exported as: an id of `exports` plus one, 0 for nothing (and for
    /// prefixes past the end). Apart from the entries because only reflectors export more than
    /// their own prefixes.
    export_of: Vec<u32>,
    /// Paths beyond an entry's two inline ones.
    spill: BTreeMap<PrefixId, Vec<Path>>,
    /// Installed next hops of entries with several.
    ecmp: BTreeMap<PrefixId, Box<[Ipv4Addr]>>,
    shared: Interner<Shared, ()>,
    exports: Interner<ExportKey, Export>,
    dirty: Vec<PrefixId>,
    /// Prefixes whose export changed, in order: every peer reads it from its own position into
    /// its pending prefixes when it is about to write, so a change costs nothing per busy peer.
    journal: Vec<PrefixId>,
    /// The position of `journal[0]` among all changes since the speaker started.
    journal_base: u64,
    /// Scratch space for selection.
    hops_scratch: Vec<Ipv4Addr>,
}

fn key(prefix: Ipv4Net) -> u64 {
    (u64::from(u32::from(prefix.network())) << 8) | u64::from(prefix.prefix_len())
}

/// Ranks a path: lower is better. The first three fields decide multipath equality.
type Rank = ((std::cmp::Reverse<u32>, usize, Origin), Ipv4Addr, usize, Ipv4Addr);

impl Rib {
    pub(super) fn new() -> Rib {
        Rib {
            index: Index::default(),
            entries: Entries::default(),
            export_of: Vec::new(),
            spill: BTreeMap::new(),
            ecmp: BTreeMap::new(),
            shared: Interner::new(),
            exports: Interner::new(),
            dirty: Vec::new(),
            journal: Vec::new(),
            journal_base: 0,
            hops_scratch: Vec::new(),
        }
    }

    /// How many prefix ids exist (every id is below).
    pub(super) fn len(&self) -> u32 {
        self.entries.len() as u32
    }

    /// The id of `prefix`; `hint` is a guess (checked first: a peer's prefixes usually come in
    /// the order another peer's came, so the guess is the id after the previous one).
    pub(super) fn lookup(&self, prefix: Ipv4Net, hint: PrefixId) -> Option<PrefixId> {
        if self.entries.get(hint as usize).is_some_and(|e| e.prefix == prefix) {
            return Some(hint);
        }
        self.index.find(&self.entries, key(prefix))
    }

    /// The id of `prefix`, created if new (`hint` as for [`Rib::lookup`]).
    pub(super) fn id(&mut self, prefix: Ipv4Net, hint: PrefixId) -> PrefixId {
        if let Some(id) = self.lookup(prefix, hint) {
            return id;
        }
        self.entries.push(Entry {
            prefix,
            local: false,
            dirty: false,
            inline: 0,
            hops: 0,
            hop: Ipv4Addr::UNSPECIFIED,
            paths: [NO_PATH; 2],
        });
        self.index.push(&self.entries);
        self.len() - 1
    }

    pub(super) fn entry(&self, id: PrefixId) -> &Entry {
        &self.entries[id as usize]
    }

    /// What a prefix is exported as, if anything: an export id.
    pub(super) fn export_of(&self, id: PrefixId) -> Option<u32> {
        self.export_of.get(id as usize).and_then(|e| e.checked_sub(1))
    }

    /// An export: its encoded attributes and who gets it.
    pub(super) fn export(&self, export: u32) -> &Export {
        self.exports.value(export)
    }

    pub(super) fn mark_dirty(&mut self, id: PrefixId) {
        let entry = &mut self.entries[id as usize];
        if !entry.dirty {
            entry.dirty = true;
            self.dirty.push(id);
        }
    }

    /// Marks every prefix dirty.
    pub(super) fn mark_all_dirty(&mut self) {
        for id in 0..self.len() {
            self.mark_dirty(id);
        }
    }

    pub(super) fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Moves the dirty prefixes into `dirty`, in id order; they stay marked until
    /// [`Rib::select`].
    pub(super) fn take_dirty(&mut self, dirty: &mut Vec<PrefixId>) {
        dirty.clear();
        std::mem::swap(dirty, &mut self.dirty);
        dirty.sort_unstable();
    }

    /// Records that a prefix's export changed.
    pub(super) fn journal_push(&mut self, id: PrefixId) {
        self.journal.push(id);
    }

    /// The position after the last change recorded.
    pub(super) fn journal_end(&self) -> u64 {
        self.journal_base + self.journal.len() as u64
    }

    /// The changes from position `from` on (all that are kept, if it is older).
    pub(super) fn journal_since(&self, from: u64) -> &[PrefixId] {
        let skip = from.saturating_sub(self.journal_base).min(self.journal.len() as u64);
        &self.journal[skip as usize..]
    }

    /// Whether the journal should be emptied: it holds more than twice the prefixes.
    pub(super) fn journal_full(&self) -> bool {
        self.journal.len() > 4096.max(2 * self.entries.len())
    }

    /// Forgets every change recorded (every peer has read them).
    pub(super) fn journal_clear(&mut self) {
        self.journal_base = self.journal_end();
        self.journal.clear();
    }

    /// Marks `prefix` originated here or not; whether that changed anything.
    pub(super) fn set_local(&mut self, prefix: Ipv4Net, local: bool) -> bool {
        let id = match (self.lookup(prefix, 0), local) {
            (Some(id), _) => id,
            (None, true) => self.id(prefix, 0),
            (None, false) => return false,
        };
        if self.entries[id as usize].local == local {
            return false;
        }
        self.entries[id as usize].local = local;
        self.mark_dirty(id);
        true
    }

    /// The ids of the entries `keep` keeps, in prefix order.
    fn sorted(&self, keep: impl Fn(&Entry) -> bool) -> Vec<PrefixId> {
        let mut ids: Vec<PrefixId> = (0..self.len()).filter(|&id| keep(&self.entries[id as usize])).collect();
        ids.sort_unstable_by_key(|&id| key(self.entries[id as usize].prefix));
        ids
    }

    /// The shared attributes of a path.
    pub(super) fn shared(&self, id: u32) -> &Shared {
        self.shared.key(id)
    }

    /// Interns the shared attributes of `a`, from a peer whose BGP identifier is `peer_id`:
    /// an id with one reference for the caller.
    pub(super) fn intern_shared(&mut self, a: &AttributesView<'_>, peer_id: Ipv4Addr) -> u32 {
        self.shared.intern(Shared::from_view(a, peer_id), |_| ())
    }

    pub(super) fn release_shared(&mut self, id: u32) {
        self.shared.release(id);
    }

    /// The paths to a prefix.
    pub(super) fn paths(&self, id: PrefixId) -> impl Iterator<Item = &Path> + '_ {
        let entry = &self.entries[id as usize];
        entry.paths[..usize::from(entry.inline)].iter().chain(self.spill.get(&id).into_iter().flatten())
    }

    /// Stores `path` as its peer's path to the prefix (taking a reference on its shared
    /// attributes), replacing any earlier one; marks the prefix dirty if that changed it.
    pub(super) fn set_path(&mut self, id: PrefixId, path: Path) {
        let entry = &mut self.entries[id as usize];
        let inline = usize::from(entry.inline);
        let slot = match entry.paths[..inline].iter_mut().find(|p| p.peer == path.peer) {
            Some(slot) => Some(slot),
            None => self.spill.get_mut(&id).and_then(|more| more.iter_mut().find(|p| p.peer == path.peer)),
        };
        match slot {
            Some(slot) if *slot == path => return,
            Some(slot) => {
                let old = std::mem::replace(slot, path);
                self.shared.release(old.shared);
            }
            None if inline < 2 => {
                entry.paths[inline] = path;
                entry.inline += 1;
            }
            None => self.spill.entry(id).or_default().push(path),
        }
        self.shared.retain(path.shared);
        self.mark_dirty(id);
    }

    /// Removes `peer`'s path to the prefix, if any (marking the prefix dirty).
    pub(super) fn remove_path(&mut self, id: PrefixId, peer: Ipv4Addr) {
        let entry = &mut self.entries[id as usize];
        let inline = usize::from(entry.inline);
        let removed = if let Some(i) = entry.paths[..inline].iter().position(|p| p.peer == peer) {
            let removed = entry.paths[i];
            // Refill the slot from the spill, or from the last inline path.
            let refill = match self.spill.get_mut(&id) {
                Some(more) => {
                    // Spill vectors are never left empty.
                    let last = more.pop().expect("a non-empty spill");
                    if more.is_empty() {
                        self.spill.remove(&id);
                    }
                    last
                }
                None => {
                    entry.inline -= 1;
                    std::mem::replace(&mut entry.paths[inline - 1], NO_PATH)
                }
            };
            if i < usize::from(entry.inline) {
                entry.paths[i] = refill;
            }
            removed
        } else {
            let Some(more) = self.spill.get_mut(&id) else { return };
            let Some(j) = more.iter().position(|p| p.peer == peer) else { return };
            let removed = more.swap_remove(j);
            if more.is_empty() {
                self.spill.remove(&id);
            }
            removed
        };
        self.shared.release(removed.shared);
        self.mark_dirty(id);
    }

    /// Removes every path from `peer`.
    pub(super) fn remove_peer(&mut self, peer: Ipv4Addr) {
        for id in 0..self.len() {
            let entry = &self.entries[id as usize];
            let inline = &entry.paths[..usize::from(entry.inline)];
            if inline.iter().any(|p| p.peer == peer) || self.spill.contains_key(&id) {
                self.remove_path(id, peer);
            }
        }
    }

    fn rank(&self, path: &Path) -> Rank {
        let shared = self.shared.key(path.shared);
        let first = (
            std::cmp::Reverse(shared.local_pref.unwrap_or(LOCAL_PREF_DEFAULT)),
            shared.as_path.len(),
            shared.origin,
        );
        let originator = shared.originator.unwrap_or(path.next_hop);
        (first, originator, shared.cluster_list.len(), path.peer)
    }

    /// Chooses the prefix's best path and multipath next hops (emitting a [`RouteEvent`] when
    /// the installed route changes) and what it is exported as. `client` tells whether a peer
    /// is a reflector client. Returns whether the export changed: its attributes, or where it
    /// came from (which decides who gets it).
    ///
    /// Best path: local origination first; then highest LOCAL_PREF, shortest AS_PATH, lowest
    /// ORIGIN, lowest ORIGINATOR_ID (or peer router id), shortest CLUSTER_LIST, lowest peer
    /// address. Every path equal to the best in the first three contributes its NEXT_HOP.
    pub(super) fn select(
        &mut self,
        id: PrefixId,
        config: &BgpConfig,
        client: impl Fn(Ipv4Addr) -> bool,
        events: &mut VecDeque<RouteEvent>,
    ) -> bool {
        self.entries[id as usize].dirty = false;
        let local = self.entries[id as usize].local;
        let mut best: Option<(Rank, Path)> = None;
        let mut hops = std::mem::take(&mut self.hops_scratch);
        hops.clear();
        if !local {
            for path in self.paths(id) {
                let rank = self.rank(path);
                if best.as_ref().is_none_or(|(b, _)| rank < *b) {
                    best = Some((rank, *path));
                }
            }
            if let Some((rank, _)) = &best {
                hops.extend(self.paths(id).filter(|p| self.rank(p).0 == rank.0).map(|p| p.next_hop));
                hops.sort_unstable();
                hops.dedup();
            }
        }
        self.install(id, &hops, events);
        self.hops_scratch = hops;

        let key = match best {
            _ if local => Some(ExportKey::Local),
            Some((_, path)) if config.route_reflector => Some(ExportKey::Reflected {
                shared: path.shared,
                next_hop: path.next_hop,
                source: path.peer,
                source_client: client(path.peer),
            }),
            _ => None,
        };
        let old = self.export_of.get(id as usize).copied().unwrap_or(0);
        if old.checked_sub(1).map(|e| *self.exports.key(e)) == key {
            return false;
        }
        let export = key.and_then(|key| self.intern_export(key, config)).map_or(0, |e| e + 1);
        if self.export_of.len() <= id as usize {
            self.export_of.resize(id as usize + 1, 0);
        }
        self.export_of[id as usize] = export;
        if let Some(old) = old.checked_sub(1)
            && let Some(ExportKey::Reflected { shared, .. }) = self.exports.release(old)
        {
            self.shared.release(shared);
        }
        old != export
    }

    /// The export of `key`, with a reference; `None` if its attributes would not fit an UPDATE.
    fn intern_export(&mut self, key: ExportKey, config: &BgpConfig) -> Option<u32> {
        let (attributes, source, source_client) = match key {
            ExportKey::Local => {
                let attributes = PathAttributes {
                    origin: Origin::Igp,
                    as_path: Vec::new(),
                    next_hop: config.router_id,
                    local_pref: Some(LOCAL_PREF_DEFAULT),
                    originator_id: None,
                    cluster_list: Vec::new(),
                };
                (attributes, None, false)
            }
            ExportKey::Reflected { shared, next_hop, source, source_client } => {
                let s = self.shared.key(shared);
                let attributes = PathAttributes {
                    origin: s.origin,
                    as_path: s.as_path.to_vec(),
                    next_hop,
                    local_pref: s.local_pref,
                    originator_id: Some(s.originator.unwrap_or(next_hop)),
                    cluster_list: std::iter::once(config.router_id)
                        .chain(s.cluster_list.iter().copied())
                        .collect(),
                };
                (attributes, Some(source), source_client)
            }
        };
        let encoded = wire::encode_attributes(&attributes);
        if wire::UPDATE_FIXED_LEN + encoded.len() + 5 > wire::UPDATE_LEN_MAX {
            return None; // too long to announce even one prefix: not advertised
        }
        let fresh = self.exports.live();
        let export = Export { encoded: encoded.into_boxed_slice(), source, source_client };
        let id = self.exports.intern(key, |_| export);
        if self.exports.live() > fresh
            && let ExportKey::Reflected { shared, .. } = key
        {
            self.shared.retain(shared); // the export refers to it
        }
        Some(id)
    }

    /// Sets the installed next hops of a prefix (none: not installed), emitting the event.
    fn install(&mut self, id: PrefixId, hops: &[Ipv4Addr], events: &mut VecDeque<RouteEvent>) {
        if self.installed(id) == hops {
            return;
        }
        let entry = &mut self.entries[id as usize];
        if entry.hops == 2 {
            self.ecmp.remove(&id);
        }
        let prefix = entry.prefix;
        match hops {
            [] => {
                entry.hops = 0;
                entry.hop = Ipv4Addr::UNSPECIFIED;
                events.push_back(RouteEvent::Withdrawn { prefix });
            }
            [hop] => {
                entry.hops = 1;
                entry.hop = *hop;
            }
            _ => {
                entry.hops = 2;
                self.ecmp.insert(id, hops.into());
            }
        }
        if !hops.is_empty() {
            events.push_back(RouteEvent::Installed { prefix, next_hops: hops.to_vec() });
        }
    }

    /// The installed next hops of a prefix (empty: none).
    pub(super) fn installed(&self, id: PrefixId) -> &[Ipv4Addr] {
        let entry = &self.entries[id as usize];
        match entry.hops {
            0 => &[],
            1 => std::slice::from_ref(&entry.hop),
            // `hops == 2` exactly when the prefix has an `ecmp` entry.
            _ => self.ecmp.get(&id).expect("several next hops are in ecmp"),
        }
    }

    /// Every installed route, in prefix order.
    pub(super) fn routes(&self) -> impl Iterator<Item = (Ipv4Net, &[Ipv4Addr])> + '_ {
        self.sorted(|e| e.hops > 0)
            .into_iter()
            .map(|id| (self.entries[id as usize].prefix, self.installed(id)))
    }

    /// The attributes of `peer`'s path to `prefix`, as received (ORIGINATOR_ID resolved).
    #[cfg(test)]
    pub(super) fn path_attributes(&self, prefix: Ipv4Net, peer: Ipv4Addr) -> Option<PathAttributes> {
        let id = self.lookup(prefix, 0)?;
        let path = self.paths(id).find(|p| p.peer == peer)?;
        let s = self.shared.key(path.shared);
        Some(PathAttributes {
            origin: s.origin,
            as_path: s.as_path.to_vec(),
            next_hop: path.next_hop,
            local_pref: s.local_pref,
            originator_id: Some(s.originator.unwrap_or(path.next_hop)),
            cluster_list: s.cluster_list.to_vec(),
        })
    }

    /// The peer the best path to `prefix` came from.
    #[cfg(test)]
    pub(super) fn best_source(&self, prefix: Ipv4Net) -> Option<Ipv4Addr> {
        let id = self.lookup(prefix, 0)?;
        self.paths(id).min_by_key(|p| self.rank(p)).map(|p| p.peer)
    }
}

/// A set of prefix ids: a bit per id, grown on demand.
#[derive(Clone, Debug, Default)]
pub(super) struct PrefixSet {
    words: Vec<u64>,
    count: u32,
    /// No bit is set in a word below this one.
    first: usize,
}

impl PrefixSet {
    pub(super) fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub(super) fn len(&self) -> usize {
        self.count as usize
    }

    pub(super) fn contains(&self, id: PrefixId) -> bool {
        let (word, bit) = (id as usize / 64, id % 64);
        self.words.get(word).is_some_and(|w| w & (1 << bit) != 0)
    }

    pub(super) fn insert(&mut self, id: PrefixId) {
        let (word, bit) = (id as usize / 64, id % 64);
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        if self.words[word] & (1 << bit) == 0 {
            self.words[word] |= 1 << bit;
            self.count += 1;
            self.first = self.first.min(word);
        }
    }

    pub(super) fn remove(&mut self, id: PrefixId) {
        let (word, bit) = (id as usize / 64, id % 64);
        if let Some(w) = self.words.get_mut(word)
            && *w & (1 << bit) != 0
        {
            *w &= !(1 << bit);
            self.count -= 1;
        }
    }

    /// Inserts every id below `n`.
    pub(super) fn insert_below(&mut self, n: PrefixId) {
        for id in 0..n {
            self.insert(id);
        }
    }

    /// Removes and returns the lowest id.
    pub(super) fn pop_first(&mut self) -> Option<PrefixId> {
        if self.count == 0 {
            return None;
        }
        while self.first < self.words.len() {
            let w = &mut self.words[self.first];
            if *w != 0 {
                let bit = w.trailing_zeros();
                *w &= !(1 << bit);
                self.count -= 1;
                return Some((self.first * 64) as PrefixId + bit);
            }
            self.first += 1;
        }
        unreachable!("a non-zero count with no bit set")
    }

    /// Removes everything, and frees the memory.
    pub(super) fn clear(&mut self) {
        *self = PrefixSet::default();
    }
}
