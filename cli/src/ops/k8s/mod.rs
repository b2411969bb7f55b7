//! Kubernetes manifests (`deploy/k8s`) rendered from the same container definition the Docker runtime
//! runs and `payctl compose` writes ([`containers`]): a kustomize base and two overlays.
//!
//! - `base`: the namespace, the payment API (a Deployment), the ledger consumer and the settlement
//!   worker (StatefulSets, so that each instance keeps a stable Kafka `group.instance.id`), the gateway
//!   (nginx with the store, behind an Ingress for `/` and `/api`), their Services and the
//!   NetworkPolicies that do not depend on where the data services are.
//! - `overlays/dev`: MariaDB, Redis, Kafka (KRaft) and the mock acquirer in the cluster, as
//!   StatefulSets with volumes, each reachable only by the parts that use it.
//! - `overlays/production`: the data services and the acquirer are outside the cluster, addressed
//!   through the `payctl-config` ConfigMap and the `payctl-secrets` Secret; several API replicas with
//!   a PodDisruptionBudget and a CPU HorizontalPodAutoscaler, consumers with no more replicas than
//!   the topics have partitions.
//!
//! No secret is rendered: every workload reads `payctl-secrets`, which the user creates (README,
//! "Kubernetes"). Migrations: every service applies them at start, and sqlx's MySQL migrator holds a
//! MariaDB named lock (`GET_LOCK`) while it does, so replicas apply them one after the other — the
//! first applies, the others find nothing left — never all at once.
//!
//! A unit test fails when the committed files differ from what this renders; `scripts/k8s-check.sh`
//! renders each overlay with `kubectl kustomize` and validates it (kubernetes-validate, checkov).

pub mod yaml;

use crate::runtime::docker::containers::{self, Container, Network, Secrets};
use crate::stack::config::nginx_conf;
use crate::stack::{Kind, Scale};
use serde_json::{json, Value};

const NAMESPACE: &str = "payctl";
/// The Secret every workload reads; created by the user, never rendered.
pub const SECRET: &str = "payctl-secrets";
/// The addresses of the data services and the acquirer.
pub const CONFIG: &str = "payctl-config";
/// The user every container runs as: the project images' own (compose/rust-service.Dockerfile), high
/// enough not to collide with a host's users; the upstream images run as any user.
const UID: u32 = 10001;
/// The gateway's port inside the cluster: above 1024, so nginx needs no capability as a non-root user.
const GATEWAY_PORT: u16 = 8080;
/// Stands for a secret in the container definition; every environment variable holding it is read
/// from [`SECRET`] instead ([`secret_key`]).
const SECRET_MARK: &str = "<payctl-secret>";
/// Environment read from [`CONFIG`]: where the services outside the pod are.
const CONFIG_KEYS: [&str; 3] = [
    "APP_REDIS_URL",
    "KAFKA_BOOTSTRAP_SERVERS",
    "APP_ACQUIRER_URL",
];

/// Every rendered file, relative to the output directory (`deploy/k8s`).
pub fn files() -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let defs = definition();
    let mut out = Vec::new();
    let mut write = |path: &str, docs: Vec<Value>| {
        let body: Vec<String> = docs.iter().map(yaml::to_yaml).collect();
        out.push((
            path.to_owned(),
            format!("{HEADER}{}", body.join("---\n")).into_bytes(),
        ));
    };

    // base
    let app = |kind: Kind| -> anyhow::Result<&Container> {
        defs.iter()
            .find(|c| c.kind == kind)
            .ok_or_else(|| anyhow::anyhow!("no {kind:?} in the stack definition"))
    };
    write(
        "base/kustomization.yaml",
        vec![kustomization(
            &[
                "namespace.yaml",
                "ingest.yaml",
                "consumer.yaml",
                "settlement.yaml",
                "gateway.yaml",
                "network-policies.yaml",
            ],
            json!({}),
        )],
    );
    write(
        "base/namespace.yaml",
        vec![json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": NAMESPACE},
        })],
    );
    for kind in [Kind::Ingest, Kind::Consumer, Kind::Settlement] {
        let c = app(kind)?;
        write(&format!("base/{}.yaml", c.service), service_workload(c)?);
    }
    write("base/gateway.yaml", gateway(app(Kind::Gateway)?, &defs));
    write("base/network-policies.yaml", base_policies(&defs));

    // overlays/dev
    let dev_data = [Kind::MariaDb, Kind::Redis, Kind::Kafka, Kind::Acquirer];
    write(
        "overlays/dev/kustomization.yaml",
        vec![kustomization(
            &[
                "../../base",
                "config.yaml",
                "mariadb.yaml",
                "redis.yaml",
                "kafka.yaml",
                "acquirer.yaml",
                "network-policies.yaml",
            ],
            json!({}),
        )],
    );
    write("overlays/dev/config.yaml", vec![config_map(&defs, false)]);
    for kind in dev_data {
        let c = app(kind)?;
        write(
            &format!("overlays/dev/{}.yaml", c.service),
            data_workload(c)?,
        );
    }
    write(
        "overlays/dev/network-policies.yaml",
        egress_policies(&defs, false),
    );

    // overlays/production
    let replicas: Vec<Value> = production_replicas()
        .iter()
        .map(|(name, count)| json!({"name": name, "count": count}))
        .collect();
    write(
        "overlays/production/kustomization.yaml",
        vec![kustomization(
            &[
                "../../base",
                "config.yaml",
                "autoscaling.yaml",
                "network-policies.yaml",
            ],
            json!({"replicas": replicas}),
        )],
    );
    write(
        "overlays/production/config.yaml",
        vec![config_map(&defs, true)],
    );
    write("overlays/production/autoscaling.yaml", autoscaling());
    write(
        "overlays/production/network-policies.yaml",
        egress_policies(&defs, true),
    );
    Ok(out)
}

