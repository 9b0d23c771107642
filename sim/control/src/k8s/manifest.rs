//! Loading Kubernetes YAML manifests: multi-document files as users write them, and
//! `kind: List` as `kubectl get -o yaml` exports them.
//!
//! Each document is read twice: once for its `kind` and name, then as that kind's typed
//! structure. Fields netsim does not model are ignored; fields it models are checked, and a
//! problem is reported with the file, the document (its number, kind and name), the line where
//! the parser knows it, and the field's path.

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{
    ClusterIpRequest, ContainerPort, LabelSelector, Labels, Namespace, NetworkPolicy, Objects, Operator,
    Peer, Pod, PodTemplate, PolicyPort, PolicyRule, Protocol, Requirement, Service, ServicePort, TargetPort,
    Workload, WorkloadKind,
};

/// A problem in a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestError {
    /// The file (or other source name).
    pub source: String,
    /// 1-based number of the document within the file (empty documents are not counted).
    pub document: usize,
    /// `Kind name` of the object, when it could be read.
    pub object: Option<String>,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// What is wrong, starting with the field's path where there is one.
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.source)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": error: document {}", self.document)?;
        if let Some(object) = &self.object {
            write!(f, " ({object})")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ManifestError {}

/// Something netsim skipped, worth telling the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestWarning {
    /// The file.
    pub source: String,
    /// 1-based document number.
    pub document: usize,
    /// What was skipped and why.
    pub message: String,
}

impl fmt::Display for ManifestWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: warning: document {}: {}", self.source, self.document, self.message)
    }
}

/// Parses every document of `text` (named `source` in messages). All problems are collected:
/// on any error, every error is returned.
pub fn parse(source: &str, text: &str) -> Result<(Objects, Vec<ManifestWarning>), Vec<ManifestError>> {
    let mut loader = Loader { source, objects: Objects::default(), warnings: Vec::new(), errors: Vec::new() };
    let mut number = 0;
    for (first_line, document) in split_documents(text) {
        if is_blank(document) {
            continue;
        }
        number += 1;
        loader.document(number, Document::Text { text: document, first_line });
    }
    if loader.errors.is_empty() { Ok((loader.objects, loader.warnings)) } else { Err(loader.errors) }
}

/// Splits a YAML stream at its `---` document markers (a line starting with `---` followed by
/// nothing or white space is always a marker, per the YAML specification). Returns each
/// document with the 1-based line it starts on.
fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let mut documents = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let content = line.trim_end_matches(['\n', '\r']);
        let is_marker = content == "---"
            || content.starts_with("--- ")
            || content.starts_with("---\t")
            || content == "..."
            || content.starts_with("... ");
        if is_marker {
            documents.push((start_line, &text[start..offset]));
            // Content after the marker on the same line (`--- {kind: Pod}`) starts the document.
            let rest = &content[3..];
            if rest.trim().is_empty() || rest.trim_start().starts_with('#') {
                start = offset + line.len();
                start_line = index + 2;
            } else {
                start = offset + 3;
                start_line = index + 1;
            }
        }
        offset += line.len();
    }
    documents.push((start_line, &text[start..]));
    documents
}

fn is_blank(document: &str) -> bool {
    document.lines().all(|line| {
        let line = line.trim();
        line.is_empty() || line.starts_with('#')
    })
}

/// A document's source: text (with its position in the file) or a `List` item already parsed.
enum Document<'a> {
    Text { text: &'a str, first_line: usize },
    Value(serde_json::Value),
}

impl Document<'_> {
    /// Deserializes the document as `T`. The error names the field's path and carries the file
    /// line when known.
    fn read<T: DeserializeOwned>(&self) -> Result<T, (Option<usize>, String)> {
        match self {
            Document::Text { text, first_line } => {
                let mut path = String::new();
                let result = serde_saphyr::with_deserializer_from_str(text, |deserializer| {
                    serde_path_to_error::deserialize::<_, T>(deserializer).map_err(|error| {
                        path = error.path().to_string();
                        error.into_inner()
                    })
                });
                let error = match result {
                    Ok(value) => return Ok(value),
                    Err(error) => error,
                };
                let line = error.location().map(|l| first_line + l.line() as usize - 1);
                Err((line, with_path(&path, &plain_message(&error))))
            }
            Document::Value(value) => serde_path_to_error::deserialize::<_, T>(value.clone())
                .map_err(|error| (None, with_path(&error.path().to_string(), &error.inner().to_string()))),
        }
    }
}

