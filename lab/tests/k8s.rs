//! The Kubernetes manifests of `deploy/k8s/`, checked as far as a machine with no
//! cluster allows:
//!
//! - every document against the Kubernetes OpenAPI schemas, strictly (an unknown field
//!   is an error), for named Kubernetes versions, by `kubernetes-validate` from PyPI,
//!   which bundles its schemas and needs no network (`lab/tests/k8s_schema.py`);
//! - against the code: each service container's flags and environment given to the
//!   built binary itself (`BINARY ARGS… --help` parses every flag and its value and
//!   exits before serving), the NATS configuration given to the real `nats-server -t`,
//!   probe ports against container ports, every Service against the pods it selects,
//!   every peer address against the Services that exist, the data dirs against the
//!   claims;
//! - run as processes: a broker on loopback and the four services started with the
//!   manifests' flags and environment (only the listen address, data dir and broker URL
//!   swapped for this machine's), each asked its probes' gRPC health request, an order
//!   carried through to the query view, then SIGTERM and an exit within the manifest's
//!   grace;
//! - run as containers: every pod (3 nats, 4 services) as a container of the image
//!   `lab image --offline` builds, on a Docker network of its own where each has the DNS
//!   names its Services would give it (`nats`, `nats-0.nats-cluster`, `users`, …), with
//!   its command, arguments, environment, ConfigMap files, claims as volumes, read-only
//!   root and limits; every probe run by the test as the kubelet would, the three
//!   servers in one JetStream cluster, an order through to the view, `docker stop` with
//!   the pod's grace period and exit status 0.
//!
//! Broken copies of the manifests (a temp file for the schemas, edited objects in
//! memory for the rest) show that each check can fail. Nothing here uses Kubernetes
//! itself: no API server admits the objects, no kubelet runs the probes, no scheduler
//! places the pods, no provisioner binds the claims.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{
    names::SERVICES,
    proto::{CreateProductRequest, CreateUserRequest, PlaceOrderRequest, UserOrdersRequest},
};
use serde_json::{json, Value};
use support::{req, RunDir};
use tonic::Code;
use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest};

/// The schema checker, a PyPI package; `scripts/test` installs exactly this version
/// into the lab's tools dir when it is missing.
const CHECKER: &str = "kubernetes-validate";
const CHECKER_VERSION: &str = "1.37.0";
/// The Kubernetes versions the manifests are validated for: 1.27, the first in which
/// gRPC probes are generally available (on by default since 1.24), and 1.37, the newest
/// the checker bundles.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.27", "1.37"];
/// The variable every service binary reads besides its own flags (the tracing filter,
/// `common::telemetry`).
const LOG_FILTER_ENV: &str = "RUST_LOG";
const T: Duration = Duration::from_secs(5);

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/k8s")
}

/// The manifests: every `.yaml` file of `deploy/k8s/`, sorted.
fn manifest_files() -> Vec<PathBuf> {
    let dir = deploy_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map_while(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {}", dir.display());
    files
}

fn checker_dir() -> PathBuf {
    bench::nats::tools_dir().join(format!("{CHECKER}-{CHECKER_VERSION}"))
}

/// What the schema check read and found.
struct SchemaCheck {
    checker: String,
    /// Every document, in file order.
    objects: Vec<Value>,
    /// One line per document and version that failed (or file that could not be read).
    errors: Vec<String>,
}

/// Validates `files` with the checker (fails the test, saying how to install it, if it
/// is missing).
fn schema_check(files: &[PathBuf]) -> SchemaCheck {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/k8s_schema.py");
    let output = Command::new("python3")
        .arg(&script)
        .arg(KUBERNETES_VERSIONS.join(","))
        .args(files)
        .env("PYTHONPATH", checker_dir())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run python3 ({e}): the Kubernetes schema check needs python3 and {CHECKER}; `bash scripts/test` installs both")
        });
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{} printed no JSON ({e}); its stderr:\n{stderr}", script.display()));
    if let Some(missing) = report.get("missing") {
        panic!(
            "the Kubernetes schema checker is not installed ({missing}): `bash scripts/test` installs it, or run \
             `python3 -m pip install --target {} {CHECKER}=={CHECKER_VERSION}`",
            checker_dir().display()
        );
    }
    assert!(output.status.success(), "the schema check failed to run: {stderr}");
    let errors = report["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            let version = e["version"].as_str().map(|v| format!(" (Kubernetes {v})")).unwrap_or_default();
            format!(
                "{} {}{version}: {}",
                e["file"].as_str().unwrap_or("?"),
                e["what"].as_str().unwrap_or("?"),
                e["error"]
            )
        })
        .collect();
    assert_eq!(
        report["checker"].as_str(),
        Some(CHECKER_VERSION),
        "found {CHECKER} {}, the test is written for {CHECKER_VERSION}: `bash scripts/test` installs it into {}",
        report["checker"],
        checker_dir().display()
    );
    let objects = report["documents"].as_array().expect("documents").iter().map(|d| d["object"].clone()).collect();
    SchemaCheck { checker: report["checker"].as_str().unwrap_or("?").to_owned(), objects, errors }
}

/// The manifests as objects (schema-checked: a test that reads them fails if they are
/// not valid).
fn manifests() -> Vec<Value> {
    let check = schema_check(&manifest_files());
    assert!(check.errors.is_empty(), "the manifests fail the schema check:\n{}", check.errors.join("\n"));
    check.objects
}

// ---- reading objects ----

fn kind(object: &Value) -> &str {
    object["kind"].as_str().unwrap_or("")
}

fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or("")
}

fn what(object: &Value) -> String {
    format!("{}/{}", kind(object), name(object))
}

fn find<'a>(objects: &'a [Value], wanted_kind: &str, wanted_name: &str) -> Option<&'a Value> {
    objects.iter().find(|o| kind(o) == wanted_kind && name(o) == wanted_name)
}

fn find_mut<'a>(objects: &'a mut [Value], wanted_kind: &str, wanted_name: &str) -> &'a mut Value {
    objects
        .iter_mut()
        .find(|o| kind(o) == wanted_kind && name(o) == wanted_name)
        .unwrap_or_else(|| panic!("no {wanted_kind}/{wanted_name}"))
}

fn workloads(objects: &[Value]) -> impl Iterator<Item = &Value> {
    objects.iter().filter(|o| matches!(kind(o), "StatefulSet" | "Deployment"))
}

fn containers(workload: &Value) -> &[Value] {
    workload["spec"]["template"]["spec"]["containers"].as_array().map_or(&[], Vec::as_slice)
}

fn labels(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
        .unwrap_or_default()
}

fn pod_labels(workload: &Value) -> BTreeMap<String, String> {
    labels(&workload["spec"]["template"]["metadata"]["labels"])
}

/// Whether a (non-empty) selector selects pods with these labels.
fn selects(selector: &BTreeMap<String, String>, pod: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| pod.get(k) == Some(v))
}

