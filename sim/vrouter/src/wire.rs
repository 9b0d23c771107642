//! The overlay's own headers, in smoltcp's view/representation style: an MPLS label stack
//! entry (RFC 3032), a VXLAN header (RFC 7348) and a GRE header (RFC 2784) — the parts
//! etherparse does not have. Parsing checks lengths once; nothing here panics on input.

use std::fmt;

/// UDP destination port of MPLS over UDP (RFC 7510).
pub const MPLS_UDP_PORT: u16 = 6635;
/// UDP destination port of VXLAN (RFC 7348).
pub const VXLAN_UDP_PORT: u16 = 4789;
/// IP protocol number of GRE.
pub const IP_PROTO_GRE: u8 = 47;
/// GRE protocol type of MPLS unicast.
pub const GRE_PROTO_MPLS: u16 = 0x8847;
/// Length of an MPLS label stack entry.
pub const MPLS_LEN: usize = 4;
/// Length of a VXLAN header.
pub const VXLAN_LEN: usize = 8;
/// Length of a GRE header without options.
pub const GRE_LEN: usize = 4;

/// One MPLS label stack entry: `label(20) | tc(3) | bottom(1) | ttl(8)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MplsLabel {
    /// The label value (20 bits).
    pub label: u32,
    /// Traffic class (3 bits).
    pub tc: u8,
    /// Bottom of stack.
    pub bottom: bool,
    /// Time to live.
    pub ttl: u8,
}

impl MplsLabel {
    /// Largest label value.
    pub const LABEL_MAX: u32 = (1 << 20) - 1;

    /// Reads an entry from the first four bytes; `None` if there are fewer.
    pub fn parse(bytes: &[u8]) -> Option<MplsLabel> {
        let word = u32::from_be_bytes(bytes.get(..MPLS_LEN)?.try_into().ok()?);
        Some(MplsLabel {
            label: word >> 12,
            tc: ((word >> 9) & 0x7) as u8,
            bottom: (word >> 8) & 1 == 1,
            ttl: (word & 0xff) as u8,
        })
    }

    /// The entry's four bytes.
    pub fn to_bytes(self) -> [u8; MPLS_LEN] {
        debug_assert!(self.label <= Self::LABEL_MAX && self.tc < 8, "label or tc out of range");
        let word = (self.label << 12)
            | (u32::from(self.tc) << 9)
            | (u32::from(self.bottom) << 8)
            | u32::from(self.ttl);
        word.to_be_bytes()
    }
}

impl fmt::Display for MplsLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MPLS label {} tc {} {}ttl {}",
            self.label,
            self.tc,
            if self.bottom { "[S] " } else { "" },
            self.ttl
        )
    }
}

/// A VXLAN header: the I flag set and a 24-bit VNI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vxlan {
    /// The VXLAN network identifier (24 bits).
    pub vni: u32,
}

impl Vxlan {
    /// Largest VNI.
    pub const VNI_MAX: u32 = (1 << 24) - 1;

    /// Reads a header; `None` if short or the I flag (valid VNI) is not set.
    pub fn parse(bytes: &[u8]) -> Option<Vxlan> {
        let header = bytes.get(..VXLAN_LEN)?;
        if header[0] & 0x08 == 0 {
            return None;
        }
        Some(Vxlan { vni: u32::from_be_bytes([0, header[4], header[5], header[6]]) })
    }

    /// The header's eight bytes.
    pub fn to_bytes(self) -> [u8; VXLAN_LEN] {
        debug_assert!(self.vni <= Self::VNI_MAX, "VNI out of range");
        let vni = self.vni.to_be_bytes();
        [0x08, 0, 0, 0, vni[1], vni[2], vni[3], 0]
    }
}

/// A GRE header without checksum, key or sequence number, carrying `protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gre {
    /// The payload's protocol type (an EtherType).
    pub protocol: u16,
}

impl Gre {
    /// Reads a header; `None` if short, or if it has options or a version other than 0 (the
    /// vrouter sends neither, and a header with them has a different length).
    pub fn parse(bytes: &[u8]) -> Option<Gre> {
        let header = bytes.get(..GRE_LEN)?;
        if header[0] != 0 || header[1] != 0 {
            return None;
        }
        Some(Gre { protocol: u16::from_be_bytes([header[2], header[3]]) })
    }

    /// The header's four bytes.
    pub fn to_bytes(self) -> [u8; GRE_LEN] {
        let protocol = self.protocol.to_be_bytes();
        [0, 0, protocol[0], protocol[1]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mpls_layout_matches_rfc3032() {
        let entry = MplsLabel { label: 0x12345, tc: 5, bottom: true, ttl: 64 };
        // 0x12345 << 12 | 5 << 9 | 1 << 8 | 64
        assert_eq!(entry.to_bytes(), [0x12, 0x34, 0x5b, 0x40]);
        assert_eq!(MplsLabel::parse(&entry.to_bytes()), Some(entry));
        assert_eq!(MplsLabel::parse(&[1, 2, 3]), None);
    }

    #[test]
    fn vxlan_layout_matches_rfc7348() {
        assert_eq!(Vxlan { vni: 0xabcdef }.to_bytes(), [0x08, 0, 0, 0, 0xab, 0xcd, 0xef, 0]);
        assert_eq!(Vxlan::parse(&[0x08, 0, 0, 0, 0, 0, 7, 0]), Some(Vxlan { vni: 7 }));
        assert_eq!(Vxlan::parse(&[0x00, 0, 0, 0, 0, 0, 7, 0]), None, "I flag clear");
    }

    proptest! {
        #[test]
        fn mpls_round_trips(label in 0u32..=MplsLabel::LABEL_MAX, tc in 0u8..8, bottom: bool, ttl: u8) {
            let entry = MplsLabel { label, tc, bottom, ttl };
            prop_assert_eq!(MplsLabel::parse(&entry.to_bytes()), Some(entry));
        }

        #[test]
        fn headers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..12)) {
            let _ = (MplsLabel::parse(&bytes), Vxlan::parse(&bytes), Gre::parse(&bytes));
        }
    }
}