/// `path: message`, or the message alone at the document's root.
fn with_path(path: &str, message: &str) -> String {
    if path.is_empty() || path == "." { message.to_string() } else { format!("{path}: {message}") }
}

/// serde-saphyr's message without its rendered source snippet (we print our own location).
fn plain_message(error: &serde_saphyr::Error) -> String {
    let rendered = error.without_snippet().to_string();
    let first = rendered.lines().next().unwrap_or("").trim();
    // Drop a trailing " at line N, column M": the location is printed separately.
    let message = match first.rfind(" at line ") {
        Some(at) => &first[..at],
        None => first,
    };
    match message {
        "invalid i64" | "invalid u64" | "invalid i32" | "invalid u32" => "expected an integer".to_string(),
        other => other.to_string(),
    }
}

#[derive(Deserialize)]
struct Head {
    kind: Option<String>,
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    metadata: Option<HeadMetadata>,
}

#[derive(Deserialize)]
struct HeadMetadata {
    name: Option<String>,
}

struct Loader<'a> {
    source: &'a str,
    objects: Objects,
    warnings: Vec<ManifestWarning>,
    errors: Vec<ManifestError>,
}

impl Loader<'_> {
    fn document(&mut self, number: usize, document: Document<'_>) {
        let head: Head = match document.read() {
            Ok(head) => head,
            Err((line, message)) => {
                self.errors.push(ManifestError {
                    source: self.source.into(),
                    document: number,
                    object: None,
                    line,
                    message,
                });
                return;
            }
        };
        let Some(kind) = head.kind.clone() else {
            self.error(
                number,
                None,
                None,
                "`kind` is missing: every object needs one (e.g. `kind: Pod`)".into(),
            );
            return;
        };
        let name = head.metadata.as_ref().and_then(|m| m.name.clone());
        let object = Some(format!("{kind} {}", name.as_deref().unwrap_or("<unnamed>")));
        let expected_api = match kind.as_str() {
            "Namespace" | "Pod" | "ReplicationController" | "Service" | "List" => Some("v1"),
            "Deployment" => Some("apps/v1"),
            "NetworkPolicy" => Some("networking.k8s.io/v1"),
            _ => None,
        };
        let Some(expected_api) = expected_api else {
            self.warnings.push(ManifestWarning {
                source: self.source.into(),
                document: number,
                message: format!("kind `{kind}` does not affect networking; skipped"),
            });
            return;
        };
        if let Some(api) = &head.api_version
            && api != expected_api
        {
            self.error(
                number,
                object,
                None,
                format!("apiVersion: `{api}` is not `{expected_api}`, the version of {kind} netsim reads"),
            );
            return;
        }
        if kind != "List" && name.as_deref().is_none_or(str::is_empty) {
            self.error(number, object, None, "metadata.name: missing; every object needs a name".into());
            return;
        }
        let result = match kind.as_str() {
            "List" => document.read::<ListDocument>().map(|list| {
                for item in list.items {
                    self.document(number, Document::Value(item));
                }
            }),
            "Namespace" => document.read::<NamespaceDocument>().map(|d| {
                let name = d.metadata.name.unwrap_or_default();
                self.objects.namespaces.push(Namespace::new(&name, d.metadata.labels));
            }),
            "Pod" => document.read::<PodDocument>().and_then(|d| {
                let pod = pod(d).map_err(|m| (None, m))?;
                self.objects.pods.push(pod);
                Ok(())
            }),
            "Deployment" => document.read::<DeploymentDocument>().and_then(|d| {
                let workload = deployment(d).map_err(|m| (None, m))?;
                self.objects.workloads.push(workload);
                Ok(())
            }),
            "ReplicationController" => document.read::<ReplicationControllerDocument>().and_then(|d| {
                let workload = replication_controller(d).map_err(|m| (None, m))?;
                self.objects.workloads.push(workload);
                Ok(())
            }),
            "Service" => document.read::<ServiceDocument>().and_then(|d| {
                let service = service(d).map_err(|m| (None, m))?;
                self.objects.services.push(service);
                Ok(())
            }),
            "NetworkPolicy" => document.read::<PolicyDocument>().and_then(|d| {
                let policy = network_policy(d).map_err(|m| (None, m))?;
                self.objects.policies.push(policy);
                Ok(())
            }),
            _ => unreachable!("kinds were filtered above"),
        };
        if let Err((line, message)) = result {
            self.error(number, object, line, message);
        }
    }

    fn error(&mut self, document: usize, object: Option<String>, line: Option<usize>, message: String) {
        self.errors.push(ManifestError { source: self.source.into(), document, object, line, message });
    }
}

