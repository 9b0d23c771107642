//! The overlay's data path alone, end to end: a pod's packet through the sending vrouter,
//! across the fabric's hops, through the receiving vrouter to the pod. The real crates on real
//! bytes, driven directly, without the simulator around them: no event queue, no traffic
//! generator, no conformance checks.
//!
//! Beside `netsim bench`'s end-to-end figure for whole simulations, this one says how much of
//! a packet's cost is the data path itself, and how much the simulation of it.

use std::time::{Duration, Instant};

use netsim_core::{SimDuration, SimTime};
use netsim_fabric::{Fabric, FabricConfig, Hop, NodeId};
use netsim_vrouter::overlay::{Encapsulation, Vrouter};
use netsim_vrouter::testbed::{BPS, BPS_IF, FE0_IF, MAC_BPS, VIP, pair_between, pod_frame};
use netsim_vrouter::{DataPlane, Forward, Port};

/// The sending host: host 0 of the default fabric.
const SENDER: NodeId = NodeId(0);
/// The receiving host: on another leaf pair, so that a packet crosses four links
/// (host→leaf→spine→leaf→host).
const RECEIVER: NodeId = NodeId(50);
/// Bytes of TCP payload per packet: 600-byte IP packets, the petstore's requests.
const PAYLOAD_BYTES: usize = 560;
/// Time between packets: the sender's uplinks stay far from full, so no queue builds.
const SPACING: SimDuration = SimDuration::from_nanos(1_000);

/// Two programmed vrouters on two hosts of the default 100-host fabric, and established flows
/// from a pod on one to the service's replica on the other.
pub struct DataPath {
    fabric: Fabric,
    sender: Vrouter,
    receiver: Vrouter,
    /// One packet per flow (distinct source ports), cycled through.
    templates: Vec<Vec<u8>>,
    next: usize,
    buffer: Vec<u8>,
    now: SimTime,
}

/// What [`DataPath::run`] measured.
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    /// Packets carried from pod to pod.
    pub packets: u64,
    /// Fabric hops they took in all.
    pub hops: u64,
    /// Wall time.
    pub wall: Duration,
}

impl DataPath {
    /// Programs the vrouters and sets up `flows` flows (each vrouter's flow table then holds
    /// their pairs, as in a busy host).
    pub fn new(flows: usize) -> Result<DataPath, String> {
        let fabric = Fabric::new(&FabricConfig::default()).map_err(|e| e.to_string())?;
        let topology = fabric.topology();
        let (sender, receiver) =
            pair_between(topology.host_ip(SENDER), topology.host_ip(RECEIVER), Encapsulation::MplsOverUdp);
        let mut path = DataPath {
            fabric,
            sender,
            receiver,
            templates: Vec::new(),
            next: 0,
            buffer: Vec::new(),
            now: SimTime::ZERO,
        };
        // The service has a replica on each host: keep the flows ECMP sends to the far one.
        for port in 20_000..u16::MAX {
            if path.templates.len() == flows {
                break;
            }
            let template = pod_frame(MAC_BPS, BPS, VIP, port, 3000, true, PAYLOAD_BYTES);
            path.now += SPACING;
            let forward = path.sender.handle_packet(path.now, Port::Interface(BPS_IF), template.clone());
            if let Forward::Fabric(frame) = forward {
                path.buffer = frame;
                path.templates.push(template);
            }
        }
        if path.templates.len() < flows {
            return Err(format!("only {} flows reach the far replica", path.templates.len()));
        }
        // Each flow's first packet across sets up the receiver's flow pair.
        for _ in 0..flows {
            path.carry()?;
        }
        Ok(path)
    }

    /// Carries the next flow's packet from pod to pod; returns the fabric hops it took.
    pub fn carry(&mut self) -> Result<u32, String> {
        let template = &self.templates[self.next];
        self.next = (self.next + 1) % self.templates.len();
        self.now += SPACING;
        let mut frame = std::mem::take(&mut self.buffer);
        frame.clear();
        frame.extend_from_slice(template);
        let frame = match self.sender.handle_packet(self.now, Port::Interface(BPS_IF), frame) {
            Forward::Fabric(frame) => frame,
            other => return Err(format!("the sending vrouter did not encapsulate: {other:?}")),
        };
        let mut transmit = match self.fabric.send(self.now, SENDER, frame) {
            netsim_fabric::Forward::Transmit(transmit) => transmit,
            other => return Err(format!("the fabric did not take the frame: {other:?}")),
        };
        let mut hops = 1;
        let arrival = loop {
            let at = transmit.arrive_at;
            match self.fabric.forward(at, &mut transmit) {
                Hop::Transmit => hops += 1,
                Hop::Deliver { host } if host == RECEIVER => break at,
                other => return Err(format!("hop {hops}: {other:?}")),
            }
        };
        match self.receiver.handle_packet(arrival, Port::Fabric, transmit.frame) {
            Forward::Interface(FE0_IF, frame) => {
                self.buffer = frame;
                Ok(hops)
            }
            other => Err(format!("the receiving vrouter did not deliver to the replica: {other:?}")),
        }
    }

    /// Carries `packets` packets and times them.
    pub fn run(&mut self, packets: u64) -> Result<Measured, String> {
        // Wall time is what this measures; it never reaches the simulation.
        #[allow(clippy::disallowed_methods)]
        let started = Instant::now();
        let mut hops = 0;
        for _ in 0..packets {
            hops += u64::from(self.carry()?);
        }
        Ok(Measured { packets, hops, wall: started.elapsed() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packet_crosses_four_links_between_the_two_pods() {
        let mut path = DataPath::new(16).expect("the testbed programs");
        let measured = path.run(64).expect("every packet arrives");
        assert_eq!(measured.hops, 4 * 64);
    }
}
