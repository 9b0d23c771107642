//! The vrouter agent: turns the control plane's messages for a host into programming of that
//! host's vrouter, as OpenContrail's contrail-vrouter-agent does with what the control nodes
//! send it over XMPP.
//!
//! Identifiers map one to one: a network's VRF has the network's id, a pod's interface the
//! pod's id. A route target on this host whose label is a local interface's own label becomes
//! an interface next hop; any other target is a tunnel (to this host, for a local floating IP:
//! the vrouter then performs the destination's work itself). The agent remembers its local
//! interfaces' labels across updates.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use netsim_control::network_manager::AgentMessage;
use netsim_core::SimTime;
use netsim_vrouter::nexthop::{NextHop, Tunnel};
use netsim_vrouter::overlay::{Command, CommandError, FloatingIp, Route, Vrouter};
use netsim_vrouter::{InterfaceId, VrfId};

/// One host's agent.
#[derive(Clone, Debug)]
pub struct Agent {
    host_ip: Ipv4Addr,
    /// Label → local interface, for the interfaces' own labels.
    interfaces: BTreeMap<u32, InterfaceId>,
}

impl Agent {
    /// The agent of the host with underlay address `host_ip`.
    pub fn new(host_ip: Ipv4Addr) -> Self {
        Agent { host_ip, interfaces: BTreeMap::new() }
    }

    /// Applies `messages` to the host's vrouter, in order.
    pub fn apply(
        &mut self,
        vrouter: &mut Vrouter,
        now: SimTime,
        messages: &[AgentMessage],
    ) -> Result<(), CommandError> {
        for message in messages {
            if let AgentMessage::Interface { pod, label, .. } = message {
                self.interfaces.insert(*label, InterfaceId(pod.0));
            }
        }
        for message in messages {
            let command = match message {
                AgentMessage::Network(network) => Command::AddVrf {
                    vrf: VrfId(network.id.0),
                    vn: network.id,
                    vni: network.id.0,
                    acl: network.acl.clone(),
                },
                AgentMessage::Interface { pod, name, ip, mac, vn, label } => Command::AddInterface {
                    id: InterfaceId(pod.0),
                    name: name.clone(),
                    ip: *ip,
                    mac: *mac,
                    vrf: VrfId(vn.0),
                    label: *label,
                },
                AgentMessage::FloatingIp { pod, ip, vn, ports, label } => Command::AddFloatingIp {
                    interface: InterfaceId(pod.0),
                    floating_ip: FloatingIp { ip: *ip, vrf: VrfId(vn.0), ports: ports.clone() },
                    label: *label,
                },
                AgentMessage::InterfaceAcls { pod, ingress, egress } => Command::SetInterfaceAcls {
                    id: InterfaceId(pod.0),
                    ingress: ingress.clone(),
                    egress: egress.clone(),
                },
                AgentMessage::Route { vrf, prefix, targets, vn } => {
                    let mut members: Vec<NextHop> = targets
                        .iter()
                        .map(|t| match self.interfaces.get(&t.label) {
                            Some(&id) if t.host == self.host_ip => NextHop::Interface(id),
                            _ => NextHop::Tunnel(Tunnel { host: t.host, label: t.label, vni: t.vni }),
                        })
                        .collect();
                    let next_hop =
                        if members.len() == 1 { members.remove(0) } else { NextHop::Composite(members) };
                    Command::SetRoute {
                        vrf: VrfId(vrf.0),
                        prefix: *prefix,
                        route: Route { next_hop, vn: Some(*vn) },
                    }
                }
                AgentMessage::RemoveRoute { vrf, prefix } => {
                    Command::RemoveRoute { vrf: VrfId(vrf.0), prefix: *prefix }
                }
                AgentMessage::RemoveFloatingIp { pod, ip, vn } => {
                    Command::RemoveFloatingIp { interface: InterfaceId(pod.0), ip: *ip, vrf: VrfId(vn.0) }
                }
                AgentMessage::RemoveInterface { pod } => {
                    self.interfaces.retain(|_, id| id.0 != pod.0);
                    Command::RemoveInterface(InterfaceId(pod.0))
                }
            };
            vrouter.handle_command(now, command)?;
        }
        Ok(())
    }
}
