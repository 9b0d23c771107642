//! `netsim-core`: the small vocabulary every netsim crate shares.
//!
//! The sans-IO crates (`netsim-fabric`, `netsim-vrouter`, `netsim-control`) and the simulator all
//! speak in these types, so none of them has to depend on another for a timestamp or a hash.
//!
//! - [`time`]: [`SimTime`] and [`SimDuration`], integer nanoseconds from the start of a run. Never
//!   a wall clock: golden outputs must be byte-stable.
//! - [`hash`]: hashes whose output is fixed forever (trace hashes, ECMP choices, RNG sub-seeds),
//!   unlike std's `DefaultHasher`, whose algorithm may change between Rust releases.
//! - [`checksum`]: the Internet checksum, whole and incremental (RFC 1071, RFC 1624).
//! - [`acl`]: access control lists, compiled by the control plane and evaluated by data planes.
//! - [`packet`]: zero-copy views that pull the fields forwarding decisions need out of frame bytes,
//!   never panicking on malformed input.
//!
//! **Architecture invariant:** nothing here reads a clock, allocates per packet, or does I/O.

pub mod acl;
pub mod chains;
pub mod checksum;
pub mod hash;
pub mod packet;
pub mod planted;
pub mod time;

pub use hash::{StableHasher, mix64};
pub use packet::FiveTuple;
pub use time::{SimDuration, SimTime};