const HEADER: &str = "# Generated by `payctl k8s` from payctl's stack definition (cli/src/ops/k8s): edit that and run\n\
# `payctl k8s`; a test fails when these files and the definition differ.\n";

/// The default stack's containers as the Docker runtime defines them on a bridge network (service
/// names as hosts), secrets marked, without Prometheus and Grafana: a cluster has its own, which find
/// the services through their scrape annotations.
fn definition() -> Vec<Container> {
    let (ports, images) = containers::defaults();
    let stack = containers::plan(
        &ports,
        Scale::default(),
        &["prometheus".into(), "grafana".into()],
    );
    let secrets = Secrets {
        db_password: SECRET_MARK.into(),
        db_root_password: SECRET_MARK.into(),
        admin_token: SECRET_MARK.into(),
        grafana_password: SECRET_MARK.into(),
        store_key: None,
    };
    containers::containers(&stack, Network::Bridge, &images, &secrets)
}

/// Replicas in production before the autoscaler: three API instances (two stay through a voluntary
/// disruption), a ledger consumer per partition, two settlement workers (they share the partitions).
fn production_replicas() -> [(&'static str, i32); 3] {
    [("ingest", 3), ("consumer", partitions()), ("settlement", 2)]
}

/// The partitions pay-server gives each topic it creates (its APP_KAFKA_PARTITIONS default): no
/// consumer group has more members than this, or the extra ones sit idle.
pub fn partitions() -> i32 {
    #[derive(clap::Parser)]
    struct Kafka {
        #[command(flatten)]
        kafka: pay_server::config::KafkaConfig,
    }
    <Kafka as clap::Parser>::parse_from(["pay-server"])
        .kafka
        .partitions
}

/// The key in [`SECRET`] an environment variable holding a secret is read from.
fn secret_key(env: &str) -> Option<&'static str> {
    match env {
        "APP_DATABASE_URL" => Some("database-url"),
        "APP_ADMIN_TOKEN" => Some("admin-token"),
        "MARIADB_PASSWORD" => Some("db-password"),
        "MARIADB_ROOT_PASSWORD" => Some("db-root-password"),
        _ => None,
    }
}

fn kustomization(resources: &[&str], extra: Value) -> Value {
    let mut k = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": NAMESPACE,
        "labels": [{"pairs": {"app.kubernetes.io/part-of": "payctl"}}],
        "resources": resources,
    });
    if let (Some(k), Value::Object(extra)) = (k.as_object_mut(), extra) {
        k.extend(extra);
    }
    k
}

fn labels(name: &str) -> Value {
    json!({"app.kubernetes.io/name": name})
}

