//! A minimal pcap writer: the classic libpcap format with nanosecond timestamps, Ethernet link
//! type — what Wireshark and tshark open directly. Simulated time is written as time since the
//! epoch, so a capture starts at 1970-01-01 00:00:00.

use std::io::{self, Write};

use netsim_core::SimTime;

/// Magic number of nanosecond-resolution pcap files.
const MAGIC_NANOSECONDS: u32 = 0xa1b2_3c4d;
/// Link type of Ethernet frames.
const LINKTYPE_ETHERNET: u32 = 1;
/// Largest frame a capture records whole.
const SNAPLEN: u32 = 65_535;

/// Writes `frames` (time, bytes) as a pcap file to `out`.
pub fn write<W: Write>(mut out: W, frames: &[(SimTime, Vec<u8>)]) -> io::Result<()> {
    let mut header = Vec::with_capacity(24);
    header.extend_from_slice(&MAGIC_NANOSECONDS.to_le_bytes());
    header.extend_from_slice(&2u16.to_le_bytes());
    header.extend_from_slice(&4u16.to_le_bytes());
    header.extend_from_slice(&0i32.to_le_bytes()); // GMT offset
    header.extend_from_slice(&0u32.to_le_bytes()); // timestamp accuracy
    header.extend_from_slice(&SNAPLEN.to_le_bytes());
    header.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    out.write_all(&header)?;
    for (time, frame) in frames {
        let nanos = time.as_nanos();
        let seconds = u32::try_from(nanos / 1_000_000_000).unwrap_or(u32::MAX);
        let captured = frame.len().min(SNAPLEN as usize);
        let mut record = [0u8; 16];
        record[0..4].copy_from_slice(&seconds.to_le_bytes());
        record[4..8].copy_from_slice(&((nanos % 1_000_000_000) as u32).to_le_bytes());
        record[8..12].copy_from_slice(&(captured as u32).to_le_bytes());
        record[12..16].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        out.write_all(&record)?;
        out.write_all(&frame[..captured])?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_records_follow_the_libpcap_layout() {
        let mut bytes = Vec::new();
        write(&mut bytes, &[(SimTime(1_500_000_007), vec![0xaa; 3])]).expect("writing to a Vec");
        assert_eq!(&bytes[0..4], &[0x4d, 0x3c, 0xb2, 0xa1]);
        assert_eq!(&bytes[20..24], &[1, 0, 0, 0]);
        assert_eq!(&bytes[24..28], &[1, 0, 0, 0], "1 s");
        assert_eq!(&bytes[28..32], &500_000_007u32.to_le_bytes());
        assert_eq!(&bytes[32..40], &[3, 0, 0, 0, 3, 0, 0, 0]);
        assert_eq!(&bytes[40..], &[0xaa; 3]);
    }
}
