//! `netsim trace`: one packet followed across every layer at a chosen moment of a run.
//!
//! The request names a flow (`SRC->DST:PORT/PROTO`) and a time. The runner plays the scenario
//! as usual up to that time — same events, faults and churn — then sends one probe packet of a
//! dedicated flow ([`TRACE_FLOW`]) from the source pod's interface, and records every step it
//! takes: each data plane's explanation ([`netsim_vrouter::DataPlane::explain`]) before it
//! handles the packet, each fabric hop with its ECMP choice and timing, and its fate. The run
//! stops at that fate: the trace is the result, the rest of the run's accounting is not.

use std::net::Ipv4Addr;

use netsim_control::cluster::{Cluster, PodId};
use netsim_core::SimTime;
use netsim_core::packet::{IP_PROTO_TCP, IP_PROTO_UDP};
use serde::Serialize;

use crate::traffic::REPLY_BIT;

/// The probe flow id of the traced packet: no traffic entry's flow has it.
pub const TRACE_FLOW: u32 = REPLY_BIT - 1;
/// The traced packet's source port when the request names none (traffic entries use
/// 10000..60000).
pub const TRACE_SOURCE_PORT: u16 = 61_000;
/// The traced packet's IP size, in bytes.
pub const TRACE_SIZE_BYTES: u32 = 200;

/// Where a traced packet comes from or goes to, as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// A pod: `namespace/name`.
    Pod(String, String),
    /// An address: a pod's or a ClusterIP.
    Address(Ipv4Addr),
    /// A service by name: `namespace/name`.
    Service(String, String),
}

/// What to trace: a flow and a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceRequest {
    /// The sending pod.
    pub src: Endpoint,
    /// Its source port, if given (`SRC:PORT`): the same 5-tuple as a traffic entry's flow meets
    /// that flow's state.
    pub src_port: Option<u16>,
    /// The destination.
    pub dst: Endpoint,
    /// The destination port.
    pub port: u16,
    /// IP protocol: TCP or UDP.
    pub protocol: u8,
    /// When the packet is sent.
    pub at: SimTime,
}

/// Parses `SRC[:SPORT]->DST:PORT[/PROTO]`; the time comes apart.
pub fn parse_flow(text: &str, at: SimTime) -> Result<TraceRequest, String> {
    let syntax = || {
        format!(
            "--flow `{text}`: write SRC->DST:PORT/PROTO, e.g. `bps-0->service:frontend:3000/tcp` \
             (SRC a pod `ns/name`, `name` or IP, optionally `:SPORT`; DST also `service:NAME`)"
        )
    };
    let (src, dst) = text.split_once("->").ok_or_else(syntax)?;
    let (dst, protocol) = match dst.rsplit_once('/') {
        Some((dst, protocol)) if !protocol.contains(':') => (dst, protocol),
        _ => (dst, "tcp"),
    };
    let protocol = match protocol.to_ascii_lowercase().as_str() {
        "tcp" => IP_PROTO_TCP,
        "udp" => IP_PROTO_UDP,
        other => return Err(format!("--flow `{text}`: protocol `{other}` is neither tcp nor udp")),
    };
    let (dst, port) = dst.rsplit_once(':').ok_or_else(syntax)?;
    let port: u16 = port.parse().map_err(|_| format!("--flow `{text}`: `{port}` is not a port"))?;
    let (src, src_port) = match src.rsplit_once(':') {
        Some((pod, sport)) => (
            pod,
            Some(sport.parse::<u16>().map_err(|_| format!("--flow `{text}`: `{sport}` is not a port"))?),
        ),
        None => (src, None),
    };
    let endpoint = |text: &str| -> Result<Endpoint, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err(syntax());
        }
        if let Ok(address) = text.parse::<Ipv4Addr>() {
            return Ok(Endpoint::Address(address));
        }
        let (service, name) = match text.strip_prefix("service:") {
            Some(name) => (true, name),
            None => (false, text),
        };
        let (namespace, name) = name.split_once('/').unwrap_or(("default", name));
        Ok(if service {
            Endpoint::Service(namespace.to_string(), name.to_string())
        } else {
            Endpoint::Pod(namespace.to_string(), name.to_string())
        })
    };
    let src = endpoint(src)?;
    if matches!(src, Endpoint::Service(..)) {
        return Err(format!("--flow `{text}`: a packet is sent by a pod, not a service"));
    }
    Ok(TraceRequest { src, src_port, dst: endpoint(dst)?, port, protocol, at })
}

impl Endpoint {
    /// The pod this endpoint names in `cluster` (live), if it is one.
    fn pod(&self, cluster: &Cluster) -> Option<PodId> {
        let id = match self {
            Endpoint::Pod(namespace, name) => cluster.pod_by_name(namespace, name)?,
            Endpoint::Address(address) => cluster.pod_by_ip(*address)?,
            Endpoint::Service(..) => return None,
        };
        (!cluster.pod(id).deleted).then_some(id)
    }
}