/// Requests and limits from BENCHMARKS.md (two shared cores, everything co-located): (cpu request,
/// memory request, cpu limit, memory limit). Requests are what a service used at ~1,000 authorizes/s,
/// limits leave room for bursts and for what was not measured.
fn resources(kind: Kind) -> Value {
    let (cpu, mem, cpu_max, mem_max) = match kind {
        // 0.29–0.66 ms of CPU per authorize (0.3–0.4 core at 1,000/s); peak RSS 18–37 MiB against a
        // target of 150 MiB.
        Kind::Ingest => ("250m", "64Mi", "1", "256Mi"),
        // 0.03–0.09 ms per flow; peak RSS 13–20 MiB. The settlement worker and the acquirer are not
        // measured yet: the consumer's figures, a worker of the same shape.
        Kind::Consumer | Kind::Settlement | Kind::Acquirer => ("50m", "32Mi", "500m", "128Mi"),
        // nginx: 0.07–0.22 ms per flow.
        Kind::Gateway => ("100m", "32Mi", "500m", "128Mi"),
        // 0.39–1.70 ms per flow: the biggest share; its buffer pool wants memory.
        Kind::MariaDb => ("500m", "512Mi", "2", "1Gi"),
        // 0.09–0.22 ms per flow.
        Kind::Redis => ("100m", "64Mi", "500m", "256Mi"),
        // Measured with tansu (0.16–0.80 ms per flow), not Kafka's JVM: its heap is set to 512 MiB.
        Kind::Kafka => ("500m", "768Mi", "1", "1Gi"),
        Kind::Prometheus | Kind::Grafana => ("100m", "128Mi", "500m", "512Mi"),
    };
    json!({
        "requests": {"cpu": cpu, "memory": mem},
        "limits": {"cpu": cpu_max, "memory": mem_max},
    })
}

fn pod_security() -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": UID,
        "runAsGroup": UID,
        "fsGroup": UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

fn container_security() -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": UID,
        "runAsGroup": UID,
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "privileged": false,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

/// The checks skipped on a workload, each with its reason, as checkov reads them.
fn skips(extra: &[(&str, &str)]) -> Value {
    let mut all = vec![
        (
            "CKV_K8S_43",
            "images are named by tag here; a deployment pins digests with `kustomize edit set image` (an image@sha256 reference)",
        ),
        (
            "CKV_K8S_15",
            "IfNotPresent: dev images are loaded into the cluster (kind load), not pulled; pinned digests make Always pointless",
        ),
    ];
    all.extend_from_slice(extra);
    let map: serde_json::Map<String, Value> = all
        .iter()
        .enumerate()
        .map(|(i, (id, why))| {
            (
                format!("checkov.io/skip{}", i + 1),
                Value::String(format!("{id}={why}")),
            )
        })
        .collect();
    Value::Object(map)
}

const SECRETS_IN_ENV: (&str, &str) = (
    "CKV_K8S_35",
    "the services read the database URL and admin token from environment variables only (APP_DATABASE_URL, APP_ADMIN_TOKEN)",
);

/// One environment variable of the definition, from where it lives in the cluster.
fn env_var(key: &str, value: &str) -> anyhow::Result<Value> {
    if value.contains(SECRET_MARK) {
        let secret = secret_key(key)
            .ok_or_else(|| anyhow::anyhow!("{key} holds a secret but has no key in {SECRET}"))?;
        return Ok(
            json!({"name": key, "valueFrom": {"secretKeyRef": {"name": SECRET, "key": secret}}}),
        );
    }
    if CONFIG_KEYS.contains(&key) {
        return Ok(
            json!({"name": key, "valueFrom": {"configMapKeyRef": {"name": CONFIG, "key": key}}}),
        );
    }
    if key == "APP_CONSUMER_INSTANCE_ID" {
        // The pod's name: stable for a StatefulSet's members (consumer-0, …), unique for the API's.
        return Ok(json!({"name": key, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}));
    }
    Ok(json!({"name": key, "value": value}))
}

fn http_probe(path: &str, port: u16, period: u32, failures: u32) -> Value {
    json!({
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    })
}

fn tmp_volume() -> Value {
    json!({"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}})
}

/// A Service for `name`'s pods; `protocol` names the port (http, mysql, redis, kafka).
fn service(name: &str, port: u16, protocol: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels(name)},
        "spec": {
            "selector": labels(name),
            "ports": [{"name": protocol, "port": port, "targetPort": port}],
        },
    })
}