/// The workloads whose pods a Service selects.
fn selected<'a>(objects: &'a [Value], service: &Value) -> Vec<&'a Value> {
    let selector = labels(&service["spec"]["selector"]);
    workloads(objects).filter(|w| selects(&selector, &pod_labels(w))).collect()
}

/// A port as a container declares it: by number, or by the name of one of its ports.
fn container_port(container: &Value, port: &Value) -> Option<u64> {
    let ports = container["ports"].as_array().map_or(&[][..], Vec::as_slice);
    match port {
        Value::Number(n) => ports.iter().filter_map(|p| p["containerPort"].as_u64()).find(|p| Some(*p) == n.as_u64()),
        Value::String(s) => {
            ports.iter().find(|p| p["name"].as_str() == Some(s.as_str())).and_then(|p| p["containerPort"].as_u64())
        }
        _ => None,
    }
}

/// The program a container runs and its arguments (the image has no entrypoint: the
/// manifest must name the program).
fn argv(container: &Value) -> Option<(String, Vec<String>)> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect()).unwrap_or_default()
    };
    let mut all = strings(&container["command"]);
    all.extend(strings(&container["args"]));
    let program = all.first()?.clone();
    Some((program, all[1..].to_vec()))
}

/// `--flag=value` and `--flag value` pairs of an argument list.
fn flags(args: &[String]) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if let Some((flag, value)) = arg.split_once('=').filter(|_| arg.starts_with('-')) {
            out.push((flag.to_owned(), Some(value.to_owned())));
        } else if arg.starts_with('-') {
            let value = args.get(i + 1).filter(|v| !v.starts_with('-')).cloned();
            i += usize::from(value.is_some());
            out.push((arg.clone(), value));
        }
        i += 1;
    }
    out
}

/// The name of a workload's first pod (a StatefulSet's pods are `<name>-0`, `-1`, …).
fn first_pod(workload: &Value) -> String {
    format!("{}-0", name(workload))
}

/// The container's environment as the kubelet would set it in pod `pod`, in order
/// (`metadata.name` from the downward API is `pod`).
fn environment(
    objects: &[Value],
    workload: &Value,
    container: &Value,
    pod: &str,
    problems: &mut Vec<String>,
) -> Vec<(String, String)> {
    let at = format!("{} container {}", what(workload), container["name"].as_str().unwrap_or("?"));
    let mut env = Vec::new();
    for from in container["envFrom"].as_array().map_or(&[][..], Vec::as_slice) {
        let Some(map) = from["configMapRef"]["name"].as_str() else {
            problems.push(format!("{at}: envFrom other than a ConfigMap is not checked here: {from}"));
            continue;
        };
        match find(objects, "ConfigMap", map) {
            Some(config) => env.extend(labels(&config["data"])),
            None => problems.push(format!("{at}: envFrom names ConfigMap {map}, which no manifest defines")),
        }
    }
    for var in container["env"].as_array().map_or(&[][..], Vec::as_slice) {
        let var_name = var["name"].as_str().unwrap_or("?").to_owned();
        let value = if let Some(value) = var["value"].as_str() {
            Some(value.to_owned())
        } else if let Some(field) = var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            (field == "metadata.name").then(|| pod.to_owned())
        } else if let Some(key) = var["valueFrom"]["configMapKeyRef"].as_object() {
            let map = key.get("name").and_then(Value::as_str).unwrap_or("?");
            let key = key.get("key").and_then(Value::as_str).unwrap_or("?");
            find(objects, "ConfigMap", map).and_then(|c| c["data"][key].as_str()).map(str::to_owned)
        } else {
            None
        };
        match value {
            Some(value) => env.push((var_name, value)),
            None => problems.push(format!("{at}: cannot tell what {var_name} would be: {var}")),
        }
    }
    env
}

// ---- what the binaries accept ----

/// What a service binary's `--help` says it accepts.
struct Help {
    /// Each variable it reads, with the flag it stands for.
    env: BTreeMap<String, String>,
    /// The flags it cannot start without (its usage line).
    required: Vec<String>,
}

fn help(binary: &Path) -> Result<Help, String> {
    let output = Command::new(binary)
        .arg("--help")
        .env_clear()
        .output()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() || !text.contains("Usage:") {
        return Err(format!("{} --help did not print its usage", binary.display()));
    }
    let mut env = BTreeMap::new();
    let mut flag = String::new();
    for line in text.lines() {
        let line = line.trim();
        // An option's first line: `--listen <LISTEN>`, `-h, --help`.
        let option = line.starts_with("--") || (line.starts_with('-') && line.get(2..4) == Some(", "));
        if let Some(long) = line.split_whitespace().find(|w| w.starts_with("--")).filter(|_| option) {
            flag = long.trim_end_matches(',').to_owned();
        }
        if let Some(rest) = line.strip_prefix("[env: ") {
            let var = rest.split('=').next().unwrap_or_default().to_owned();
            env.insert(var, flag.clone());
        }
    }
    let usage = text.lines().find(|l| l.starts_with("Usage:")).unwrap_or_default();
    let required = usage.split_whitespace().filter(|w| w.starts_with("--")).map(str::to_owned).collect();
    Ok(Help { env, required })
}

/// Runs `program ARGS… --help` with nothing else in its environment: clap parses every
/// flag and its value in order and exits 0 at `--help`, before binding or opening
/// anything; an unknown flag or a bad value exits 2 first.
fn accepted(binary: &Path, args: &[String]) -> Result<(), String> {
    let output = Command::new(binary)
        .args(args)
        .arg("--help")
        .env_clear()
        .output()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("(no message)").to_owned())
}

/// A `HOST:PORT` (or `scheme://HOST:PORT`) address, split.
fn host_port(address: &str) -> Option<(&str, u16)> {
    let bare = address.split_once("://").map_or(address, |(_, rest)| rest);
    let (host, port) = bare.rsplit_once(':')?;
    Some((host, port.parse().ok()?))
}

