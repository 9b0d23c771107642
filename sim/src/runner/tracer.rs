//! The runner's side of `netsim trace`: injects the traced packet and records its steps.
//!
//! Every hook is called from the event loop behind `if let Some(tracer)`, so a run without a
//! trace pays one branch per hook and nothing else. The traced packet is recognised by its
//! probe's flow id, [`TRACE_FLOW`]; it is never counted as traffic.

use std::collections::BTreeMap;

use netsim_core::packet::IP_PROTO_TCP;
use netsim_core::{FiveTuple, SimTime};
use netsim_fabric::{NodeId, Transmit};
use netsim_vrouter::{Forward as VrouterForward, InterfaceId, Port};

use super::{Event, Simulation};
use crate::trace::{
    PacketTrace, TRACE_FLOW, TRACE_SIZE_BYTES, TRACE_SOURCE_PORT, TraceFate, TraceRequest, TraceStep,
};
use crate::traffic::{FlowAddresses, Probe, TcpFlags, build_frame};
use netsim_control::cluster::PodId;

/// A trace in progress.
pub(super) struct Tracer {
    request: TraceRequest,
    trace: PacketTrace,
}

impl Tracer {
    pub(super) fn new(request: TraceRequest) -> Tracer {
        let trace = PacketTrace {
            flow: request.flow_argument(),
            packet: String::new(),
            at_ns: request.at.as_nanos(),
            steps: Vec::new(),
            fate: None,
        };
        Tracer { request, trace }
    }

    /// Whether `frame` is the traced packet.
    pub(super) fn matches(frame: &[u8]) -> bool {
        Probe::find(frame).is_some_and(|p| p.flow == TRACE_FLOW)
    }

    /// Whether the packet has met its fate: the run can stop.
    pub(super) fn done(&self) -> bool {
        self.trace.fate.is_some()
    }

    pub(super) fn finish(self) -> PacketTrace {
        self.trace
    }

    fn step(&mut self, at: SimTime, layer: &'static str, node: String, text: String) {
        self.trace.steps.push(TraceStep { at_ns: at.as_nanos(), layer, node, text });
    }

    fn fate(&mut self, at: SimTime, delivered: bool, layer: &'static str, node: String, reason: String) {
        if self.trace.fate.is_none() {
            self.trace.fate = Some(TraceFate { delivered, layer, node, reason, at_ns: at.as_nanos() });
        }
    }
}

