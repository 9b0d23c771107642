//! Scenario loading, data-driven: each case is a file and the diagnostics it must produce.

use super::*;
use crate::scenario::{Change, Dataplane, Endpoints, PodTarget};

const HEADER: &str = "name = \"t\"\nseed = 3\nduration = \"1s\"\n";

/// Loads `text` as `t.toml` and compares the rendered diagnostics with `expected` (one per
/// line; empty for a valid file).
fn check(text: &str, expected: &str) {
    let rendered = match Scenario::parse(Path::new("t.toml"), text) {
        Ok(_) => String::new(),
        Err(error) => error.to_string(),
    };
    assert_eq!(rendered.trim(), expected.trim(), "\n--- file ---\n{text}");
}

#[test]
fn a_minimal_file_is_valid_and_defaults_to_the_test_bed() {
    let scenario = Scenario::parse(Path::new("t.toml"), HEADER).expect("valid");
    assert_eq!(scenario.fabric, FabricConfig::default());
    assert_eq!(scenario.seed, 3);
    assert_eq!(scenario.duration, SimDuration::from_secs(1));
    assert!(scenario.traffic.is_empty() && scenario.events.is_empty() && scenario.checks.is_empty());
}

#[test]
fn syntax_errors_name_line_and_column() {
    check("name = \"x\"\nseed = [\n", "t.toml:2:9: error: unclosed array, expected `]`");
    check(
        "name = \"x\"\nduration = \"1s\"\nseed = \"abc\"\n",
        "t.toml:3:8: error: invalid type: string \"abc\", expected u64",
    );
}

#[test]
fn unknown_keys_are_errors() {
    check(
        &format!("{HEADER}[fabric_typo]\nx = 1\n"),
        "t.toml:4:2: error: unknown field `fabric_typo`, expected one of `name`, `seed`, `duration`, `description`, `events_max`, `dataplane`, `manifests`, `isolation`, `fabric`, `cluster`, `overlay`, `calico`, `traffic`, `event`, `check`, `captures`, `churn`, `cost`",
    );
    check(
        &format!("{HEADER}[fabric]\nhost = 3\n"),
        "t.toml:5:1: error: unknown field `host`, expected one of `hosts`, `leaves`, `spines`, `uplinks_per_host`, `mtu`, `detection_delay`, `ecmp_seeding`, `host_link`, `fabric_link`",
    );
}

#[test]
fn quantities_need_units() {
    check(
        "name = \"x\"\nduration = 5\n",
        "t.toml:2:12: error: `5` has no unit: write a duration such as \"500ms\"",
    );
    check(
        "name = \"x\"\nduration = \"5 parsecs\"\n",
        "t.toml:2:12: error: duration `5 parsecs`: unknown unit `parsecs` (units: ns, us, µs, ms, s)",
    );
    check(
        &format!("{HEADER}[fabric]\nhost_link = {{ bandwidth = \"10GB/s\" }}\n"),
        "t.toml:5:27: error: bandwidth `10GB/s`: unknown unit `GB/s` (units: bps, kbps, Mbps, Gbps, Tbps, b/s, kb/s, Mb/s, Gb/s, Tb/s)",
    );
}