/// The mount paths of the container's volumes that are claims of the workload's
/// `volumeClaimTemplates` (data that outlives the pod).
fn claim_mounts(workload: &Value, container: &Value) -> Vec<String> {
    let claims: BTreeSet<&str> = workload["spec"]["volumeClaimTemplates"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter_map(|c| c["metadata"]["name"].as_str())
        .collect();
    container["volumeMounts"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter(|m| m["name"].as_str().is_some_and(|n| claims.contains(n)))
        .filter_map(|m| m["mountPath"].as_str().map(str::to_owned))
        .collect()
}

/// Everything in the manifests that disagrees with the code or with the rest of the
/// manifests, one line each (empty: they agree). `bins` holds the service binaries.
fn cross_check(objects: &[Value], bins: &Path, nats_server: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    for service in objects.iter().filter(|o| kind(o) == "Service") {
        let pods = selected(objects, service);
        if pods.is_empty() {
            problems.push(format!(
                "{}: its selector {} selects no pods of any workload",
                what(service),
                service["spec"]["selector"]
            ));
        }
        for port in service["spec"]["ports"].as_array().map_or(&[][..], Vec::as_slice) {
            let target = if port["targetPort"].is_null() { &port["port"] } else { &port["targetPort"] };
            for pod in &pods {
                if !containers(pod).iter().any(|c| container_port(c, target).is_some()) {
                    problems.push(format!(
                        "{}: targetPort {target} is no container port of {}",
                        what(service),
                        what(pod)
                    ));
                }
            }
        }
    }
    for workload in workloads(objects) {
        check_workload(objects, workload, bins, nats_server, &mut problems);
    }
    problems
}

fn check_workload(objects: &[Value], workload: &Value, bins: &Path, nats_server: &Path, problems: &mut Vec<String>) {
    let at = what(workload);
    let selector = labels(&workload["spec"]["selector"]["matchLabels"]);
    if !selects(&selector, &pod_labels(workload)) {
        problems.push(format!("{at}: its selector does not select its own pod template's labels"));
    }
    if kind(workload) == "StatefulSet" {
        let governing = workload["spec"]["serviceName"].as_str().unwrap_or_default();
        match find(objects, "Service", governing) {
            Some(service) if selected(objects, service).iter().any(|w| what(w) == at) => {}
            Some(_) => problems.push(format!("{at}: its serviceName {governing} selects none of its pods")),
            None => problems.push(format!("{at}: its serviceName {governing:?} names no Service")),
        }
    }
    let pod = &workload["spec"]["template"]["spec"];
    let claims: Vec<&str> = workload["spec"]["volumeClaimTemplates"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter_map(|c| c["metadata"]["name"].as_str())
        .collect();
    let volumes = pod["volumes"].as_array().map_or(&[][..], Vec::as_slice);
    for volume in volumes {
        if let Some(map) = volume["configMap"]["name"].as_str() {
            if find(objects, "ConfigMap", map).is_none() {
                problems
                    .push(format!("{at}: volume {} names ConfigMap {map}, which no manifest defines", volume["name"]));
            }
        }
    }
    for container in containers(workload) {
        let at = format!("{at} container {}", container["name"].as_str().unwrap_or("?"));
        for mount in container["volumeMounts"].as_array().map_or(&[][..], Vec::as_slice) {
            let mounted = mount["name"].as_str().unwrap_or_default();
            if !claims.contains(&mounted) && !volumes.iter().any(|v| v["name"].as_str() == Some(mounted)) {
                problems.push(format!("{at}: mounts {mounted:?}, which is neither a volume nor a claim template"));
            }
        }
        for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
            let spec = &container[probe];
            if spec.is_null() {
                continue;
            }
            let port = [&spec["grpc"]["port"], &spec["httpGet"]["port"], &spec["tcpSocket"]["port"]]
                .into_iter()
                .find(|p| !p.is_null());
            match port {
                Some(port) if container_port(container, port).is_some() => {}
                Some(port) => {
                    problems.push(format!("{at}: {probe} asks port {port}, which is none of its container ports"))
                }
                None => {}
            }
        }
        for resource in ["requests", "limits"] {
            for of in ["cpu", "memory"] {
                if container["resources"][resource][of].is_null() {
                    problems.push(format!("{at}: no {of} in resources.{resource}"));
                }
            }
        }
        let Some((program, _)) = argv(container) else {
            problems
                .push(format!("{at}: no command: the image has no entrypoint, so the manifest must name the program"));
            continue;
        };
        if SERVICES.contains(&program.as_str()) {
            check_service_container(objects, workload, container, bins, problems);
        } else if program == "nats-server" {
            check_nats_container(objects, workload, container, nats_server, problems);
        } else {
            problems.push(format!("{at}: runs {program:?}, which is not a program of the image"));
        }
    }
}

fn check_service_container(
    objects: &[Value],
    workload: &Value,
    container: &Value,
    bins: &Path,
    problems: &mut Vec<String>,
) {
    let at = format!("{} container {}", what(workload), container["name"].as_str().unwrap_or("?"));
    let (program, args) = argv(container).expect("a command");
    let binary = bins.join(&program);
    if !binary.is_file() {
        problems.push(format!(
            "{at}: {} not found: build the binaries first (cargo build --workspace --bins)",
            binary.display()
        ));
        return;
    }
    let help = match help(&binary) {
        Ok(help) => help,
        Err(e) => return problems.push(format!("{at}: {e}")),
    };
    // The flags as passed, then the environment's as the flags they stand for.
    let mut given = flags(&args);
    let mut trial = args.clone();
    for (var, value) in environment(objects, workload, container, &first_pod(workload), problems) {
        if var == LOG_FILTER_ENV {
            continue;
        }
        match help.env.get(&var) {
            Some(flag) if given.iter().any(|(f, _)| f == flag) => {
                problems.push(format!("{at}: sets {flag} twice, as a flag and as {var}"));
            }
            Some(flag) => {
                trial.push(format!("{flag}={value}"));
                given.push((flag.clone(), Some(value)));
            }
            None => problems.push(format!(
                "{at}: sets {var}, which {program} does not read (it reads {LOG_FILTER_ENV} and {})",
                help.env.keys().cloned().collect::<Vec<_>>().join(", ")
            )),
        }
    }
    if let Err(refusal) = accepted(&binary, &trial) {
        problems.push(format!("{at}: {program} refuses `{}`: {refusal}", trial.join(" ")));
    }
    let value = |flag: &str| given.iter().find(|(f, _)| f == flag).and_then(|(_, v)| v.clone());
    for required in &help.required {
        if value(required).is_none() {
            problems.push(format!("{at}: does not pass {required}, which {program} requires"));
        }
    }
    match value("--listen").and_then(|l| l.parse::<SocketAddr>().ok()) {
        Some(listen) if container_port(container, &json!(listen.port())).is_some() => {
            if !listen.ip().is_unspecified() {
                problems.push(format!("{at}: listens on {listen}, which other pods cannot reach"));
            }
        }
        Some(listen) => {
            problems.push(format!("{at}: listens on port {}, which is none of its container ports", listen.port()))
        }
        None => problems.push(format!("{at}: no --listen address (the default listens on loopback only)")),
    }
    let data_dir = value("--data-dir").unwrap_or_default();
    if !claim_mounts(workload, container).contains(&data_dir) {
        problems.push(format!(
            "{at}: its data dir {data_dir:?} is not a claim's mount path: the store would not outlive the pod"
        ));
    }
    for (flag, address) in &given {
        let Some(address) = address.as_deref().filter(|_| flag.ends_with("-addr") || flag == "--nats-url") else {
            continue;
        };
        check_address(objects, &format!("{at}: {flag}"), address, problems);
    }
    for probe in ["readinessProbe", "livenessProbe"] {
        if container[probe]["grpc"].is_null() {
            problems.push(format!("{at}: its {probe} is not a gRPC probe (the services answer grpc.health.v1)"));
        }
    }
    // A query replica keeps its view from a durable consumer of its own, named after
    // its pod; an owner is the single writer of its store.
    let own_consumer = container["env"].as_array().is_some_and(|vars| {
        vars.iter()
            .any(|v| v["name"] == "CASCADE_CONSUMER_NAME" && v["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name")
    });
    if workload["spec"]["replicas"].as_u64() != Some(1) && !(program == "query" && own_consumer) {
        problems.push(format!(
            "{at}: replicas must be 1 (one process owns the store; a query replica needs CASCADE_CONSUMER_NAME from \
             its pod's metadata.name; see the manifest's comment)"
        ));
    }
    let drain = common::serve::DRAIN.as_secs();
    match workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"].as_u64() {
        Some(grace) if grace > drain => {}
        grace => problems.push(format!(
            "{at}: terminationGracePeriodSeconds {} leaves no room past the services' {drain} s drain on SIGTERM",
            grace.map_or("unset".to_owned(), |g| g.to_string())
        )),
    }
}

/// A peer address must name a Service of the manifests and one of its ports.
fn check_address(objects: &[Value], at: &str, address: &str, problems: &mut Vec<String>) {
    let Some((host, port)) = host_port(address) else {
        return problems.push(format!("{at} {address:?} is not HOST:PORT"));
    };
    let Some(service) = find(objects, "Service", host) else {
        return problems.push(format!("{at} {address}: no Service named {host}"));
    };
    let ports: Vec<u64> = service["spec"]["ports"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter_map(|p| p["port"].as_u64())
        .collect();
    if !ports.contains(&u64::from(port)) {
        problems.push(format!("{at} {address}: Service {host} has no port {port} (it has {ports:?})"));
    }
}

fn check_nats_container(
    objects: &[Value],
    workload: &Value,
    container: &Value,
    nats_server: &Path,
    problems: &mut Vec<String>,
) {
    let at = format!("{} container {}", what(workload), container["name"].as_str().unwrap_or("?"));
    let (_, args) = argv(container).expect("a command");
    let config_at = args.iter().position(|a| a == "-c" || a == "--config").map(|i| i + 1);
    let Some(path) = config_at.and_then(|i| args.get(i)) else {
        return problems.push(format!("{at}: no -c CONFIG_FILE"));
    };
    // The file comes from a ConfigMap volume mounted over its folder.
    let config = container["volumeMounts"].as_array().map_or(&[][..], Vec::as_slice).iter().find_map(|mount| {
        let file = path.strip_prefix(&format!("{}/", mount["mountPath"].as_str()?.trim_end_matches('/')))?;
        let volumes = workload["spec"]["template"]["spec"]["volumes"].as_array()?;
        let volume = volumes.iter().find(|v| v["name"] == mount["name"])?;
        let map = find(objects, "ConfigMap", volume["configMap"]["name"].as_str()?)?;
        map["data"][file].as_str().map(str::to_owned)
    });
    let Some(config) = config else {
        return problems.push(format!("{at}: {path} is no key of a ConfigMap mounted in the container"));
    };
    // The real nats-server reads it (-t: check the configuration and exit).
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("nats.conf");
    std::fs::write(&file, &config).expect("write the config");
    let mut trial: Vec<String> = args.clone();
    trial[config_at.expect("found")] = file.display().to_string();
    trial.push("-t".into());
    let env = environment(objects, workload, container, &first_pod(workload), problems);
    let output = Command::new(nats_server).args(&trial).env_clear().envs(env).output().expect("nats-server runs");
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        problems.push(format!("{at}: nats-server -t refuses its configuration: {}", stderr.trim()));
    }
    // Its ports are the container's, its store is on a claim, its routes name every server.
    let setting = |key: &str| -> Vec<String> {
        config
            .lines()
            .filter_map(|line| {
                let (k, v) = line.trim().split_once(':')?;
                (k.trim() == key).then(|| v.trim().to_owned())
            })
            .collect()
    };
    for key in ["port", "http_port"] {
        for port in setting(key) {
            if container_port(container, &json!(port.parse::<u64>().unwrap_or(0))).is_none() {
                problems.push(format!("{at}: its configuration's {key} {port} is none of its container ports"));
            }
        }
    }
    for store in setting("store_dir") {
        if !claim_mounts(workload, container).contains(&store) {
            problems.push(format!("{at}: its store_dir {store} is not a claim's mount path"));
        }
    }
    let replicas = workload["spec"]["replicas"].as_u64().unwrap_or(1);
    let governing = workload["spec"]["serviceName"].as_str().unwrap_or_default();
    match find(objects, "Service", governing) {
        Some(service) if service["spec"]["clusterIP"] == "None" => {}
        _ => problems
            .push(format!("{at}: its serviceName {governing:?} is not a headless Service (no per-server DNS names)")),
    }
    let mut listed = BTreeSet::new();
    for route in config.split("nats://").skip(1) {
        let route = route.split(|c: char| c.is_whitespace() || c == ',' || c == ']').next().unwrap_or_default();
        let Some((host, port)) = host_port(route) else {
            problems.push(format!("{at}: route {route:?} is not HOST:PORT"));
            continue;
        };
        let ordinal = host
            .strip_suffix(&format!(".{governing}"))
            .and_then(|pod| pod.strip_prefix(&format!("{}-", name(workload))))
            .and_then(|n| n.parse::<u64>().ok());
        match ordinal {
            Some(n) if n < replicas => {
                listed.insert(n);
            }
            _ => problems.push(format!(
                "{at}: route {route} names no server of its {replicas} replicas as <pod>.{governing} ({}-0 … {}-{})",
                name(workload),
                name(workload),
                replicas - 1
            )),
        }
        if container_port(container, &json!(port)).is_none() {
            problems.push(format!("{at}: route {route}: port {port} is none of its container ports"));
        }
    }
    if listed.len() as u64 != replicas {
        problems.push(format!("{at}: its routes name servers {listed:?} of its {replicas} replicas"));
    }
}

fn bin_dir() -> PathBuf {
    lab::topology::default_bin_dir()
}

fn nats_server() -> PathBuf {
    bench::nats::nats_server().expect("a nats-server (found or provisioned)").path
}

#[test]
fn every_manifest_passes_the_kubernetes_schemas_strictly() {
    let files = manifest_files();
    let check = schema_check(&files);
    assert!(
        check.errors.is_empty(),
        "the manifests fail the schema check ({CHECKER} {}):\n{}",
        check.checker,
        check.errors.join("\n")
    );
    let script = include_str!("../../scripts/test");
    assert!(
        script.contains(&format!("{CHECKER}=={CHECKER_VERSION}")) && script.contains(&format!("{CHECKER}-{CHECKER_VERSION}")),
        "scripts/test must install {CHECKER}=={CHECKER_VERSION} into {CHECKER}-{CHECKER_VERSION}, where this test looks"
    );
    // What the topology needs is there (validating nothing would pass too).
    let objects = &check.objects;
    let nats = find(objects, "StatefulSet", "nats").expect("a nats StatefulSet");
    assert_eq!(nats["spec"]["replicas"], 3);
    for service in SERVICES {
        assert!(find(objects, "StatefulSet", service).is_some(), "no StatefulSet {service}");
        assert!(find(objects, "Service", service).is_some(), "no Service {service}");
    }
    for (k, n) in
        [("Service", "nats"), ("Service", "nats-cluster"), ("ConfigMap", "nats-config"), ("ConfigMap", "cascade")]
    {
        assert!(find(objects, k, n).is_some(), "no {k}/{n}");
    }
    eprintln!(
        "{} documents in {} files valid for Kubernetes {} ({CHECKER} {}, strict)",
        objects.len(),
        files.len(),
        KUBERNETES_VERSIONS.join(" and "),
        check.checker
    );
}

#[test]
fn the_schema_check_fails_a_broken_manifest() {
    let original = std::fs::read_to_string(deploy_dir().join("users.yaml")).expect("users.yaml");
    let dir = tempfile::tempdir().expect("temp dir");
    // Each edit, and what the check must then say.
    let edits = [
        ("  replicas: 1\n", "  replica: 1\n", "'replica' was unexpected"),
        (
            "              service: cascade.v1.Users\n",
            "              servce: cascade.v1.Users\n",
            "'servce' was unexpected",
        ),
        ("containerPort: 50051", "containerPort: \"50051\"", "is not of type 'integer'"),
        ("  replicas: 1\n", "  replicas: 1\n  replicas: 2\n", "given twice"),
        ("kind: StatefulSet", "kind: StatefulSets", "Couldn't find schema"),
    ];
    for (i, (from, to, expected)) in edits.iter().enumerate() {
        assert!(original.contains(from), "users.yaml no longer has {from:?}: update this test");
        let file = dir.path().join(format!("broken-{i}.yaml"));
        std::fs::write(&file, original.replacen(from, to, 1)).expect("write");
        let check = schema_check(&[file]);
        assert!(
            check.errors.iter().any(|e| e.contains(expected)),
            "{from:?} → {to:?} should fail with {expected:?}; the check said {:?}",
            check.errors
        );
    }
}

#[test]
fn the_manifests_agree_with_the_binaries() {
    let objects = manifests();
    let problems = cross_check(&objects, &bin_dir(), &nats_server());
    assert!(problems.is_empty(), "the manifests disagree with the code:\n{}", problems.join("\n"));
}

#[test]
fn a_manifest_that_disagrees_with_the_code_fails_the_cross_check() {
    let objects = manifests();
    let (bins, nats) = (bin_dir(), nats_server());
    let args = |o: &mut Vec<Value>, workload: &str| -> Vec<Value> {
        find_mut(o, "StatefulSet", workload)["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .expect("args")
            .clone()
    };
    let set_args = |o: &mut Vec<Value>, workload: &str, args: Vec<Value>| {
        find_mut(o, "StatefulSet", workload)["spec"]["template"]["spec"]["containers"][0]["args"] = Value::Array(args);
    };
    let replace_arg = move |o: &mut Vec<Value>, workload: &str, from: &str, to: &str| {
        let mut list = args(o, workload);
        let at = list.iter().position(|a| a == from).unwrap_or_else(|| panic!("{workload} has no argument {from}"));
        list[at] = json!(to);
        set_args(o, workload, list);
    };
    type Edit = Box<dyn Fn(&mut Vec<Value>)>;
    let nats_conf = |o: &mut Vec<Value>, from: &str, to: &str| {
        let data = &mut find_mut(o, "ConfigMap", "nats-config")["data"]["nats.conf"];
        let text = data.as_str().expect("nats.conf").to_owned();
        assert!(text.contains(from), "nats.conf has no {from:?}");
        *data = json!(text.replacen(from, to, 1));
    };
    let edits: Vec<(&str, Edit, &str)> = vec![
        (
            "an unknown flag",
            Box::new(move |o| replace_arg(o, "users", "--listen=0.0.0.0:50051", "--listen-on=0.0.0.0:50051")),
            "unexpected argument '--listen-on'",
        ),
        (
            "a mode the binaries do not know",
            Box::new(|o| find_mut(o, "ConfigMap", "cascade")["data"]["CASCADE_MODE"] = json!("asynchronous")),
            "invalid value 'asynchronous'",
        ),
        (
            "a variable no binary reads",
            Box::new(|o| find_mut(o, "ConfigMap", "cascade")["data"]["CASCADE_NATS_URLS"] = json!("nats://nats:4222")),
            "sets CASCADE_NATS_URLS, which users does not read",
        ),
        (
            "a flag given twice",
            Box::new(|o| find_mut(o, "ConfigMap", "cascade")["data"]["CASCADE_LISTEN"] = json!("0.0.0.0:50051")),
            "sets --listen twice",
        ),
        (
            "a required flag left out",
            Box::new(move |o| {
                let list: Vec<Value> = args(o, "products").into_iter().filter(|a| a != "--data-dir=/data").collect();
                set_args(o, "products", list);
            }),
            "does not pass --data-dir",
        ),
        (
            "a data dir off the claim",
            Box::new(move |o| replace_arg(o, "orders", "--data-dir=/data", "--data-dir=/var/data")),
            "is not a claim's mount path",
        ),
        (
            "a listen port that is no container port",
            Box::new(move |o| replace_arg(o, "users", "--listen=0.0.0.0:50051", "--listen=0.0.0.0:50052")),
            "listens on port 50052",
        ),
        (
            "a probe on another port",
            Box::new(|o| {
                find_mut(o, "StatefulSet", "users")["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
                    ["grpc"]["port"] = json!(50052)
            }),
            "readinessProbe asks port 50052",
        ),
        (
            "a probe that is not gRPC",
            Box::new(|o| {
                find_mut(o, "StatefulSet", "query")["spec"]["template"]["spec"]["containers"][0]["livenessProbe"] =
                    json!({"tcpSocket": {"port": 50051}})
            }),
            "livenessProbe is not a gRPC probe",
        ),
        (
            "a Service that selects no pods",
            Box::new(|o| {
                find_mut(o, "Service", "products")["spec"]["selector"]["app.kubernetes.io/name"] = json!("product")
            }),
            "Service/products: its selector",
        ),
        (
            "a Service whose target port no pod has",
            Box::new(|o| find_mut(o, "Service", "orders")["spec"]["ports"][0]["targetPort"] = json!("http")),
            "targetPort \"http\" is no container port",
        ),
        (
            "a peer address that names no Service",
            Box::new(move |o| replace_arg(o, "query", "--users-addr=users:50051", "--users-addr=user:50051")),
            "no Service named user",
        ),
        (
            "a peer address on a port its Service does not have",
            Box::new(move |o| {
                replace_arg(o, "orders", "--products-addr=products:50051", "--products-addr=products:50052")
            }),
            "Service products has no port 50052",
        ),
        (
            "a broker URL that names no Service",
            Box::new(move |o| replace_arg(o, "orders", "--nats-url=nats://nats:4222", "--nats-url=nats://broker:4222")),
            "no Service named broker",
        ),
        (
            "two replicas of a single-writer owner",
            Box::new(|o| find_mut(o, "StatefulSet", "users")["spec"]["replicas"] = json!(2)),
            "replicas must be 1",
        ),
        (
            "query replicas sharing one durable consumer",
            Box::new(|o| {
                find_mut(o, "StatefulSet", "query")["spec"]["template"]["spec"]["containers"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("env");
            }),
            "a query replica needs CASCADE_CONSUMER_NAME",
        ),
        (
            "a grace period shorter than the drain",
            Box::new(|o| {
                find_mut(o, "StatefulSet", "products")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] =
                    json!(1)
            }),
            "terminationGracePeriodSeconds 1 leaves no room",
        ),
        (
            "a ConfigMap that does not exist",
            Box::new(|o| {
                find_mut(o, "StatefulSet", "users")["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]
                    ["configMapRef"]["name"] = json!("cascade-settings")
            }),
            "names ConfigMap cascade-settings",
        ),
        (
            "a field nats-server does not know",
            Box::new(move |o| nats_conf(o, "http_port: 8222\n", "http_port: 8222\njet_stream: true\n")),
            "nats-server -t refuses its configuration",
        ),
        (
            "a route to a server that does not exist",
            Box::new(move |o| nats_conf(o, "nats-2.nats-cluster", "nats-3.nats-cluster")),
            "route nats-3.nats-cluster:6222 names no server",
        ),
        (
            "a cluster port the container does not open",
            Box::new(move |o| nats_conf(o, "  port: 6222\n", "  port: 7222\n")),
            "port 7222 is none of its container ports",
        ),
        (
            "a StatefulSet governed by a Service that is not headless",
            Box::new(|o| find_mut(o, "StatefulSet", "nats")["spec"]["serviceName"] = json!("nats")),
            "is not a headless Service",
        ),
    ];
    for (edit, apply, expected) in &edits {
        let mut broken = objects.clone();
        apply(&mut broken);
        let problems = cross_check(&broken, &bins, &nats);
        let caught = problems.iter().find(|p| p.contains(expected));
        assert!(caught.is_some(), "{edit}: the cross-check should say {expected:?}; it said:\n{}", problems.join("\n"));
        eprintln!("{edit}: {}", caught.expect("caught"));
    }
}

/// A process started by the test, SIGKILLed if the test ends before it exits.
struct Process {
    name: String,
    child: Option<Child>,
}

impl Process {
    /// SIGTERM, then waits up to `grace` for a clean exit, as a kubelet would before
    /// SIGKILL.
    fn terminate(&mut self, grace: Duration) -> Result<(), String> {
        let child = self.child.as_mut().expect("running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).map_err(|e| e.to_string())?;
        let start = Instant::now();
        while start.elapsed() < grace {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                self.child = None;
                return if status.success() { Ok(()) } else { Err(format!("{} exited with {status}", self.name)) };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("{} still running {} s after SIGTERM (a kubelet would SIGKILL it now)", self.name, grace.as_secs()))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A JetStream nats-server on an ephemeral loopback port; its client URL.
fn start_broker(dir: &Path) -> (Process, String) {
    let ports = dir.join("nats-ports");
    std::fs::create_dir_all(&ports).expect("ports dir");
    let log = std::fs::File::create(dir.join("nats.log")).expect("log");
    let child = Command::new(nats_server())
        .args(["-js", "-sd"])
        .arg(dir.join("nats-store"))
        .args(["-a", "127.0.0.1", "-p", "-1", "--ports_file_dir"])
        .arg(&ports)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("nats-server starts");
    let file = ports.join(format!("nats-server_{}.ports", child.id()));
    let broker = Process { name: "nats-server".into(), child: Some(child) };
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if let Some(at) = text.find("nats://") {
            let url = &text[at..];
            return (broker, url[..url.find('"').expect("a JSON string")].to_owned());
        }
        assert!(started.elapsed() < Duration::from_secs(10), "nats-server wrote no ports file");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `args` with `flag`'s value replaced (`--flag=value` form), or added.
fn with_flag(args: &[String], flag: &str, value: &str) -> Vec<String> {
    let mut out: Vec<String> = args.iter().filter(|a| !a.starts_with(&format!("{flag}="))).cloned().collect();
    out.push(format!("{flag}={value}"));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_services_start_from_the_manifests_and_answer_their_probes() {
    let objects = manifests();
    let run = RunDir::new();
    let dir = run.path().to_owned();
    let (mut broker, nats_url) = start_broker(&dir);
    let mut started = Vec::new();
    let mut addresses = BTreeMap::new();
    for service in SERVICES {
        let workload = find(&objects, "StatefulSet", service).unwrap_or_else(|| panic!("no StatefulSet {service}"));
        let container = &containers(workload)[0];
        let (program, args) = argv(container).expect("a command");
        let mut problems = Vec::new();
        let env = environment(&objects, workload, container, &first_pod(workload), &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        // The manifest's flags and environment; only where it listens, keeps its data
        // and finds the broker are this machine's.
        let data = dir.join(service);
        let addr_file = dir.join(format!("{service}.addr"));
        let mut args = with_flag(&args, "--listen", "127.0.0.1:0");
        args = with_flag(&args, "--data-dir", &data.display().to_string());
        args = with_flag(&args, "--nats-url", &nats_url);
        // One broker here, not the manifests' three: a stream of one replica.
        args = with_flag(&args, "--stream-replicas", "1");
        args.push(format!("--addr-file={}", addr_file.display()));
        let log = std::fs::File::create(dir.join(format!("{service}.log"))).expect("log");
        let child = Command::new(bin_dir().join(&program))
            .args(&args)
            .env_clear()
            .envs(env)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{program} starts: {e}"));
        let process = Process { name: program.clone(), child: Some(child) };
        let start = Instant::now();
        let address: SocketAddr = loop {
            if let Some(a) = std::fs::read_to_string(&addr_file).ok().and_then(|a| a.trim().parse().ok()) {
                break a;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "{service} wrote no address file");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // The kubelet's requests: each gRPC probe's service name, on its port.
        let mut health = HealthClient::new(common::channel(address));
        for probe in ["readinessProbe", "livenessProbe"] {
            let asked = container[probe]["grpc"]["service"].as_str().unwrap_or_default().to_owned();
            let answer = health
                .check(req(HealthCheckRequest { service: asked.clone() }, T))
                .await
                .unwrap_or_else(|e| panic!("{service} {probe} ({asked:?}): {e}"));
            assert_eq!(answer.get_ref().status(), ServingStatus::Serving, "{service} {probe} ({asked:?})");
        }
        addresses.insert(service, address);
        started.push((service, process, workload));
    }

    order_reaches_the_view(&addresses).await;

    // SIGTERM, as a pod's deletion sends it: each exits cleanly within its grace period.
    for (service, mut process, workload) in started.into_iter().rev() {
        let grace =
            workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"].as_u64().expect("a grace period");
        if let Err(e) = process.terminate(Duration::from_secs(grace)) {
            panic!("{service}: {e}");
        }
    }
    broker.terminate(Duration::from_secs(30)).expect("nats-server stops");
}

/// The shop works as configured (async mode): a user and a product created, an order
/// for them accepted once orders' replica has both, and the order in the query view.
async fn order_reaches_the_view(addresses: &BTreeMap<&str, SocketAddr>) {
    let clients =
        lab::client::Clients::new(addresses["users"], addresses["products"], addresses["orders"], addresses["query"]);
    let (mut users, mut products, mut orders, mut query) =
        (clients.users, clients.products, clients.orders, clients.query);
    let user = users
        .create_user(req(CreateUserRequest { name: "Ada".into(), email: "ada@example.test".into() }, T))
        .await
        .expect("CreateUser")
        .into_inner();
    let product = products
        .create_product(req(CreateProductRequest { title: "Lamp".into(), price_cents: 1999 }, T))
        .await
        .expect("CreateProduct")
        .into_inner();
    let start = Instant::now();
    let order = loop {
        let place = PlaceOrderRequest { user_id: user.id.clone(), product_id: product.id.clone(), quantity: 1 };
        match orders.place_order(req(place, T)).await {
            Ok(order) => break order.into_inner(),
            // orders' replica has not received the user or product yet (async mode)
            Err(status) if status.code() == Code::FailedPrecondition && start.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("PlaceOrder: {status}"),
        }
    };
    let start = Instant::now();
    loop {
        match query.user_orders(req(UserOrdersRequest { user_id: user.id.clone() }, T)).await {
            Ok(view) if view.get_ref().items.iter().any(|item| item.order_id == order.id) => return,
            Ok(_) => {}
            // the view has not received the user yet
            Err(status) if status.code() == Code::NotFound => {}
            Err(status) => panic!("UserOrders: {status}"),
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the order never reached the query view");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- the pods as containers ----

const LAB: &str = env!("CARGO_BIN_EXE_lab");

fn docker(args: &[String]) -> Result<String, String> {
    let output = Command::new("docker").args(args).output().map_err(|e| format!("cannot run docker: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(format!("docker {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim()))
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// Removes what the test made on the Docker engine, passed or failed: containers,
/// the network, the claims' volumes, the image.
struct Engine {
    prefix: String,
    image: String,
}

impl Drop for Engine {
    fn drop(&mut self) {
        let filter = format!("name={}", self.prefix);
        let listed =
            |list: &[&str]| docker(&strings(&[list, &["-q", "--filter", &filter]].concat())).unwrap_or_default();
        let mut removals = Vec::new();
        for id in listed(&["ps", "-a"]).split_whitespace() {
            removals.push(strings(&["rm", "-f", "-v", id]));
        }
        for volume in listed(&["volume", "ls"]).split_whitespace() {
            removals.push(strings(&["volume", "rm", "-f", volume]));
        }
        removals.push(strings(&["network", "rm", &self.prefix]));
        removals.push(strings(&["rmi", "-f", &self.image]));
        for args in removals {
            if let Err(e) = docker(&args) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// A Kubernetes quantity as Docker takes it: memory `512Mi` → `512m`, CPU `100m` → `0.1`.
fn docker_quantity(quantity: &Value, memory: bool) -> Option<String> {
    let q = quantity.as_str().map(str::to_owned).or_else(|| quantity.as_u64().map(|n| n.to_string()))?;
    if memory {
        let (number, unit) = q.split_at(q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len()));
        let unit = match unit {
            "" => "b",
            "Ki" => "k",
            "Mi" => "m",
            "Gi" => "g",
            _ => return None,
        };
        Some(format!("{number}{unit}"))
    } else if let Some(milli) = q.strip_suffix('m') {
        Some(format!("{}", milli.parse::<f64>().ok()? / 1000.0))
    } else {
        Some(q)
    }
}

/// One pod of a workload, as a container: the pod's name as its host name, the DNS
/// names Kubernetes would give it as network aliases (each Service that selects it;
/// `<pod>.<service>` for its StatefulSet's headless Service), its container's command,
/// arguments and environment, its claims as volumes, its ConfigMap volumes as read-only
/// files, its security context and limits, and its container ports published on
/// loopback for the test's probes.
fn run_pod(objects: &[Value], workload: &Value, ordinal: u64, engine: &Engine, dir: &Path) -> Result<String, String> {
    let pod = format!("{}-{ordinal}", name(workload));
    let container = &containers(workload)[0];
    let spec = &workload["spec"]["template"]["spec"];
    let mut args = strings(&["run", "-d", "--name"]);
    args.push(format!("{}-{pod}", engine.prefix));
    args.extend(["--hostname".into(), pod.clone(), "--network".into(), engine.prefix.clone()]);
    for service in objects.iter().filter(|o| kind(o) == "Service") {
        if selected(objects, service).iter().any(|w| what(w) == what(workload)) {
            args.extend(["--network-alias".into(), name(service).to_owned()]);
            if service["spec"]["clusterIP"] == "None" && workload["spec"]["serviceName"] == service["metadata"]["name"]
            {
                args.extend(["--network-alias".into(), format!("{pod}.{}", name(service))]);
            }
        }
    }
    let security = &container["securityContext"];
    if security["readOnlyRootFilesystem"] == true {
        args.push("--read-only".into());
    }
    if security["allowPrivilegeEscalation"] == false {
        args.extend(["--security-opt".into(), "no-new-privileges".into()]);
    }
    if let Some(memory) = docker_quantity(&container["resources"]["limits"]["memory"], true) {
        args.extend(["--memory".into(), memory]);
    }
    if let Some(cpus) = docker_quantity(&container["resources"]["limits"]["cpu"], false) {
        args.extend(["--cpus".into(), cpus]);
    }
    let mut problems = Vec::new();
    for (var, value) in environment(objects, workload, container, &pod, &mut problems) {
        args.extend(["--env".into(), format!("{var}={value}")]);
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let claims: Vec<&str> = workload["spec"]["volumeClaimTemplates"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter_map(|c| c["metadata"]["name"].as_str())
        .collect();
    for mount in container["volumeMounts"].as_array().map_or(&[][..], Vec::as_slice) {
        let (volume, path) =
            (mount["name"].as_str().unwrap_or_default(), mount["mountPath"].as_str().unwrap_or_default());
        if claims.contains(&volume) {
            args.extend(["--volume".into(), format!("{}-{volume}-{pod}:{path}", engine.prefix)]);
            continue;
        }
        let source = spec["volumes"].as_array().and_then(|v| v.iter().find(|v| v["name"] == volume));
        let map = source.and_then(|v| v["configMap"]["name"].as_str()).and_then(|m| find(objects, "ConfigMap", m));
        let Some(map) = map else { return Err(format!("{pod}: volume {volume} is neither a claim nor a ConfigMap")) };
        let files = dir.join(&pod).join(volume);
        std::fs::create_dir_all(&files).map_err(|e| e.to_string())?;
        for (key, text) in labels(&map["data"]) {
            std::fs::write(files.join(key), text).map_err(|e| e.to_string())?;
        }
        args.extend(["--volume".into(), format!("{}:{path}:ro", files.display())]);
    }
    for port in container["ports"].as_array().map_or(&[][..], Vec::as_slice) {
        args.extend(["--publish".into(), format!("127.0.0.1::{}", port["containerPort"])]);
    }
    let (program, program_args) = argv(container).ok_or("no command")?;
    args.extend(["--entrypoint".into(), program, engine.image.clone()]);
    args.extend(program_args);
    docker(&args)?;
    Ok(format!("{}-{pod}", engine.prefix))
}

/// The loopback port Docker published a container port on.
fn published(container_name: &str, port: u64) -> Result<u16, String> {
    let mapping = docker(&strings(&["port", container_name, &format!("{port}/tcp")]))?;
    let line = mapping.lines().find(|l| l.starts_with("127.0.0.1:")).ok_or(format!("{port} is not published"))?;
    line.rsplit(':').next().and_then(|p| p.parse().ok()).ok_or(format!("cannot read {line:?}"))
}

/// `GET path` on a loopback port: the status code and the body.
async fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.map_err(|e| e.to_string())?;
    let code = answer.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body).to_owned();
    Ok((code, body))
}

/// One probe, as the kubelet would run it, against the published port: `Ok` when it
/// passes (HTTP 200–399, gRPC SERVING, a TCP connection).
async fn probe_once(container: &Value, probe: &Value, container_name: &str) -> Result<(), String> {
    let port_of = |p: &Value| container_port(container, p).ok_or(format!("probe port {p} is no container port"));
    if let Some(http) = probe.get("httpGet") {
        let port = published(container_name, port_of(&http["port"])?)?;
        let path = http["path"].as_str().unwrap_or("/");
        let (code, body) = http_get(port, path).await?;
        return if (200..400).contains(&code) { Ok(()) } else { Err(format!("GET {path}: {code} {body}")) };
    }
    if let Some(grpc) = probe.get("grpc") {
        let port = published(container_name, port_of(&grpc["port"])?)?;
        let mut health = HealthClient::new(common::channel(SocketAddr::from(([127, 0, 0, 1], port))));
        let service = grpc["service"].as_str().unwrap_or_default().to_owned();
        let answer = health.check(req(HealthCheckRequest { service }, T)).await.map_err(|e| e.to_string())?;
        return match answer.get_ref().status() {
            ServingStatus::Serving => Ok(()),
            status => Err(format!("{status:?}")),
        };
    }
    if let Some(tcp) = probe.get("tcpSocket") {
        let port = published(container_name, port_of(&tcp["port"])?)?;
        return tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map(drop).map_err(|e| e.to_string());
    }
    Err(format!("a probe this test cannot run: {probe}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manifests_pods_run_as_containers_and_pass_their_probes() {
    let objects = manifests();
    let run = RunDir::new();
    // The trailing "x" keeps this run's names from being a prefix of another run's.
    let prefix = format!("cascadek8s{}x", std::process::id());
    let engine = Engine { prefix: prefix.clone(), image: format!("cascade:k8s-{}", std::process::id()) };
    docker(&strings(&["version", "--format", "{{.Server.Version}}"]))
        .unwrap_or_else(|e| panic!("this test runs the pods on a Docker engine, and none answers: {e}"));
    // The manifests' image, built as `lab image --offline` builds it, under a tag of
    // this test's own.
    let built = Command::new(LAB).args(["image", "--offline", "--tag", &engine.image]).output().expect("lab runs");
    assert!(built.status.success(), "lab image: {}", String::from_utf8_lossy(&built.stderr));
    docker(&strings(&["network", "create", &prefix])).expect("a network");

    let mut pods = Vec::new();
    for workload in workloads(&objects) {
        for ordinal in 0..workload["spec"]["replicas"].as_u64().unwrap_or(1) {
            let container =
                run_pod(&objects, workload, ordinal, &engine, run.path()).expect("the pod's container starts");
            pods.push((workload, container));
        }
    }
    // Each pod's probes, startup first, until they pass (a minute each at most).
    for (workload, container_name) in &pods {
        let container = &containers(workload)[0];
        for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
            if container[probe].is_null() {
                continue;
            }
            let start = Instant::now();
            loop {
                match probe_once(container, &container[probe], container_name).await {
                    Ok(()) => break,
                    Err(e) if start.elapsed() > Duration::from_secs(60) => {
                        let logs = Command::new("docker").args(["logs", "--tail", "20", container_name]).output();
                        let logs = logs.map(|o| String::from_utf8_lossy(&o.stderr).into_owned()).unwrap_or_default();
                        panic!("{container_name}: {probe} still fails after 60 s: {e}\nlast log lines:\n{logs}");
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        }
    }
    // The servers found each other by the headless Service's names in the ConfigMap's
    // routes: each knows a JetStream cluster of all of them, with a leader.
    let nats = find(&objects, "StatefulSet", "nats").expect("nats");
    let servers = nats["spec"]["replicas"].as_u64().expect("replicas");
    for (_, container_name) in pods.iter().filter(|(w, _)| name(w) == "nats") {
        let port = published(container_name, 8222).expect("the monitoring port");
        let start = Instant::now();
        loop {
            let jsz = http_get(port, "/jsz").await.ok().and_then(|(_, body)| serde_json::from_str::<Value>(&body).ok());
            let meta = jsz.as_ref().map(|j| &j["meta_cluster"]);
            let formed = meta
                .is_some_and(|m| m["cluster_size"] == servers && m["leader"].as_str().is_some_and(|l| !l.is_empty()));
            if formed {
                eprintln!(
                    "{container_name}: in a JetStream cluster of {servers}, leader {}",
                    meta.expect("formed")["leader"]
                );
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{container_name}: no JetStream cluster of {servers} with a leader: {meta:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let mut addresses = BTreeMap::new();
    for service in SERVICES {
        let port = published(&format!("{prefix}-{service}-0"), 50051).expect("published");
        addresses.insert(service, SocketAddr::from(([127, 0, 0, 1], port)));
    }
    order_reaches_the_view(&addresses).await;

    // `docker stop` sends SIGTERM, then SIGKILL after the pod's grace period, as the
    // kubelet does: every container must exit 0 before that.
    for (workload, container_name) in pods.iter().rev() {
        let grace = workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
        docker(&strings(&["stop", "--time", &grace.to_string(), container_name])).expect("docker stop");
        let code = docker(&strings(&["inspect", "--format", "{{.State.ExitCode}}", container_name])).expect("inspect");
        assert_eq!(code, "0", "{container_name} did not exit cleanly within its {grace} s grace period");
    }
}