/// The payment API, the ledger consumer or the settlement worker: its Service and workload.
fn service_workload(c: &Container) -> anyhow::Result<Vec<Value>> {
    let port = containers::container_port(c.kind);
    let mut env: Vec<Value> = c
        .env
        .iter()
        .map(|(k, v)| env_var(k, v))
        .collect::<anyhow::Result<_>>()?;
    if c.kind == Kind::Ingest {
        // Every instance creates the topics with the same partitions (the consumers' replicas are
        // checked against them).
        env.push(json!({"name": "APP_KAFKA_PARTITIONS", "value": partitions().to_string()}));
    }
    let container = json!({
        "name": c.service,
        "image": c.image,
        "imagePullPolicy": "IfNotPresent",
        "env": env,
        "ports": [{"name": "http", "containerPort": port}],
        // Migrations (under sqlx's lock) and the first connections come before the listener.
        "startupProbe": http_probe("/health", port, 2, 60),
        "livenessProbe": http_probe("/health", port, 10, 3),
        "readinessProbe": http_probe("/ready", port, 5, 2),
        "resources": resources(c.kind),
        "securityContext": container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    });
    let mut pod = json!({
        "metadata": {
            "labels": labels(&c.service),
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": port.to_string(),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": {
            "automountServiceAccountToken": false,
            "securityContext": pod_security(),
            "containers": [container],
            "volumes": [tmp_volume()],
        },
    });
    if c.kind == Kind::Ingest {
        // Replicas on different nodes where there are several.
        pod["spec"]["topologySpreadConstraints"] = json!([{
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": labels(&c.service)},
        }]);
    }
    let workload = match c.kind {
        Kind::Ingest => json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": c.service, "labels": labels(&c.service), "annotations": skips(&[SECRETS_IN_ENV])},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels(&c.service)},
                // One new instance at a time, none taken away before its successor is ready.
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "template": pod,
            },
        }),
        // A StatefulSet: its members keep their names across restarts, so their static group
        // membership (APP_CONSUMER_INSTANCE_ID) takes the partitions back at once.
        _ => json!({
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": c.service, "labels": labels(&c.service), "annotations": skips(&[SECRETS_IN_ENV])},
            "spec": {
                "replicas": 1,
                "serviceName": c.service,
                "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": labels(&c.service)},
                "template": pod,
            },
        }),
    };
    Ok(vec![service(&c.service, port, "http"), workload])
}

/// The gateway: nginx serving the store at `/` and balancing `/api/` over the API's Service, its
/// config (the same nginx.conf the other runtimes use, listening on [`GATEWAY_PORT`]), Service and
/// the Ingress in front of it.
fn gateway(c: &Container, defs: &[Container]) -> Vec<Value> {
    let upstreams: Vec<String> = defs
        .iter()
        .filter(|d| d.kind == Kind::Ingest)
        .map(|d| format!("{}:{}", d.service, containers::container_port(d.kind)))
        .collect();
    let conf = nginx_conf(
        &format!("0.0.0.0:{GATEWAY_PORT}"),
        &upstreams,
        None,
        &containers::container_nginx(),
    );
    let name = c.service.as_str();
    let config_name = format!("{name}-nginx");
    let container = json!({
        "name": name,
        "image": c.image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": GATEWAY_PORT}],
        "livenessProbe": http_probe("/health", GATEWAY_PORT, 10, 3),
        "readinessProbe": http_probe("/health", GATEWAY_PORT, 5, 2),
        "resources": resources(c.kind),
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "nginx-conf", "mountPath": "/etc/nginx/nginx.conf", "subPath": "nginx.conf", "readOnly": true},
        ],
    });
    let path = |p: &str| json!({"path": p, "pathType": "Prefix", "backend": {"service": {"name": name, "port": {"number": GATEWAY_PORT}}}});
    vec![
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": config_name, "labels": labels(name)},
            "data": {"nginx.conf": conf},
        }),
        service(name, GATEWAY_PORT, "http"),
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": labels(name), "annotations": skips(&[])},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels(name)},
                "template": {
                    "metadata": {"labels": labels(name)},
                    "spec": {
                        "automountServiceAccountToken": false,
                        "securityContext": pod_security(),
                        "containers": [container],
                        "volumes": [
                            tmp_volume(),
                            {"name": "nginx-conf", "configMap": {"name": config_name}},
                        ],
                    },
                },
            },
        }),
        // `/` is the store, `/api` the payment API: both through the gateway, which strips `/api`
        // and retries a refused connection on another API instance, whatever the ingress controller.
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": name, "labels": labels(name)},
            "spec": {"rules": [{"http": {"paths": [path("/api"), path("/")]}}]},
        }),
    ]
}