// --- The documents as written --------------------------------------------------------------

#[derive(Deserialize)]
struct ListDocument {
    #[serde(default)]
    items: Vec<serde_json::Value>,
}

#[derive(Deserialize, Default)]
struct Metadata {
    name: Option<String>,
    namespace: Option<String>,
    #[serde(default)]
    labels: Labels,
}

impl Metadata {
    fn namespace(&self) -> String {
        self.namespace.clone().unwrap_or_else(|| "default".into())
    }
}

#[derive(Deserialize)]
struct NamespaceDocument {
    metadata: Metadata,
}

#[derive(Deserialize)]
struct PodDocument {
    metadata: Metadata,
    spec: PodSpec,
    status: Option<PodStatus>,
}

#[derive(Deserialize, Default)]
struct PodSpec {
    #[serde(default)]
    containers: Vec<Container>,
    #[serde(rename = "nodeName")]
    node_name: Option<String>,
}

#[derive(Deserialize)]
struct Container {
    #[serde(default)]
    ports: Vec<ContainerPortDocument>,
}

#[derive(Deserialize)]
struct ContainerPortDocument {
    name: Option<String>,
    #[serde(rename = "containerPort")]
    container_port: i64,
    protocol: Option<String>,
}

#[derive(Deserialize)]
struct PodStatus {
    #[serde(rename = "podIP")]
    pod_ip: Option<String>,
}

#[derive(Deserialize)]
struct Template {
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    spec: PodSpec,
}

#[derive(Deserialize)]
struct DeploymentDocument {
    metadata: Metadata,
    spec: DeploymentSpec,
}

#[derive(Deserialize)]
struct DeploymentSpec {
    replicas: Option<i64>,
    selector: Option<SelectorDocument>,
    template: Template,
}

#[derive(Deserialize)]
struct ReplicationControllerDocument {
    metadata: Metadata,
    spec: ReplicationControllerSpec,
}

#[derive(Deserialize)]
struct ReplicationControllerSpec {
    replicas: Option<i64>,
    selector: Option<Labels>,
    template: Template,
}

#[derive(Deserialize)]
struct ServiceDocument {
    metadata: Metadata,
    spec: ServiceSpec,
}

#[derive(Deserialize)]
struct ServiceSpec {
    selector: Option<Labels>,
    #[serde(default)]
    ports: Vec<ServicePortDocument>,
    #[serde(rename = "clusterIP")]
    cluster_ip: Option<String>,
    #[serde(rename = "externalIPs", default)]
    external_ips: Vec<String>,
    #[serde(rename = "type")]
    service_type: Option<String>,
}

