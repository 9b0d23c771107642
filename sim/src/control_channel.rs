//! The control channel between control nodes and vrouter agents (XMPP in OpenContrail), on real
//! bytes over the underlay.
//!
//! An update — the list of agent messages for one host — is encoded as JSON (as verbose as
//! XMPP's XML, give or take), cut into chunks that fit the underlay MTU, and sent as UDP
//! datagrams to port 5269 from the control node's host to the agent's. Each datagram starts with
//! a 16-byte header: magic `NSXM`, the update's id, the chunk's index and count, and the
//! update's total length. The agent reassembles, applies the update once, and acknowledges it
//! with a datagram carrying magic `NSXA` and the id. The control node retransmits what is not
//! acknowledged; if it is down, the other control node takes over (failover), and the routes
//! already programmed stay.

use std::net::Ipv4Addr;

use netsim_control::network_manager::AgentMessage;
use netsim_core::packet::{ETHERNET_HEADER_LEN, IP_PROTO_UDP};

/// UDP port of the control channel (XMPP's client port).
pub const CONTROL_PORT: u16 = 5269;
const DATA_MAGIC: [u8; 4] = *b"NSXM";
const ACK_MAGIC: [u8; 4] = *b"NSXA";
const HEADER_LEN: usize = 16;
/// Payload bytes per datagram: a 1500-byte MTU less IPv4 (20), UDP (8) and our header.
pub const CHUNK_BYTES_MAX: usize = 1500 - 20 - 8 - HEADER_LEN;

/// A parsed control datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlPacket {
    /// A piece of an update.
    Data {
        /// The update.
        update: u32,
        /// This chunk's index.
        index: u16,
        /// How many chunks the update has.
        count: u16,
        /// The chunk's bytes.
        bytes: Vec<u8>,
    },
    /// An update was applied.
    Ack {
        /// The update.
        update: u32,
    },
}

/// Encodes an update's messages.
pub fn encode(messages: &[AgentMessage]) -> Vec<u8> {
    // Plain data structures of numbers, strings and addresses always serialize.
    serde_json::to_vec(messages).expect("agent messages serialize")
}

/// Decodes an update's messages.
pub fn decode(bytes: &[u8]) -> Result<Vec<AgentMessage>, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

fn frame(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let builder = etherparse::PacketBuilder::ethernet2([0; 6], [0; 6])
        .ipv4(src.octets(), dst.octets(), 64)
        .udp(CONTROL_PORT, CONTROL_PORT);
    let mut frame = Vec::with_capacity(builder.size(payload.len()));
    // Chunks are bounded below the MTU: the datagram always builds.
    builder.write(&mut frame, payload).expect("a bounded datagram builds");
    frame
}

/// The datagrams of update `update` from `src` to `dst`.
pub fn data_frames(src: Ipv4Addr, dst: Ipv4Addr, update: u32, payload: &[u8]) -> Vec<Vec<u8>> {
    let chunks: Vec<&[u8]> =
        if payload.is_empty() { vec![&[]] } else { payload.chunks(CHUNK_BYTES_MAX).collect() };
    let count = chunks.len() as u16;
    chunks
        .iter()
        .enumerate()
        .map(|(index, chunk)| {
            let mut body = Vec::with_capacity(HEADER_LEN + chunk.len());
            body.extend_from_slice(&DATA_MAGIC);
            body.extend_from_slice(&update.to_be_bytes());
            body.extend_from_slice(&(index as u16).to_be_bytes());
            body.extend_from_slice(&count.to_be_bytes());
            body.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            body.extend_from_slice(chunk);
            frame(src, dst, &body)
        })
        .collect()
}

/// The acknowledgement of update `update`.
pub fn ack_frame(src: Ipv4Addr, dst: Ipv4Addr, update: u32) -> Vec<u8> {
    let mut body = [0u8; HEADER_LEN];
    body[0..4].copy_from_slice(&ACK_MAGIC);
    body[4..8].copy_from_slice(&update.to_be_bytes());
    frame(src, dst, &body)
}

/// Reads a control datagram from an Ethernet/IPv4/UDP frame; `None` for anything else.
pub fn parse(frame: &[u8]) -> Option<ControlPacket> {
    let ip = frame.get(ETHERNET_HEADER_LEN..)?;
    let header_len = usize::from(ip.first()? & 0x0f) * 4;
    if *ip.get(9)? != IP_PROTO_UDP {
        return None;
    }
    let udp = ip.get(header_len..header_len + 8)?;
    if u16::from_be_bytes([udp[2], udp[3]]) != CONTROL_PORT {
        return None;
    }
    let body = ip.get(header_len + 8..)?;
    let header = body.get(..HEADER_LEN)?;
    let update = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    let magic = &header[0..4];
    match magic {
        _ if magic == ACK_MAGIC => Some(ControlPacket::Ack { update }),
        _ if magic == DATA_MAGIC => Some(ControlPacket::Data {
            update,
            index: u16::from_be_bytes([header[8], header[9]]),
            count: u16::from_be_bytes([header[10], header[11]]),
            bytes: body[HEADER_LEN..].to_vec(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netsim_control::cluster::PodId;
    use netsim_core::acl::VnId;

    #[test]
    fn updates_round_trip_through_datagrams() {
        let messages: Vec<AgentMessage> = (0..200)
            .map(|i| AgentMessage::RemoveRoute {
                vrf: VnId(1),
                prefix: format!("10.0.{}.{}/32", i / 256, i % 256).parse().unwrap(),
            })
            .chain([AgentMessage::RemoveInterface { pod: PodId(7) }])
            .collect();
        let payload = encode(&messages);
        let src = Ipv4Addr::new(172, 16, 0, 99);
        let dst = Ipv4Addr::new(172, 16, 0, 3);
        let frames = data_frames(src, dst, 42, &payload);
        assert!(frames.len() > 1, "a large update spans datagrams");
        assert!(frames.iter().all(|f| f.len() - ETHERNET_HEADER_LEN <= 1500));
        let mut bytes = Vec::new();
        for (expected_index, frame) in frames.iter().enumerate() {
            let Some(ControlPacket::Data { update, index, count, bytes: chunk }) = parse(frame) else {
                panic!("data")
            };
            assert_eq!((update, usize::from(index), usize::from(count)), (42, expected_index, frames.len()));
            bytes.extend_from_slice(&chunk);
        }
        assert_eq!(decode(&bytes).unwrap(), messages);
        assert_eq!(parse(&ack_frame(dst, src, 42)), Some(ControlPacket::Ack { update: 42 }));
        assert_eq!(parse(&[0u8; 10]), None);
    }
}