/// The addresses of what the services reach outside their pods. Dev: the definition's own (the
/// overlay's Services). Production: placeholders to replace with the real ones.
fn config_map(defs: &[Container], production: bool) -> Value {
    let mut data = serde_json::Map::new();
    for (k, v) in defs.iter().flat_map(|c| &c.env) {
        if CONFIG_KEYS.contains(&k.as_str()) && !data.contains_key(k) {
            let value = if production {
                match k.as_str() {
                    "APP_REDIS_URL" => "redis://redis.example.internal:6379/",
                    "KAFKA_BOOTSTRAP_SERVERS" => {
                        "kafka-1.example.internal:9092,kafka-2.example.internal:9092,kafka-3.example.internal:9092"
                    }
                    _ => "https://acquirer.example.com",
                }
                .to_owned()
            } else {
                v.clone()
            };
            data.insert(k.clone(), Value::String(value));
        }
    }
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CONFIG},
        "data": data,
    })
}

/// A MariaDB, Redis, Kafka or acquirer StatefulSet with its volume, and its Service (dev overlay).
fn data_workload(c: &Container) -> anyhow::Result<Vec<Value>> {
    let name = c.service.as_str();
    let port = containers::container_port(c.kind);
    let mount = c
        .volume
        .ok_or_else(|| anyhow::anyhow!("{name} has no volume in the definition"))?;
    let mut env: Vec<Value> = Vec::new();
    let mut mounts = vec![
        json!({"name": "data", "mountPath": mount}),
        json!({"name": "tmp", "mountPath": "/tmp"}),
    ];
    let mut volumes = vec![tmp_volume()];
    let mut init = Vec::new();
    let mut args = c.cmd.clone();
    let extra_skips: Vec<(&str, &str)> = Vec::new();
    let (readiness, liveness, storage) = match c.kind {
        Kind::MariaDb => {
            // The image reads each password from a file (MARIADB_*_FILE): mounted, not in the
            // environment.
            for (k, v) in &c.env {
                match secret_key(k) {
                    Some(key) if v.contains(SECRET_MARK) => env.push(json!({
                        "name": format!("{k}_FILE"),
                        "value": format!("/run/secrets/payctl/{key}"),
                    })),
                    _ => env.push(env_var(k, v)?),
                }
            }
            mounts.push(
                json!({"name": "secrets", "mountPath": "/run/secrets/payctl", "readOnly": true}),
            );
            mounts.push(json!({"name": "run", "mountPath": "/run/mysqld"}));
            // 0440: the pod's group (fsGroup) reads them, nobody else.
            volumes.push(
                json!({"name": "secrets", "secret": {"secretName": SECRET, "defaultMode": 0o440, "items": [
                    {"key": "db-password", "path": "db-password"},
                    {"key": "db-root-password", "path": "db-root-password"},
                ]}}),
            );
            volumes.push(json!({"name": "run", "emptyDir": {"sizeLimit": "16Mi"}}));
            let probe = exec(&["healthcheck.sh", "--connect", "--innodb_initialized"], 5);
            (probe.clone(), probe, "10Gi")
        }
        Kind::Redis => {
            let probe = exec(&["redis-cli", "ping"], 3);
            (probe.clone(), probe, "1Gi")
        }
        Kind::Kafka => {
            // One KRaft node (broker and controller) on one listener for the cluster, advertised as
            // its Service; the rest (replication factors of one, no auto-created topics) as the
            // Docker runtime has it. The data in a folder of the volume: Kafka takes every folder of
            // its log dir for a partition, a fresh volume's lost+found included.
            for (k, v) in &c.env {
                let v = match k.as_str() {
                    "KAFKA_LISTENERS" => "PLAINTEXT://:9092,CONTROLLER://:9093".to_owned(),
                    "KAFKA_ADVERTISED_LISTENERS" => format!("PLAINTEXT://{name}:{port}"),
                    "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP" => {
                        "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT".to_owned()
                    }
                    "KAFKA_INTER_BROKER_LISTENER_NAME" => "PLAINTEXT".to_owned(),
                    "KAFKA_LOG_DIRS" => format!("{mount}/logs"),
                    _ => v.clone(),
                };
                env.push(env_var(k, &v)?);
            }
            env.push(json!({"name": "KAFKA_HEAP_OPTS", "value": "-Xmx512m -Xms512m"}));
            // The image writes its server.properties from the environment into its config folder
            // and its logs under /opt/kafka/logs: both on writable volumes, the config folder
            // seeded from the image by an init container.
            mounts.push(json!({"name": "config", "mountPath": "/opt/kafka/config"}));
            mounts.push(json!({"name": "logs", "mountPath": "/opt/kafka/logs"}));
            volumes.push(json!({"name": "config", "emptyDir": {"sizeLimit": "16Mi"}}));
            volumes.push(json!({"name": "logs", "emptyDir": {"sizeLimit": "256Mi"}}));
            init.push(json!({
                "name": "config",
                "image": c.image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", "cp -R /opt/kafka/config/. /seed/"],
                "resources": resources(c.kind),
                "securityContext": container_security(),
                "volumeMounts": [{"name": "config", "mountPath": "/seed"}],
            }));
            // The broker's own tool starts a JVM: seconds, so a long timeout for readiness and a
            // plain TCP check for liveness.
            let mut ready = exec(
                &[
                    "sh",
                    "-c",
                    "/opt/kafka/bin/kafka-broker-api-versions.sh --bootstrap-server localhost:9092 > /dev/null",
                ],
                15,
            );
            ready["periodSeconds"] = json!(15);
            let alive = json!({"tcpSocket": {"port": port}, "periodSeconds": 10, "timeoutSeconds": 3, "failureThreshold": 6});
            (ready, alive, "10Gi")
        }
        Kind::Acquirer => {
            for (k, v) in &c.env {
                env.push(env_var(k, v)?);
            }
            args = None;
            let probe = http_probe("/health", port, 10, 3);
            let ready = http_probe("/ready", port, 5, 2);
            (ready, probe, "1Gi")
        }
        _ => anyhow::bail!("{name} is not a data service"),
    };
    if c.kind == Kind::Redis {
        for (k, v) in &c.env {
            env.push(env_var(k, v)?);
        }
    }
    let protocol = match c.kind {
        Kind::MariaDb => "mysql",
        Kind::Redis => "redis",
        Kind::Kafka => "kafka",
        _ => "http",
    };
    // A first start initialises the data (MariaDB's system tables, Kafka's storage format): up to
    // five minutes before liveness counts.
    let mut startup = readiness.clone();
    startup["failureThreshold"] = json!(30);
    let mut container = json!({
        "name": name,
        "image": c.image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": protocol, "containerPort": port}],
        "startupProbe": startup,
        "readinessProbe": readiness,
        "livenessProbe": liveness,
        "resources": resources(c.kind),
        "securityContext": container_security(),
        "volumeMounts": mounts,
    });
    if !env.is_empty() {
        container["env"] = Value::Array(env);
    }
    if let Some(args) = args {
        container["args"] = json!(args);
    }
    let mut pod_spec = json!({
        "automountServiceAccountToken": false,
        "securityContext": pod_security(),
        "containers": [container],
        "volumes": volumes,
    });
    if !init.is_empty() {
        pod_spec["initContainers"] = Value::Array(init);
    }
    let mut template = json!({"metadata": {"labels": labels(name)}, "spec": pod_spec});
    if c.kind == Kind::Acquirer {
        template["metadata"]["annotations"] = json!({
            "prometheus.io/scrape": "true",
            "prometheus.io/port": port.to_string(),
            "prometheus.io/path": "/metrics",
        });
    }
    Ok(vec![
        service(name, port, protocol),
        json!({
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": name, "labels": labels(name), "annotations": skips(&extra_skips)},
            "spec": {
                "replicas": 1,
                "serviceName": name,
                "selector": {"matchLabels": labels(name)},
                "template": template,
                "volumeClaimTemplates": [{
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": storage}},
                    },
                }],
            },
        }),
    ])
}

