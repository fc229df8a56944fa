//! The Kubernetes manifests (config/kubernetes/) read with a YAML parser and checked against
//! each other and against the service's own configuration loader: KEDA counts unacked messages
//! (the management API, not AMQP), on the queue the service consumes; the work volume and the
//! pod's ephemeral storage are bounded and hold the configured jobs. Not a cluster: these
//! manifests have not been applied to one here.

use std::path::{Path, PathBuf};

use serde_norway::Value;
use stylestream::config::service::ServiceConfig;

fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/kubernetes")
}

/// Every document of a multi-document YAML file.
fn documents(name: &str) -> Vec<Value> {
    let path = manifests_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{name}: {e}")))
        .collect()
}

/// The one document of `kind` in `name`.
fn document(name: &str, kind: &str) -> Value {
    let mut found: Vec<Value> = documents(name).into_iter().filter(|d| d["kind"].as_str() == Some(kind)).collect();
    assert_eq!(found.len(), 1, "{name}: expected one {kind}");
    found.remove(0)
}

fn str_at<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str().unwrap_or_else(|| panic!("{what}: expected a string, got {v:?}"))
}

/// Kubernetes quantities as bytes (`40Gi`, `512Mi`, `10G`, plain bytes).
fn quantity_bytes(q: &str) -> u64 {
    let units: [(&str, u64); 6] =
        [("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30), ("Ti", 1 << 40), ("G", 1_000_000_000), ("M", 1_000_000)];
    for (suffix, scale) in units {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<u64>().unwrap_or_else(|e| panic!("quantity {q:?}: {e}")) * scale;
        }
    }
    q.parse().unwrap_or_else(|e| panic!("quantity {q:?}: {e}"))
}

/// The service.toml in configmap.yaml, loaded and validated by the service's own loader.
fn deployed_config() -> ServiceConfig {
    let cm = document("configmap.yaml", "ConfigMap");
    let toml = str_at(&cm["data"]["service.toml"], "ConfigMap data.service.toml");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("service.toml");
    std::fs::write(&path, toml).unwrap();
    ServiceConfig::load(&path).unwrap_or_else(|e| panic!("configmap.yaml's service.toml: {e}"))
}

#[test]
fn keda_counts_unacked_messages_on_the_service_queue() {
    let so = document("scaledobject.yaml", "ScaledObject");
    let deployment = document("deployment.yaml", "Deployment");
    assert_eq!(so["spec"]["scaleTargetRef"]["name"], deployment["metadata"]["name"]);
    let triggers = so["spec"]["triggers"].as_sequence().expect("spec.triggers");
    assert_eq!(triggers.len(), 1, "{triggers:?}");
    let t = &triggers[0];
    assert_eq!(str_at(&t["type"], "trigger type"), "rabbitmq");
    // Over AMQP the scaler sees only ready messages: a replica mid-job looks idle.
    assert_eq!(str_at(&t["metadata"]["protocol"], "protocol"), "http");
    assert_eq!(str_at(&t["metadata"]["mode"], "mode"), "QueueLength");
    let config = deployed_config();
    assert_eq!(str_at(&t["metadata"]["queueName"], "queueName"), config.broker.queue);
    let per_replica: u64 = str_at(&t["metadata"]["value"], "value").parse().unwrap();
    assert_eq!(per_replica, u64::from(config.broker.prefetch), "messages per replica = what one replica holds");
    assert!(t["metadata"].get("host").is_none(), "the management URL holds a password: it belongs in a Secret");

    // The host comes from a Secret, through the TriggerAuthentication the trigger names.
    let auth = document("scaledobject.yaml", "TriggerAuthentication");
    assert_eq!(t["authenticationRef"]["name"], auth["metadata"]["name"]);
    let refs = auth["spec"]["secretTargetRef"].as_sequence().expect("secretTargetRef");
    assert!(
        refs.iter().any(|r| r["parameter"].as_str() == Some("host") && r["name"].is_string() && r["key"].is_string()),
        "no secret for the scaler's host: {refs:?}"
    );
}

#[test]
fn work_volume_and_ephemeral_storage_are_bounded() {
    let deployment = document("deployment.yaml", "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let config = deployed_config();
    let work_dir = config.service.work_dir.clone().expect("service.work_dir set in configmap.yaml");

    // The work directory is a mounted emptyDir with a size limit.
    let containers = pod["containers"].as_sequence().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let mount = c["volumeMounts"]
        .as_sequence()
        .expect("volumeMounts")
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(work_dir.to_str().unwrap()))
        .unwrap_or_else(|| panic!("no volume mounted at service.work_dir {}", work_dir.display()));
    let volume = pod["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the work volume");
    let size_limit = quantity_bytes(str_at(&volume["emptyDir"]["sizeLimit"], "work volume emptyDir.sizeLimit"));
    // Room for every job's input at the largest size accepted, and an output as large.
    let needed = 2 * config.service.jobs as u64 * config.service.max_input_bytes;
    assert!(size_limit >= needed, "sizeLimit {size_limit} < {needed} bytes for {} jobs", config.service.jobs);

    // The pod asks for that much ephemeral storage and is limited a little above it.
    let request =
        quantity_bytes(str_at(&c["resources"]["requests"]["ephemeral-storage"], "requests.ephemeral-storage"));
    let limit = quantity_bytes(str_at(&c["resources"]["limits"]["ephemeral-storage"], "limits.ephemeral-storage"));
    assert!(request >= size_limit && limit >= request, "request {request}, limit {limit}, work volume {size_limit}");

    // Storage credentials come from a Secret volume (re-read after rotation), and the service
    // reads them from there.
    let creds = config.storage.credentials_file.clone().expect("storage.credentials_file");
    let creds_dir = creds.parent().unwrap().to_str().unwrap();
    let secret_mount =
        c["volumeMounts"].as_sequence().unwrap().iter().find(|m| m["mountPath"].as_str() == Some(creds_dir));
    let secret_mount = secret_mount.unwrap_or_else(|| panic!("nothing mounted at {creds_dir}"));
    assert!(secret_mount.get("subPath").is_none(), "a subPath mount is never updated when the Secret changes");
    let secret_volume =
        pod["volumes"].as_sequence().unwrap().iter().find(|v| v["name"] == secret_mount["name"]).unwrap();
    assert!(secret_volume["secret"]["secretName"].is_string(), "{secret_volume:?}");

    // The config the test loaded is the one the pod reads.
    let cm = document("configmap.yaml", "ConfigMap");
    let config_volume =
        pod["volumes"].as_sequence().unwrap().iter().find(|v| v["configMap"].is_mapping()).expect("config volume");
    assert_eq!(config_volume["configMap"]["name"], cm["metadata"]["name"]);
}

#[test]
fn quantities() {
    assert_eq!(quantity_bytes("40Gi"), 40 << 30);
    assert_eq!(quantity_bytes("512Mi"), 512 << 20);
    assert_eq!(quantity_bytes("10G"), 10_000_000_000);
    assert_eq!(quantity_bytes("1024"), 1024);
}