#[test]
fn names_must_exist_in_the_fabric() {
    let text = format!(
        "{HEADER}[[traffic]]\nfrom = \"host-100\"\nto = \"host-5..2\"\nrate = \"1k/s\"\n\n\
         [[event]]\nat = \"1ms\"\naction = \"fail\"\nlink = \"leaf-0:leaf-1\"\n\n\
         [[event]]\nat = \"2ms\"\naction = \"fail\"\nswitch = \"host-3\"\n"
    );
    check(
        &text,
        "t.toml:5:8: error: `host-100` is not a host: write `host-N` (0 <= N < 100), `host-A..B` or `all`\n\
         t.toml:6:6: error: `host-5..2` is not a host range: write `host-A..B` (A through B) with 0 <= A <= B < 100\n\
         t.toml:12:8: error: link `leaf-0:leaf-1` does not exist in this fabric: write a port name such as `host-0:uplink0` or `leaf-0:spine-0`\n\
         t.toml:17:10: error: switch `host-3` does not exist in this fabric: write `leaf-N` or `spine-N`",
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = format!(
        "{HEADER}[[traffic]]\nfrom = \"host-1\"\nto = \"host-1\"\nrate = \"1k/s\"\nsize = \"20B\"\n\n\
         [[event]]\nat = \"2s\"\naction = \"fail\"\nhost = \"host-1\"\n\n\
         [[check]]\nkind = \"delivery_ratio\"\nmin = 1.5\n"
    );
    check(
        &text,
        "t.toml:4:1: error: traffic `traffic-0`: `from` and `to` must allow a flow between two different hosts\n\
         t.toml:8:8: error: traffic `traffic-0`: `size` 20B must be between 52B (headers and probe payload) and 65535B\n\
         t.toml:11:6: error: event at 2s is not before the scenario's duration\n\
         t.toml:17:7: error: `min` and `max` are ratios between 0 and 1",
    );
}

#[test]
fn events_must_alternate_per_element() {
    let text = format!(
        "{HEADER}[[event]]\nat = \"1ms\"\naction = \"recover\"\nswitch = \"spine-0\"\n\n\
         [[event]]\nat = \"2ms\"\naction = \"fail\"\nhost = \"host-1\"\nlink = \"host-1:uplink0\"\n"
    );
    check(
        &text,
        "t.toml:4:1: error: recover of `spine-0` at 1ms: it is not failed then\n\
         t.toml:9:1: error: an event names exactly one of `link`, `switch` or `host`",
    );
}

#[test]
fn fabric_shape_errors_point_at_the_fabric_table() {
    check(
        &format!("{HEADER}[fabric]\nleaves = 3\n"),
        "t.toml:4:1: error: [fabric]: `leaves` (3) must be a multiple of `uplinks_per_host` (2)",
    );
    check(
        &format!("{HEADER}[fabric]\nfabric_link = {{ mtu = \"100KiB\" }}\n"),
        "t.toml:4:1: error: [fabric] fabric_link: MTU 100KiB must be between 68B and 65535B",
    );
    check(
        &format!("{HEADER}[fabric]\nmtu = \"40B\"\n"),
        "t.toml:4:1: error: [fabric] mtu: MTU 40B must be between 68B and 65535B",
    );
}

#[test]
fn checks_resolve_traffic_names_and_default_their_names() {
    let text = format!(
        "{HEADER}[[traffic]]\nname = \"web\"\nfrom = \"host-0\"\nto = \"all\"\nrate = \"1k/s\"\n\n\
         [[check]]\nkind = \"delivery_ratio\"\nmin = 0.5\ntraffic = \"web\"\n\n\
         [[check]]\nkind = \"delivery_ratio\"\nmin = 0.5\ntraffic = \"db\"\n"
    );
    check(&text, "t.toml:18:11: error: no traffic entry is named `db`");
    let valid = text.replace("\"db\"", "\"web\"\nname = \"web-again\"");
    let scenario = Scenario::parse(Path::new("t.toml"), &valid).expect("valid");
    let names: Vec<&str> = scenario.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["delivery_ratio[web]", "web-again"]);
    let Endpoints::Hosts { to, .. } = &scenario.traffic[0].endpoints else { panic!("host traffic") };
    assert_eq!(to.len(), 100);
}

#[test]
fn check_names_must_be_unique() {
    let text = format!(
        "{HEADER}[[check]]\nkind = \"loss_only_in_failure_windows\"\n\n[[check]]\nkind = \"loss_only_in_failure_windows\"\n"
    );
    check(
        &text,
        "t.toml:7:1: error: check name `loss_only_in_failure_windows` is used twice (give one a `name`)",
    );
}