fn exec(command: &[&str], timeout: u32) -> Value {
    json!({
        "exec": {"command": command},
        "periodSeconds": 10,
        "timeoutSeconds": timeout,
        "failureThreshold": 6,
    })
}

/// Pods selected by name.
fn pods(name: &str) -> Value {
    json!({"podSelector": {"matchLabels": labels(name)}})
}

/// Prometheus (any namespace, the pods labelled as it), for the scrape annotations.
fn prometheus() -> Value {
    json!({
        "namespaceSelector": {},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    })
}

fn policy(name: &str, selected: &str, types: &[&str], rules: Value) -> Value {
    let mut spec = json!({
        "podSelector": if selected.is_empty() { json!({}) } else { json!({"matchLabels": labels(selected)}) },
        "policyTypes": types,
    });
    if let (Some(spec), Value::Object(rules)) = (spec.as_object_mut(), rules) {
        spec.extend(rules);
    }
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name},
        "spec": spec,
    })
}

/// Name resolution, which every part needs to find another.
fn dns() -> Value {
    json!({
        "to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    })
}

/// Nothing in or out unless a policy lets it; who may call each part of the base (the gateway from
/// the ingress controller, the API from the gateway, Prometheus every service's metrics port) and
/// the gateway's way to the API.
fn base_policies(defs: &[Container]) -> Vec<Value> {
    let tcp = |port: u16| json!([{"protocol": "TCP", "port": port}]);
    let mut v = vec![policy(
        "default-deny",
        "",
        &["Ingress", "Egress"],
        json!({}),
    )];
    for c in defs {
        let port = containers::container_port(c.kind);
        let from = match c.kind {
            // The ingress controller, wherever it runs.
            Kind::Gateway => vec![json!({"namespaceSelector": {}})],
            Kind::Ingest => vec![pods("gateway"), prometheus()],
            Kind::Consumer | Kind::Settlement => vec![prometheus()],
            _ => continue,
        };
        let port = if c.kind == Kind::Gateway {
            GATEWAY_PORT
        } else {
            port
        };
        v.push(policy(
            &format!("{}-ingress", c.service),
            &c.service,
            &["Ingress"],
            json!({"ingress": [{"from": from, "ports": tcp(port)}]}),
        ));
    }
    let ingest = containers::container_port(Kind::Ingest);
    v.push(policy(
        "gateway-egress",
        "gateway",
        &["Egress"],
        json!({"egress": [dns(), {"to": [pods("ingest")], "ports": tcp(ingest)}]}),
    ));
    v
}

/// What each service connects to. The stack definition's dependencies also order the starts, and
/// the ledger consumer's name Redis, which neither it nor the settlement worker reads (their configs
/// have no Redis URL): a policy lets through only what a service's config reads.
fn reaches(kind: Kind) -> &'static [Kind] {
    match kind {
        Kind::Ingest => &[Kind::MariaDb, Kind::Redis, Kind::Kafka],
        Kind::Consumer => &[Kind::MariaDb, Kind::Kafka],
        Kind::Settlement => &[Kind::MariaDb, Kind::Kafka, Kind::Acquirer],
        _ => &[],
    }
}

/// Where the services may connect: the data services they depend on (the stack definition's
/// dependencies) and the acquirer. Dev: the overlay's pods, which in turn accept only those callers.
/// Production: the data services' ports at any address, since they are outside the cluster (narrow
/// them to your networks with an `ipBlock`).
fn egress_policies(defs: &[Container], production: bool) -> Vec<Value> {
    let (ports, _) = containers::defaults();
    let stack = containers::plan(&ports, Scale::default(), &[]);
    let outside = [Kind::MariaDb, Kind::Redis, Kind::Kafka, Kind::Acquirer];
    let mut callers: Vec<(Kind, Vec<String>)> = Vec::new();
    let mut v = Vec::new();
    for c in defs {
        if !matches!(c.kind, Kind::Ingest | Kind::Consumer | Kind::Settlement) {
            continue;
        }
        let Some(svc) = stack.iter().find(|s| s.name == c.service) else {
            continue;
        };
        let mut rules = vec![dns()];
        for dep in crate::stack::depends_on(svc, &stack) {
            let Some(kind) = stack.iter().find(|s| s.name == dep).map(|s| s.kind) else {
                continue;
            };
            if !outside.contains(&kind) || !reaches(c.kind).contains(&kind) {
                continue;
            }
            let port = if production && kind == Kind::Acquirer {
                443
            } else {
                containers::container_port(kind)
            };
            let tcp = json!([{"protocol": "TCP", "port": port}]);
            rules.push(if production {
                json!({"ports": tcp})
            } else {
                json!({"to": [pods(&dep)], "ports": tcp})
            });
            match callers.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, names)) => names.push(c.service.clone()),
                None => callers.push((kind, vec![c.service.clone()])),
            }
        }
        v.push(policy(
            &format!("{}-egress", c.service),
            &c.service,
            &["Egress"],
            json!({"egress": rules}),
        ));
    }
    if !production {
        // The broker's readiness tool asks localhost for the brokers, then calls each at its
        // advertised address (the Service): the broker must reach itself.
        if let Some(kafka) = defs.iter().find(|c| c.kind == Kind::Kafka) {
            let port = containers::container_port(Kind::Kafka);
            v.push(policy(
                "kafka-egress",
                &kafka.service,
                &["Egress"],
                json!({"egress": [dns(), {"to": [pods(&kafka.service)], "ports": [{"protocol": "TCP", "port": port}]}]}),
            ));
        }
        for (kind, names) in callers {
            let Some(c) = defs.iter().find(|c| c.kind == kind) else {
                continue;
            };
            let port = containers::container_port(kind);
            let mut from: Vec<Value> = names.iter().map(|n| pods(n)).collect();
            match kind {
                Kind::Acquirer => from.push(prometheus()),
                // Itself, for its readiness tool (see kafka-egress).
                Kind::Kafka => from.push(pods(&c.service)),
                _ => {}
            }
            v.push(policy(
                &format!("{}-ingress", c.service),
                &c.service,
                &["Ingress"],
                json!({"ingress": [{"from": from, "ports": [{"protocol": "TCP", "port": port}]}]}),
            ));
        }
    }
    v
}

