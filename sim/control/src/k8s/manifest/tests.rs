//! Manifest loading: real-looking manifests in, objects or located errors out.

use super::*;

fn errors(text: &str) -> Vec<String> {
    match parse("m.yaml", text) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

/// Data-driven: each manifest and the one error it must produce.
#[test]
fn bad_manifests_name_file_document_and_field() {
    let cases = [
        (
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\nspec:\n  containers:\n  - name: x\n    ports:\n    - containerPort: 'abc'\n",
            "m.yaml:9: error: document 1 (Pod a): spec.containers[0].ports[0].containerPort: expected an integer",
        ),
        ("kind: Pod\nmetadata: [\n", "m.yaml:2: error: document 1: metadata: expected mapping start"),
        (
            "metadata: {name: x}\n",
            "m.yaml: error: document 1: `kind` is missing: every object needs one (e.g. `kind: Pod`)",
        ),
        (
            "apiVersion: v1\nkind: Pod\nspec: {}\n",
            "m.yaml: error: document 1 (Pod <unnamed>): metadata.name: missing; every object needs a name",
        ),
        (
            "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: d}\n",
            "m.yaml: error: document 1 (Deployment d): apiVersion: `extensions/v1beta1` is not `apps/v1`, the version of Deployment netsim reads",
        ),
        (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  selector: {matchLabels: {app: x}}\n  template:\n    metadata: {labels: {app: y}}\n    spec: {containers: []}\n",
            "m.yaml: error: document 1 (Deployment d): spec.selector: does not match spec.template.metadata.labels",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n  - port: 80\n  - port: 81\n",
            "m.yaml: error: document 1 (Service s): spec.ports: every port of a multi-port service needs a `name`",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n  - port: 80\n    protocol: ICMP\n",
            "m.yaml: error: document 1 (Service s): spec.ports[0].protocol: `ICMP` is not a protocol (TCP, UDP or SCTP)",
        ),
        (
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n  podSelector: {}\n  ingress:\n  - ports:\n    - port: http\n      endPort: 90\n",
            "m.yaml: error: document 1 (NetworkPolicy p): spec.ingress[0].ports[0].endPort: allowed only with a numeric `port`",
        ),
        (
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n  podSelector: {}\n  egress:\n  - to:\n    - ipBlock: {cidr: 10.0.0.0/8, except: [192.168.0.0/16]}\n",
            "m.yaml: error: document 1 (NetworkPolicy p): spec.egress[0].to[0].ipBlock.except[0]: `192.168.0.0/16` must be strictly inside `10.0.0.0/8`",
        ),
        (
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n  podSelector: {}\n  ingress:\n  - from:\n    - podSelector: {}\n      ipBlock: {cidr: 10.0.0.0/8}\n",
            "m.yaml: error: document 1 (NetworkPolicy p): spec.ingress[0].from[0]: ipBlock cannot be combined with podSelector or namespaceSelector",
        ),
        (
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n  podSelector:\n    matchExpressions: [{key: a, operator: In}]\n",
            "m.yaml: error: document 1 (NetworkPolicy p): spec.podSelector.matchExpressions[0].values: must be non-empty for `In`",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {}\nstatus: {podIP: 10.0.0.300}\n",
            "m.yaml: error: document 1 (Pod p): status.podIP: `10.0.0.300` is not an IPv4 address",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(errors(text), [expected], "\n{text}");
    }
}

#[test]
fn every_bad_document_is_reported_and_counted_from_one() {
    let text = "---\n# a comment-only document is not counted\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: good}\nspec: {}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{ports: [{containerPort: 0}]}]}\n---\nkind: Pod\n";
    assert_eq!(
        errors(text),
        [
            "m.yaml: error: document 2 (Pod a): spec.containers[0].ports[0].containerPort: 0 is not a port number (1 to 65535)",
            "m.yaml: error: document 3 (Pod <unnamed>): metadata.name: missing; every object needs a name",
        ]
    );
}

/// A deployment as people write them, with fields netsim does not model, and a pod as
/// `kubectl get -o yaml` exports it.
const REALISTIC: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: frontend
  namespace: shop
  annotations: {deployment.kubernetes.io/revision: "3"}
spec:
  replicas: 3
  strategy: {type: RollingUpdate}
  selector:
    matchLabels: {app: frontend}
  template:
    metadata:
      labels: {app: frontend, tier: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        resources: {limits: {cpu: 500m}}
        ports:
        - {containerPort: 8080, name: http}
        - {containerPort: 9090, name: metrics, protocol: TCP}
      - name: sidecar
        image: envoy
        ports: [{containerPort: 53, protocol: UDP, name: dns}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {a: b}
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata:
    name: redis-0
    namespace: shop
    labels: {app: redis}
    uid: 0b7a7d3e-0000-0000-0000-000000000000
  spec:
    nodeName: host-7
    containers: [{name: redis, image: redis, ports: [{containerPort: 6379, protocol: TCP}]}]
  status:
    phase: Running
    podIP: 10.0.3.4
    podIPs: [{ip: 10.0.3.4}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-in, namespace: shop}
spec:
  podSelector: {matchLabels: {app: frontend}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {team: edge}}
      podSelector: {matchExpressions: [{key: role, operator: In, values: [lb]}]}
    ports:
    - {port: http}
    - {port: 9000, endPort: 9100}
  egress: []
"#;

#[test]
fn realistic_manifests_load_and_skip_what_does_not_matter() {
    let (objects, warnings) = parse("shop.yaml", REALISTIC).expect("valid");
    assert_eq!(
        warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["shop.yaml: warning: document 2: kind `ConfigMap` does not affect networking; skipped"]
    );
    let deployment = &objects.workloads[0];
    assert_eq!(
        (deployment.name.as_str(), deployment.namespace.as_str(), deployment.replicas),
        ("frontend", "shop", 3)
    );
    let ports: Vec<(Option<&str>, u16, Protocol)> =
        deployment.template.ports.iter().map(|p| (p.name.as_deref(), p.port, p.protocol)).collect();
    assert_eq!(
        ports,
        [
            (Some("http"), 8080, Protocol::Tcp),
            (Some("metrics"), 9090, Protocol::Tcp),
            (Some("dns"), 53, Protocol::Udp)
        ]
    );
    let pod = &objects.pods[0];
    assert_eq!(
        (pod.name.as_str(), pod.node.as_deref(), pod.ip),
        ("redis-0", Some("host-7"), Some("10.0.3.4".parse().unwrap()))
    );
    let policy = &objects.policies[0];
    // `egress: []` is present but empty: Egress is not defaulted in.
    assert!(policy.ingress_isolation && !policy.egress_isolation);
    assert_eq!(
        policy.ingress[0].ports[1],
        PolicyPort { protocol: Protocol::Tcp, port: Some(TargetPort::Number(9000)), end_port: Some(9100) }
    );
    let Peer::Pods { pod_selector: Some(pods), namespace_selector: Some(namespaces) } =
        &policy.ingress[0].peers[0]
    else {
        panic!("both selectors in one peer");
    };
    assert_eq!(pods.match_expressions[0].operator, Operator::In);
    assert_eq!(namespaces.match_labels["team"], "edge");
}

#[test]
fn policy_types_default_as_the_api_server_does() {
    let policy = |spec: &str| {
        let text = format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p}}\nspec:\n  podSelector: {{}}\n{spec}"
        );
        let (objects, _) = parse("p.yaml", &text).expect("valid");
        let policy = &objects.policies[0];
        (policy.ingress_isolation, policy.egress_isolation)
    };
    assert_eq!(policy(""), (true, false));
    assert_eq!(policy("  egress: [{}]\n"), (true, true));
    assert_eq!(policy("  policyTypes: [Egress]\n"), (false, true));
    assert_eq!(policy("  policyTypes: [Ingress, Egress]\n  ingress: [{}]\n"), (true, true));
}

#[test]
fn marker_lines_split_documents_exactly() {
    let documents = split_documents("a: 1\n---\nb: 2\n--- # note\nc: 3\n...\n");
    assert_eq!(documents, [(1, "a: 1\n"), (3, "b: 2\n"), (5, "c: 3\n"), (7, "")]);
    let inline = split_documents("--- {kind: x}\n");
    assert_eq!(inline, [(1, ""), (1, " {kind: x}\n")]);
}