#[derive(Deserialize)]
struct ServicePortDocument {
    name: Option<String>,
    port: i64,
    #[serde(rename = "targetPort")]
    target_port: Option<IntOrString>,
    protocol: Option<String>,
    #[serde(rename = "nodePort")]
    node_port: Option<i64>,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum IntOrString {
    Int(i64),
    String(String),
}

#[derive(Deserialize)]
struct PolicyDocument {
    metadata: Metadata,
    spec: PolicySpec,
}

#[derive(Deserialize)]
struct PolicySpec {
    #[serde(rename = "podSelector")]
    pod_selector: Option<SelectorDocument>,
    #[serde(rename = "policyTypes")]
    policy_types: Option<Vec<String>>,
    ingress: Option<Vec<IngressDocument>>,
    egress: Option<Vec<EgressDocument>>,
}

#[derive(Deserialize)]
struct IngressDocument {
    #[serde(default)]
    from: Option<Vec<PeerDocument>>,
    #[serde(default)]
    ports: Option<Vec<PolicyPortDocument>>,
}

#[derive(Deserialize)]
struct EgressDocument {
    #[serde(default)]
    to: Option<Vec<PeerDocument>>,
    #[serde(default)]
    ports: Option<Vec<PolicyPortDocument>>,
}

#[derive(Deserialize)]
struct PeerDocument {
    #[serde(rename = "podSelector")]
    pod_selector: Option<SelectorDocument>,
    #[serde(rename = "namespaceSelector")]
    namespace_selector: Option<SelectorDocument>,
    #[serde(rename = "ipBlock")]
    ip_block: Option<IpBlockDocument>,
}

#[derive(Deserialize)]
struct IpBlockDocument {
    cidr: String,
    #[serde(default)]
    except: Vec<String>,
}

#[derive(Deserialize)]
struct PolicyPortDocument {
    protocol: Option<String>,
    port: Option<IntOrString>,
    #[serde(rename = "endPort")]
    end_port: Option<i64>,
}

#[derive(Deserialize, Default)]
struct SelectorDocument {
    #[serde(rename = "matchLabels", default)]
    match_labels: Option<Labels>,
    #[serde(rename = "matchExpressions", default)]
    match_expressions: Option<Vec<RequirementDocument>>,
}

#[derive(Deserialize)]
struct RequirementDocument {
    key: String,
    operator: String,
    #[serde(default)]
    values: Option<Vec<String>>,
}

// --- From documents to objects -------------------------------------------------------------

fn protocol(value: Option<&str>, field: &str) -> Result<Protocol, String> {
    match value {
        None | Some("TCP") => Ok(Protocol::Tcp),
        Some("UDP") => Ok(Protocol::Udp),
        Some("SCTP") => Ok(Protocol::Sctp),
        Some(other) => Err(format!("{field}: `{other}` is not a protocol (TCP, UDP or SCTP)")),
    }
}

fn port_number(value: i64, field: &str) -> Result<u16, String> {
    u16::try_from(value)
        .ok()
        .filter(|&port| port > 0)
        .ok_or_else(|| format!("{field}: {value} is not a port number (1 to 65535)"))
}

/// An IANA_SVC_NAME as Kubernetes validates port names: 1-15 lower-case alphanumerics and
/// hyphens, at least one letter, no leading, trailing or double hyphen.
fn valid_port_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().any(|b| b.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

fn ipv4(value: &str, field: &str) -> Result<Ipv4Addr, String> {
    value.parse().map_err(|_| format!("{field}: `{value}` is not an IPv4 address"))
}

fn template(template: Template, field: &str) -> Result<PodTemplate, String> {
    let mut ports = Vec::new();
    for (c, container) in template.spec.containers.into_iter().enumerate() {
        for (p, port) in container.ports.into_iter().enumerate() {
            let field = format!("{field}.containers[{c}].ports[{p}]");
            let number = port_number(port.container_port, &format!("{field}.containerPort"))?;
            let protocol = protocol(port.protocol.as_deref(), &format!("{field}.protocol"))?;
            if let Some(name) = &port.name
                && !valid_port_name(name)
            {
                return Err(format!(
                    "{field}.name: `{name}` is not a valid port name (1-15 lower-case letters, digits and hyphens)"
                ));
            }
            ports.push(ContainerPort { name: port.name, port: number, protocol });
        }
    }
    Ok(PodTemplate { labels: template.metadata.labels, ports })
}

fn pod(document: PodDocument) -> Result<Pod, String> {
    let namespace = document.metadata.namespace();
    let ip = match document.status.and_then(|s| s.pod_ip) {
        Some(ip) if !ip.is_empty() => Some(ipv4(&ip, "status.podIP")?),
        _ => None,
    };
    let node = document.spec.node_name.clone();
    let template = template(
        Template {
            metadata: Metadata { labels: document.metadata.labels, ..Metadata::default() },
            spec: document.spec,
        },
        "spec",
    )?;
    Ok(Pod { namespace, name: document.metadata.name.unwrap_or_default(), template, node, ip, owner: None })
}

fn replicas(value: Option<i64>) -> Result<u32, String> {
    match value {
        None => Ok(1),
        Some(n) => u32::try_from(n).map_err(|_| format!("spec.replicas: {n} is not a replica count")),
    }
}

fn deployment(document: DeploymentDocument) -> Result<Workload, String> {
    let selector = document.spec.selector.ok_or("spec.selector: missing; apps/v1 Deployments need one")?;
    let selector = label_selector(selector, "spec.selector")?;
    let template = template(document.spec.template, "spec.template.spec")?;
    if selector.is_empty() || !selector.matches(&template.labels) {
        return Err("spec.selector: does not match spec.template.metadata.labels".into());
    }
    Ok(Workload {
        kind: WorkloadKind::Deployment,
        namespace: document.metadata.namespace(),
        name: document.metadata.name.unwrap_or_default(),
        replicas: replicas(document.spec.replicas)?,
        selector,
        template,
    })
}

fn replication_controller(document: ReplicationControllerDocument) -> Result<Workload, String> {
    let template = template(document.spec.template, "spec.template.spec")?;
    // A replication controller without a selector selects its template's labels.
    let selector =
        LabelSelector::from_labels(document.spec.selector.unwrap_or_else(|| template.labels.clone()));
    if selector.is_empty() || !selector.matches(&template.labels) {
        return Err("spec.selector: does not match spec.template.metadata.labels".into());
    }
    Ok(Workload {
        kind: WorkloadKind::ReplicationController,
        namespace: document.metadata.namespace(),
        name: document.metadata.name.unwrap_or_default(),
        replicas: replicas(document.spec.replicas)?,
        selector,
        template,
    })
}

fn service(document: ServiceDocument) -> Result<Service, String> {
    let spec = document.spec;
    let node_ports = matches!(spec.service_type.as_deref(), Some("NodePort" | "LoadBalancer"));
    match spec.service_type.as_deref() {
        None | Some("ClusterIP" | "NodePort" | "LoadBalancer") => {}
        Some(other) => {
            return Err(format!("spec.type: `{other}` is not supported (ClusterIP, NodePort, LoadBalancer)"));
        }
    }
    if spec.ports.is_empty() {
        return Err("spec.ports: a service needs at least one port".into());
    }
    let mut ports: Vec<ServicePort> = Vec::new();
    for (index, port) in spec.ports.into_iter().enumerate() {
        let field = format!("spec.ports[{index}]");
        let number = port_number(port.port, &format!("{field}.port"))?;
        let target_port = match port.target_port {
            None => TargetPort::Number(number),
            Some(IntOrString::Int(n)) => TargetPort::Number(port_number(n, &format!("{field}.targetPort"))?),
            Some(IntOrString::String(name)) => match name.parse::<i64>() {
                Ok(n) => TargetPort::Number(port_number(n, &format!("{field}.targetPort"))?),
                Err(_) if valid_port_name(&name) => TargetPort::Name(name),
                Err(_) => {
                    return Err(format!(
                        "{field}.targetPort: `{name}` is neither a port number nor a valid port name"
                    ));
                }
            },
        };
        let protocol = protocol(port.protocol.as_deref(), &format!("{field}.protocol"))?;
        let node_port = match port.node_port {
            Some(n) if node_ports => Some(port_number(n, &format!("{field}.nodePort"))?),
            Some(_) => {
                return Err(format!(
                    "{field}.nodePort: only NodePort and LoadBalancer services have node ports"
                ));
            }
            None => None,
        };
        if ports.iter().any(|p| p.port == number && p.protocol == protocol) {
            return Err(format!("{field}: port {number}/{protocol} is listed twice"));
        }
        ports.push(ServicePort { name: port.name, port: number, target_port, protocol, node_port });
    }
    if ports.len() > 1 && ports.iter().any(|p| p.name.is_none()) {
        return Err("spec.ports: every port of a multi-port service needs a `name`".into());
    }
    let cluster_ip = match spec.cluster_ip.as_deref() {
        None | Some("") => ClusterIpRequest::Allocate,
        Some("None") => ClusterIpRequest::Headless,
        Some(ip) => ClusterIpRequest::Fixed(ipv4(ip, "spec.clusterIP")?),
    };
    let external_ips = spec
        .external_ips
        .iter()
        .enumerate()
        .map(|(i, ip)| ipv4(ip, &format!("spec.externalIPs[{i}]")))
        .collect::<Result<_, _>>()?;
    Ok(Service {
        namespace: document.metadata.namespace(),
        name: document.metadata.name.unwrap_or_default(),
        labels: document.metadata.labels,
        selector: spec.selector.filter(|s| !s.is_empty()),
        ports,
        cluster_ip,
        external_ips,
    })
}

fn label_selector(document: SelectorDocument, field: &str) -> Result<LabelSelector, String> {
    let mut match_expressions = Vec::new();
    for (index, requirement) in document.match_expressions.unwrap_or_default().into_iter().enumerate() {
        let field = format!("{field}.matchExpressions[{index}]");
        let operator = match requirement.operator.as_str() {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            other => {
                return Err(format!("{field}.operator: `{other}` is not In, NotIn, Exists or DoesNotExist"));
            }
        };
        let values = requirement.values.unwrap_or_default();
        let needs_values = matches!(operator, Operator::In | Operator::NotIn);
        if needs_values && values.is_empty() {
            return Err(format!("{field}.values: must be non-empty for `{}`", requirement.operator));
        }
        if !needs_values && !values.is_empty() {
            return Err(format!("{field}.values: must be empty for `{}`", requirement.operator));
        }
        match_expressions.push(Requirement { key: requirement.key, operator, values });
    }
    Ok(LabelSelector { match_labels: document.match_labels.unwrap_or_default(), match_expressions })
}

fn peers(documents: Option<Vec<PeerDocument>>, field: &str) -> Result<Vec<Peer>, String> {
    let mut peers = Vec::new();
    for (index, peer) in documents.unwrap_or_default().into_iter().enumerate() {
        let field = format!("{field}[{index}]");
        match (peer.pod_selector, peer.namespace_selector, peer.ip_block) {
            (None, None, None) => {
                return Err(format!("{field}: a peer needs podSelector, namespaceSelector or ipBlock"));
            }
            (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
                return Err(format!(
                    "{field}: ipBlock cannot be combined with podSelector or namespaceSelector"
                ));
            }
            (None, None, Some(block)) => {
                let cidr: Ipv4Net = block
                    .cidr
                    .parse()
                    .map_err(|_| format!("{field}.ipBlock.cidr: `{}` is not an IPv4 CIDR", block.cidr))?;
                let mut except = Vec::new();
                for (i, hole) in block.except.iter().enumerate() {
                    let hole: Ipv4Net = hole
                        .parse()
                        .map_err(|_| format!("{field}.ipBlock.except[{i}]: `{hole}` is not an IPv4 CIDR"))?;
                    if !cidr.contains(&hole) || hole.prefix_len() <= cidr.prefix_len() {
                        return Err(format!(
                            "{field}.ipBlock.except[{i}]: `{hole}` must be strictly inside `{cidr}`"
                        ));
                    }
                    except.push(hole);
                }
                peers.push(Peer::IpBlock { cidr, except });
            }
            (pods, namespaces, None) => peers.push(Peer::Pods {
                pod_selector: pods.map(|s| label_selector(s, &format!("{field}.podSelector"))).transpose()?,
                namespace_selector: namespaces
                    .map(|s| label_selector(s, &format!("{field}.namespaceSelector")))
                    .transpose()?,
            }),
        }
    }
    Ok(peers)
}

fn policy_ports(documents: Option<Vec<PolicyPortDocument>>, field: &str) -> Result<Vec<PolicyPort>, String> {
    let mut ports = Vec::new();
    for (index, port) in documents.unwrap_or_default().into_iter().enumerate() {
        let field = format!("{field}[{index}]");
        let protocol = protocol(port.protocol.as_deref(), &format!("{field}.protocol"))?;
        let number_or_name = match port.port {
            None => None,
            Some(IntOrString::Int(n)) => Some(TargetPort::Number(port_number(n, &format!("{field}.port"))?)),
            Some(IntOrString::String(name)) => match name.parse::<i64>() {
                Ok(n) => Some(TargetPort::Number(port_number(n, &format!("{field}.port"))?)),
                Err(_) if valid_port_name(&name) => Some(TargetPort::Name(name)),
                Err(_) => {
                    return Err(format!(
                        "{field}.port: `{name}` is neither a port number nor a valid port name"
                    ));
                }
            },
        };
        let end_port = match (port.end_port, &number_or_name) {
            (None, _) => None,
            (Some(end), Some(TargetPort::Number(start))) => {
                let end = port_number(end, &format!("{field}.endPort"))?;
                if end < *start {
                    return Err(format!("{field}.endPort: {end} is below port {start}"));
                }
                Some(end)
            }
            (Some(_), _) => return Err(format!("{field}.endPort: allowed only with a numeric `port`")),
        };
        ports.push(PolicyPort { protocol, port: number_or_name, end_port });
    }
    Ok(ports)
}

fn network_policy(document: PolicyDocument) -> Result<NetworkPolicy, String> {
    let spec = document.spec;
    let selector = spec.pod_selector.ok_or("spec.podSelector: missing (use `{}` to select every pod)")?;
    let pod_selector = label_selector(selector, "spec.podSelector")?;
    let ingress = spec
        .ingress
        .map(|rules| {
            rules
                .into_iter()
                .enumerate()
                .map(|(i, rule)| {
                    let field = format!("spec.ingress[{i}]");
                    Ok(PolicyRule {
                        ports: policy_ports(rule.ports, &format!("{field}.ports"))?,
                        peers: peers(rule.from, &format!("{field}.from"))?,
                    })
                })
                .collect::<Result<Vec<_>, String>>()
        })
        .transpose()?;
    let egress = spec
        .egress
        .map(|rules| {
            rules
                .into_iter()
                .enumerate()
                .map(|(i, rule)| {
                    let field = format!("spec.egress[{i}]");
                    Ok(PolicyRule {
                        ports: policy_ports(rule.ports, &format!("{field}.ports"))?,
                        peers: peers(rule.to, &format!("{field}.to"))?,
                    })
                })
                .collect::<Result<Vec<_>, String>>()
        })
        .transpose()?;
    // policyTypes defaulting (networking/v1): Ingress always; Egress when egress rules exist.
    let (ingress_isolation, egress_isolation) = match spec.policy_types {
        Some(types) => {
            let mut ingress_type = false;
            let mut egress_type = false;
            for (i, t) in types.iter().enumerate() {
                match t.as_str() {
                    "Ingress" => ingress_type = true,
                    "Egress" => egress_type = true,
                    other => {
                        return Err(format!("spec.policyTypes[{i}]: `{other}` is not Ingress or Egress"));
                    }
                }
            }
            (ingress_type, egress_type)
        }
        None => (true, egress.as_ref().is_some_and(|rules| !rules.is_empty())),
    };
    Ok(NetworkPolicy {
        namespace: document.metadata.namespace(),
        name: document.metadata.name.unwrap_or_default(),
        pod_selector,
        ingress_isolation,
        egress_isolation,
        ingress: ingress.unwrap_or_default(),
        egress: egress.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests;