/// Production: the API keeps two instances through voluntary disruptions and grows with its CPU; the
/// consumers keep all but one.
fn autoscaling() -> Vec<Value> {
    let pdb = |name: &str, rule: Value| {
        let mut spec = json!({"selector": {"matchLabels": labels(name)}});
        if let (Some(spec), Value::Object(rule)) = (spec.as_object_mut(), rule) {
            spec.extend(rule);
        }
        json!({
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": name},
            "spec": spec,
        })
    };
    vec![
        pdb("ingest", json!({"minAvailable": 2})),
        pdb("consumer", json!({"maxUnavailable": 1})),
        json!({
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "ingest"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ingest"},
                "minReplicas": 3,
                "maxReplicas": 10,
                "metrics": [{
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
                }],
            },
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered() -> Vec<(String, String)> {
        files()
            .unwrap()
            .into_iter()
            .map(|(p, b)| (p, String::from_utf8(b).unwrap()))
            .collect()
    }

    #[test]
    fn the_committed_manifests_are_what_the_definition_renders() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/k8s");
        for (path, body) in rendered() {
            let committed = std::fs::read_to_string(dir.join(&path)).unwrap_or_default();
            assert!(
                committed == body,
                "deploy/k8s/{path} differs from the stack definition; run `cargo run -p payctl -- k8s`"
            );
        }
    }

    #[test]
    fn every_service_of_the_definition_has_its_manifest() {
        let files = rendered();
        let all: String = files.iter().map(|(_, b)| b.as_str()).collect();
        for c in definition() {
            assert!(
                all.contains(&format!("  name: {}\n", c.service)),
                "{} missing",
                c.service
            );
            assert!(all.contains(&format!("image: {}", yaml::to_yaml(&json!(c.image)).trim())));
        }
        // No secret value is rendered: every one is read from the Secret the user creates.
        assert!(!all.contains(SECRET_MARK));
        assert!(!all.contains("kind: Secret"));
    }

    #[test]
    fn consumers_have_no_more_replicas_than_the_topics_have_partitions() {
        let partitions = partitions();
        assert!(partitions >= 1);
        let replicas = production_replicas();
        for name in ["consumer", "settlement"] {
            let (_, count) = replicas.iter().find(|(n, _)| *n == name).unwrap();
            assert!(*count <= partitions, "{name}: {count} > {partitions}");
        }
        let files = rendered();
        let (_, k) = files
            .iter()
            .find(|(p, _)| p == "overlays/production/kustomization.yaml")
            .unwrap();
        for (name, count) in replicas {
            assert!(
                k.contains(&format!("- count: {count}\n  name: {name}\n")),
                "{name} ×{count} not in {k}"
            );
        }
    }

    #[test]
    fn a_service_reaches_only_what_it_depends_on() {
        let (ports, _) = containers::defaults();
        let stack = containers::plan(&ports, Scale::default(), &[]);
        for svc in &stack {
            let deps = crate::stack::depends_on(svc, &stack);
            for kind in reaches(svc.kind) {
                let name = stack.iter().find(|s| s.kind == *kind).unwrap();
                assert!(deps.contains(&name.name), "{} → {}", svc.name, name.name);
            }
        }
        let files = rendered();
        let (_, dev) = files
            .iter()
            .find(|(p, _)| p == "overlays/dev/network-policies.yaml")
            .unwrap();
        // Redis accepts the API only.
        let redis = &dev[dev.find("name: redis-ingress").unwrap()..];
        let redis = &redis[..redis.find("---").unwrap_or(redis.len())];
        assert!(
            redis.contains("name: ingest") && !redis.contains("name: consumer"),
            "{redis}"
        );
    }

    #[test]
    fn every_secret_in_the_definition_has_a_key_in_the_secret() {
        for c in definition() {
            for (k, v) in &c.env {
                assert!(env_var(k, v).is_ok(), "{}: {k}", c.service);
            }
        }
    }
}