impl TraceRequest {
    /// The source pod and the destination address in `cluster`, or what is wrong.
    pub fn resolve(&self, cluster: &Cluster) -> Result<(PodId, Ipv4Addr), String> {
        let src = self.src.pod(cluster).ok_or_else(|| format!("--flow: no live pod {}", self.src))?;
        let dst = match &self.dst {
            Endpoint::Address(address) => *address,
            Endpoint::Pod(..) => {
                cluster
                    .pod(self.dst.pod(cluster).ok_or_else(|| format!("--flow: no live pod {}", self.dst))?)
                    .ip
            }
            Endpoint::Service(namespace, name) => cluster
                .services()
                .iter()
                .find(|s| &s.service.namespace == namespace && &s.service.name == name)
                .ok_or_else(|| format!("--flow: no service {namespace}/{name} in the manifests"))?
                .cluster_ip
                .ok_or_else(|| format!("--flow: service {namespace}/{name} is headless (no ClusterIP)"))?,
        };
        Ok((src, dst))
    }

    /// The request as a `--flow` argument.
    pub fn flow_argument(&self) -> String {
        let sport = self.src_port.map_or(String::new(), |p| format!(":{p}"));
        let protocol = if self.protocol == IP_PROTO_UDP { "udp" } else { "tcp" };
        format!("{}{sport}->{}:{}/{protocol}", self.src, self.dst, self.port)
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Pod(namespace, name) => write!(f, "{namespace}/{name}"),
            Endpoint::Address(address) => write!(f, "{address}"),
            Endpoint::Service(namespace, name) => write!(f, "service:{namespace}/{name}"),
        }
    }
}

/// The command that traces a flow of a scenario at a time.
pub fn command(scenario: &std::path::Path, flow: &str, at: SimTime) -> String {
    format!("netsim trace {} --flow {flow} --at {}ns", scenario.display(), at.as_nanos())
}

/// One step of a traced packet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TraceStep {
    /// When, in nanoseconds.
    pub at_ns: u64,
    /// The layer: `pod`, `vrouter`, `calico` or `fabric`.
    pub layer: &'static str,
    /// The host or switch.
    pub node: String,
    /// What happened.
    pub text: String,
}

/// What became of the traced packet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TraceFate {
    /// Whether it reached its destination.
    pub delivered: bool,
    /// The layer that delivered or dropped it.
    pub layer: &'static str,
    /// Where.
    pub node: String,
    /// `delivered to ...`, or the drop reason.
    pub reason: String,
    /// When, in nanoseconds.
    pub at_ns: u64,
}

/// The whole trace of one packet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PacketTrace {
    /// The flow as given.
    pub flow: String,
    /// The packet as sent: `src:port > dst:port proto`.
    pub packet: String,
    /// When it was sent, in nanoseconds.
    pub at_ns: u64,
    /// Every step, in order.
    pub steps: Vec<TraceStep>,
    /// Its fate (`None` if the run ended first).
    pub fate: Option<TraceFate>,
}

impl PacketTrace {
    /// Whether the packet was delivered.
    pub fn delivered(&self) -> bool {
        self.fate.as_ref().is_some_and(|f| f.delivered)
    }

    /// The trace as text: a header, a line per step with its time, and the fate.
    pub fn render(&self) -> String {
        let mut out = format!("trace {} at {}\npacket {}\n", self.flow, time(self.at_ns), self.packet);
        for step in &self.steps {
            out.push_str(&format!(
                "{:>16}  {:<8} {:<10} {}\n",
                time(step.at_ns),
                step.layer,
                step.node,
                step.text
            ));
        }
        match &self.fate {
            Some(fate) if fate.delivered => out.push_str(&format!(
                "delivered at {}: {} ({} at {})\n",
                time(fate.at_ns),
                fate.reason,
                fate.layer,
                fate.node
            )),
            Some(fate) => out.push_str(&format!(
                "dropped at {}: {} ({} at {})\n",
                time(fate.at_ns),
                fate.reason,
                fate.layer,
                fate.node
            )),
            None => out.push_str("no fate: the run ended first\n"),
        }
        out
    }
}

/// A time in milliseconds with nanosecond precision.
pub(crate) fn time(ns: u64) -> String {
    format!("{}.{:06}ms", ns / 1_000_000, ns % 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_parse() {
        let request = parse_flow("bps-0->service:frontend:3000/tcp", SimTime(5)).unwrap();
        assert_eq!(request.src, Endpoint::Pod("default".into(), "bps-0".into()));
        assert_eq!(request.dst, Endpoint::Service("default".into(), "frontend".into()));
        assert_eq!((request.port, request.protocol, request.src_port), (3000, IP_PROTO_TCP, None));
        assert_eq!(request.flow_argument(), "default/bps-0->service:default/frontend:3000/tcp");
        let request = parse_flow("ns/a:10007->10.96.0.2:53/udp", SimTime(5)).unwrap();
        assert_eq!(request.src, Endpoint::Pod("ns".into(), "a".into()));
        assert_eq!(request.src_port, Some(10007));
        assert_eq!(request.dst, Endpoint::Address(Ipv4Addr::new(10, 96, 0, 2)));
        assert_eq!(request.protocol, IP_PROTO_UDP);
        assert_eq!(parse_flow("a->b:80", SimTime(0)).unwrap().protocol, IP_PROTO_TCP);
        for bad in ["a-b:80", "a->b", "a->b:x/tcp", "a->b:80/icmp", "->b:80", "service:x->b:80"] {
            assert!(parse_flow(bad, SimTime(0)).is_err(), "{bad}");
        }
    }
}