impl Simulation<'_> {
    /// Schedules the traced packet's injection.
    pub(super) fn schedule_trace(&mut self) {
        if let Some(tracer) = &self.tracer {
            self.queue.push(tracer.request.at, Event::Trace);
        }
    }

    /// Sends the traced packet from its source pod, as the cluster is now.
    pub(super) fn inject_trace(&mut self) {
        let now = self.now;
        let node_names = self.fabric.topology();
        let Some(overlay) = self.overlay.as_ref() else { return };
        let Some(tracer) = self.tracer.as_mut() else { return };
        let (pod, dst_ip) = match tracer.request.resolve(&overlay.cluster) {
            Ok(resolved) => resolved,
            Err(message) => {
                tracer.fate(now, false, "pod", "-".to_string(), message);
                return;
            }
        };
        let (host, src_ip, mac) = overlay.pods[pod.0 as usize];
        let addresses = FlowAddresses {
            src_mac: mac,
            dst_mac: overlay.gateway_mac,
            src_ip,
            dst_ip,
            src_port: tracer.request.src_port.unwrap_or(TRACE_SOURCE_PORT),
            dst_port: tracer.request.port,
            protocol: tracer.request.protocol,
        };
        let flags = if tracer.request.protocol == IP_PROTO_TCP && tracer.request.src_port.is_none() {
            TcpFlags::Syn
        } else {
            TcpFlags::AckPsh
        };
        let probe = Probe { flow: TRACE_FLOW, seq: 0, sent_at: now };
        let frame = build_frame(&addresses, TRACE_SIZE_BYTES as usize, &probe, false, flags);
        let tuple = FiveTuple::from_ethernet(&frame).map_or_else(|| "?".to_string(), |t| t.to_string());
        tracer.trace.packet = tuple.clone();
        let name = overlay.cluster.pod(pod).key();
        let node = node_names.node_name(host).to_string();
        tracer.step(now, "pod", node.clone(), format!("{name} sends {tuple}, {TRACE_SIZE_BYTES} bytes"));
        if !self.fabric.is_up(netsim_fabric::Element::Node(host)) {
            tracer.fate(now, false, "fabric", node, "node_down".to_string());
            return;
        }
        self.send_from_pod(host, InterfaceId(pod.0), frame);
    }

    fn node_name(&self, node: NodeId) -> String {
        self.fabric.topology().node_name(node).to_string()
    }

    /// A host's data plane is about to handle `frame`: what it will do, in its own words.
    pub(super) fn trace_plane(&mut self, host: NodeId, port: Port, frame: &[u8]) {
        if !Tracer::matches(frame) {
            return;
        }
        let node = self.node_name(host);
        let Some(overlay) = self.overlay.as_mut() else { return };
        let layer = overlay.layer;
        let mut steps = overlay.plane(host.0 as usize).explain(self.now, port, frame);
        if let Some(calico) = overlay.calico.as_ref() {
            let (policies, sets) = (super::calico::policy_names(calico), super::calico::set_names(calico));
            for step in &mut steps {
                *step = name_ids(&name_ids(step, "policy #", &policies), "set #", &sets);
            }
        }
        let Some(tracer) = self.tracer.as_mut() else { return };
        for text in steps {
            tracer.step(self.now, layer, node.clone(), text);
        }
    }

    /// The data plane handled the traced packet: a delivery to the host's stack or a drop
    /// ends its trace here (other fates go on).
    pub(super) fn trace_plane_fate(&mut self, host: NodeId, forward: &VrouterForward) {
        let node = self.node_name(host);
        let layer = self.overlay.as_ref().map_or("vrouter", |o| o.layer);
        let Some(tracer) = self.tracer.as_mut() else { return };
        match forward {
            VrouterForward::Host(frame) if Tracer::matches(frame) => {
                tracer.fate(self.now, true, layer, node, "delivered to the host's stack".to_string())
            }
            VrouterForward::Drop { reason, frame } if Tracer::matches(frame) => {
                tracer.fate(self.now, false, layer, node, reason.as_str().to_string())
            }
            _ => {}
        }
    }

    /// The traced packet leaves a node on a link: the hop, its ECMP choice and its timing.
    /// `true` if `transmit` carries the traced packet.
    pub(super) fn trace_transmit(&mut self, transmit: &Transmit) -> bool {
        if !Tracer::matches(&transmit.frame) {
            return false;
        }
        let topology = self.fabric.topology();
        let (node, port) = topology.link_ends(transmit.link)[usize::from(transmit.direction)];
        let ecmp = if transmit.ecmp.members > 1 {
            format!("ECMP member {} of {}", transmit.ecmp.chosen, transmit.ecmp.members)
        } else {
            "single next hop".to_string()
        };
        let text = format!(
            "out {} ({ecmp}) -> {}, {} bytes, arrives at {} (+{})",
            topology.port_name(node, port),
            topology.node_name(transmit.to),
            transmit.frame.len(),
            crate::trace::time(transmit.arrive_at.as_nanos()),
            transmit.arrive_at - self.now,
        );
        let node = self.node_name(transmit.from);
        if let Some(tracer) = self.tracer.as_mut() {
            tracer.step(self.now, "fabric", node, text);
        }
        true
    }

    /// The traced packet reached a pod: delivered. `true` if `frame` is the traced packet.
    pub(super) fn trace_delivery(&mut self, interface: InterfaceId, frame: &[u8]) -> bool {
        if !Tracer::matches(frame) {
            return false;
        }
        let Some(overlay) = self.overlay.as_ref() else { return false };
        let pod = overlay.cluster.pod(PodId(interface.0));
        let (name, deleted) = (pod.key(), pod.deleted);
        let node = self.node_name(overlay.pods[interface.0 as usize].0);
        let tuple = FiveTuple::from_ethernet(frame).map_or_else(|| "?".to_string(), |t| t.to_string());
        if let Some(tracer) = self.tracer.as_mut() {
            if deleted {
                tracer.fate(self.now, false, "pod", node, format!("pod_deleted ({name} is gone)"));
            } else {
                tracer.fate(self.now, true, "pod", node, format!("delivered to {name} as {tuple}"));
            }
        }
        true
    }

    /// The traced packet was dropped. `true` if `frame` is the traced packet.
    pub(super) fn trace_drop(
        &mut self,
        layer: &'static str,
        reason: &'static str,
        node: NodeId,
        frame: &[u8],
    ) -> bool {
        if !Tracer::matches(frame) {
            return false;
        }
        let node = self.node_name(node);
        if let Some(tracer) = self.tracer.as_mut() {
            tracer.fate(self.now, false, layer, node, reason.to_string());
        }
        true
    }
}

/// `text` with the name of each id written after every `<prefix><id>` (`policy #3` becomes
/// `policy #3 (default/frontend-users)`); ids without a name, and longer numbers that merely
/// start with an id, are left alone.
fn name_ids(text: &str, prefix: &str, names: &BTreeMap<u32, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let digits_at = at + prefix.len();
        let digits = rest[digits_at..].bytes().take_while(u8::is_ascii_digit).count();
        out.push_str(&rest[..digits_at + digits]);
        let name = rest[digits_at..digits_at + digits].parse().ok().and_then(|id: u32| names.get(&id));
        if let Some(name) = name {
            out.push_str(&format!(" ({name})"));
        }
        rest = &rest[digits_at + digits..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_named_where_they_stand_alone() {
        let names = BTreeMap::from([(1, "one".to_string()), (12, "twelve".to_string())]);
        assert_eq!(
            name_ids("set #1 and set #12, set #123, set #", "set #", &names),
            "set #1 (one) and set #12 (twelve), set #123, set #"
        );
        assert_eq!(name_ids("policy #1 rule #1", "policy #", &names), "policy #1 (one) rule #1");
    }
}