#[test]
fn failure_windows_extend_past_recovery_by_the_detection_delay() {
    let text = format!(
        "{HEADER}[[event]]\nat = \"100ms\"\naction = \"fail\"\nswitch = \"spine-1\"\n\n\
         [[event]]\nat = \"300ms\"\naction = \"recover\"\nswitch = \"spine-1\"\n\n\
         [[event]]\nat = \"500ms\"\naction = \"fail\"\nlink = \"leaf-2:spine-3\"\n"
    );
    let scenario = Scenario::parse(Path::new("t.toml"), &text).expect("valid");
    let windows = scenario.failure_windows();
    assert_eq!(
        windows,
        vec![
            FailureWindow { target: "spine-1".into(), from_ns: 100_000_000, until_ns: Some(350_000_000) },
            FailureWindow { target: "leaf-2:spine-3".into(), from_ns: 500_000_000, until_ns: None },
        ]
    );
}

#[test]
fn the_shipped_scenarios_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("scenarios/ exists") {
        let path = entry.expect("readable entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
            count += 1;
        }
    }
    assert!(count >= 2, "found {count} scenarios");
}

/// Writes `files` (name, contents) into a fresh directory and loads `scenario.toml` from it.
fn load_with_files(test: &str, files: &[(&str, &str)]) -> Result<Scenario, String> {
    let dir = std::env::temp_dir().join(format!("netsim-scenario-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    for (name, contents) in files {
        std::fs::write(dir.join(name), contents).expect("write file");
    }
    let result = Scenario::load(&dir.join("scenario.toml"))
        .map_err(|e| e.to_string().replace(&dir.display().to_string(), "DIR"));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

const PODS: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: a, labels: {name: web}}\nspec: {containers: [{ports: [{containerPort: 80}]}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {selector: {name: web}, ports: [{port: 80}]}\n";

#[test]
fn overlay_scenarios_resolve_pods_and_services() {
    let scenario = format!(
        "{HEADER}dataplane = \"overlay\"\nmanifests = [\"k8s.yaml\"]\n[[traffic]]\nfrom = \"pods:name=web\"\nto = \"service:web\"\nport = 80\nrate = \"1k/s\"\nreply_size = \"100B\"\n"
    );
    let loaded = load_with_files("ok", &[("scenario.toml", &scenario), ("k8s.yaml", PODS)]).expect("valid");
    let Dataplane::Overlay(overlay) = &loaded.dataplane else { panic!("overlay") };
    assert_eq!(overlay.cluster.pods().len(), 1);
    let Endpoints::Pods { from, to: PodTarget::Service { service: 0 } } = &loaded.traffic[0].endpoints else {
        panic!("pods to service")
    };
    assert_eq!(from.len(), 1);
    assert_eq!(loaded.traffic[0].protocol, 6, "service traffic defaults to TCP");
    assert_eq!(loaded.traffic[0].reply_size, Some(100));
}

#[test]
fn overlay_problems_are_located_in_the_right_file() {
    let scenario = format!("{HEADER}dataplane = \"overlay\"\nmanifests = [\"k8s.yaml\"]\n");
    let broken = PODS.replace("containerPort: 80", "containerPort: 99999");
    let error =
        load_with_files("manifest", &[("scenario.toml", &scenario), ("k8s.yaml", &broken)]).unwrap_err();
    assert_eq!(
        error,
        "DIR/k8s.yaml: error: document 1 (Pod a): spec.containers[0].ports[0].containerPort: 99999 is not a port number (1 to 65535)"
    );

    let missing = load_with_files("missing", &[("scenario.toml", &scenario)]).unwrap_err();
    assert!(
        missing.starts_with("DIR/scenario.toml:5:14: error: cannot read manifest DIR/k8s.yaml"),
        "{missing}"
    );

    let wrong_service =
        format!("{scenario}[[traffic]]\nfrom = \"pods:name=web\"\nto = \"service:db\"\nrate = \"1k/s\"\n");
    let error =
        load_with_files("service", &[("scenario.toml", &wrong_service), ("k8s.yaml", PODS)]).unwrap_err();
    assert_eq!(
        error,
        "DIR/scenario.toml:8:6: error: traffic `traffic-0`: no service `default/db` with a ClusterIP in the manifests"
    );

    let no_overlay =
        format!("{HEADER}[[traffic]]\nfrom = \"pods:name=web\"\nto = \"service:web\"\nrate = \"1k/s\"\n");
    let error = load_with_files("underlay", &[("scenario.toml", &no_overlay)]).unwrap_err();
    assert_eq!(
        error,
        "DIR/scenario.toml:5:8: error: traffic `traffic-0`: pod traffic needs `dataplane = \"overlay\"` or `\"calico\"`, and `manifests`"
    );
}

#[test]
fn calico_scenarios_take_calico_settings_and_refuse_overlay_ones() {
    let base = format!("{HEADER}dataplane = \"calico\"\nmanifests = [\"k8s.yaml\"]\n");
    let scenario = format!(
        "{base}[calico]\nencapsulation = \"ipip\"\nbgp = \"route-reflectors\"\nhold_time = \"9s\"\nconntrack_max = 1000\n"
    );
    let loaded =
        load_with_files("calico", &[("scenario.toml", &scenario), ("k8s.yaml", PODS)]).expect("valid");
    let Dataplane::Calico(spec) = &loaded.dataplane else { panic!("calico") };
    assert_eq!(spec.calico.encapsulation, CalicoEncapsulation::IpIp);
    assert_eq!(spec.calico.bgp, BgpTopology::RouteReflectors);
    assert_eq!(
        (spec.calico.keepalive, spec.calico.hold_time),
        (SimDuration::from_secs(1), SimDuration::from_secs(9))
    );
    assert_eq!(spec.flows_max, 1000);
    assert_eq!(spec.isolation, Isolation::NetworkPolicy, "calico's default isolation");
    // Calico's IPAM hands out per-host blocks.
    assert!(matches!(spec.cluster.config().ipam, IpamMode::HostBlocks { prefix_len: 26 }));

    // The seeds' label model on Calico: felix compiles it into egress chains.
    let labels = format!("{base}isolation = \"uses-labels\"\n");
    let loaded =
        load_with_files("calico-labels", &[("scenario.toml", &labels), ("k8s.yaml", PODS)]).expect("valid");
    assert_eq!(loaded.dataplane.cluster_spec().unwrap().isolation, Isolation::UsesLabels);

    for (extra, message) in [
        (
            "[overlay]\nencapsulation = \"vxlan\"\n",
            "DIR/scenario.toml:6:1: error: [overlay] settings need `dataplane = \"overlay\"`; this scenario is calico",
        ),
        (
            "[calico]\nkeepalive = \"5s\"\nhold_time = \"3s\"\n",
            "DIR/scenario.toml:6:1: error: [calico] keepalive must be positive and at most hold_time",
        ),
        (
            "[calico]\nbgp = \"ospf\"\n",
            "DIR/scenario.toml:7:7: error: unknown variant `ospf`, expected `full-mesh` or `route-reflectors`",
        ),
    ] {
        let text = format!("{base}{extra}");
        let error =
            load_with_files("calico-bad", &[("scenario.toml", &text), ("k8s.yaml", PODS)]).unwrap_err();
        assert_eq!(error, message, "{extra}");
    }
    let overlay = format!(
        "{HEADER}dataplane = \"overlay\"\nmanifests = [\"k8s.yaml\"]\n[calico]\nbgp = \"full-mesh\"\n"
    );
    let error =
        load_with_files("overlay-calico", &[("scenario.toml", &overlay), ("k8s.yaml", PODS)]).unwrap_err();
    assert_eq!(error, "DIR/scenario.toml:6:1: error: [calico] settings need `dataplane = \"calico\"`");
}

#[test]
fn churn_events_name_existing_pods_and_workloads() {
    const RC: &str = "apiVersion: v1\nkind: ReplicationController\nmetadata: {name: web}\nspec:\n  replicas: 2\n  template:\n    metadata: {labels: {name: web}}\n    spec: {containers: [{ports: [{containerPort: 80}]}]}\n";
    let base = format!("{HEADER}dataplane = \"overlay\"\nmanifests = [\"k8s.yaml\"]\n");
    let ok = format!(
        "{base}[[event]]\nat = \"1ms\"\naction = \"scale\"\nworkload = \"web\"\nreplicas = 3\n[[event]]\nat = \"2ms\"\naction = \"delete\"\npod = \"default/web-0\"\n"
    );
    let loaded = load_with_files("churn-ok", &[("scenario.toml", &ok), ("k8s.yaml", RC)]).expect("valid");
    assert_eq!(loaded.churn.len(), 2);
    assert_eq!(
        loaded.churn[0].change,
        Change::Scale { namespace: "default".into(), name: "web".into(), replicas: 3 }
    );
    assert_eq!(loaded.failure_windows().len(), 2, "each change opens a window");

    let unknown = format!("{base}[[event]]\nat = \"1ms\"\naction = \"delete\"\npod = \"default/db-0\"\n");
    let error = load_with_files("churn-pod", &[("scenario.toml", &unknown), ("k8s.yaml", RC)]).unwrap_err();
    assert_eq!(error, "DIR/scenario.toml:9:7: error: no pod `default/db-0` in the manifests");
    let mixed = format!("{base}[[event]]\nat = \"1ms\"\naction = \"scale\"\nworkload = \"web\"\n");
    let error = load_with_files("churn-fields", &[("scenario.toml", &mixed), ("k8s.yaml", RC)]).unwrap_err();
    assert_eq!(
        error,
        "DIR/scenario.toml:6:1: error: a `scale` event names `workload` and `replicas` (and nothing else)"
    );
    const SERVICE: &str = "---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {selector: {name: web}, ports: [{port: 80}]}\n";
    let manifests = format!("{RC}{SERVICE}");
    let service = format!("{base}[[event]]\nat = \"1ms\"\naction = \"delete\"\nservice = \"web\"\n");
    let loaded = load_with_files("churn-service", &[("scenario.toml", &service), ("k8s.yaml", &manifests)])
        .expect("valid");
    assert_eq!(
        loaded.churn[0].change,
        Change::DeleteService { namespace: "default".into(), name: "web".into() }
    );
    assert_eq!(loaded.churn[0].change.to_string(), "delete service default/web");
    let missing = format!("{base}[[event]]\nat = \"1ms\"\naction = \"delete\"\nservice = \"default/db\"\n");
    let error = load_with_files("churn-no-service", &[("scenario.toml", &missing), ("k8s.yaml", &manifests)])
        .unwrap_err();
    assert_eq!(error, "DIR/scenario.toml:9:11: error: no Service `default/db` in the manifests");
    let scaled = format!("{base}[[event]]\nat = \"1ms\"\naction = \"scale\"\nservice = \"web\"\n");
    let error =
        load_with_files("churn-service-scale", &[("scenario.toml", &scaled), ("k8s.yaml", &manifests)])
            .unwrap_err();
    assert_eq!(
        error,
        "DIR/scenario.toml:6:1: error: a `service` event deletes it: `action = \"delete\"` and nothing else"
    );
    let underlay = format!("{HEADER}[[event]]\nat = \"1ms\"\naction = \"delete\"\npod = \"x\"\n");
    let error = load_with_files("churn-underlay", &[("scenario.toml", &underlay)]).unwrap_err();
    assert_eq!(
        error,
        "DIR/scenario.toml:4:1: error: pod and workload events need `dataplane = \"overlay\"` and `manifests`"
    );
}

#[test]
fn fault_events_take_no_cluster_fields() {
    let text =
        format!("{HEADER}[[event]]\nat = \"1ms\"\naction = \"fail\"\nhost = \"host-1\"\npod = \"a\"\n");
    check(
        &text,
        "t.toml:4:1: error: `fail` and `recover` name a `link`, `switch` or `host`, not pods, workloads or manifests",
    );
}
