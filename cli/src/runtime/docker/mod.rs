//! The Docker runtime: the stack as containers through the engine's API (bollard).
//!
//! Every resource it creates carries the labels `com.payctl.project=<project>` and
//! `com.payctl.service=<service>` (the instance: ingest, ingest-2, …); every action finds what to act
//! on by them and nothing else ([`owned`]), so a user's other containers are never touched, even one
//! with a name of ours. The containers come from [`containers`], the same definition `payctl compose` writes
//! `compose/docker-compose.yml` from ([`compose`]). Health is checked from the host on the published
//! (or, on the host network, the service's own) port, exactly as on the native runtime.

pub mod compose;
pub mod containers;
mod engine;
mod images;
mod owned;
mod registry;
mod scale;

use super::{Health, LogStream, Runs, Runtime, ServiceStatus};
use crate::ops::merchants::store_key;
use crate::output;
use crate::stack::health::healthy;
use crate::stack::secrets::secret;
use crate::stack::{self, saved_service, start_rank, Kind, Ports, Scale, Svc};
use anyhow::{bail, Context};
use async_trait::async_trait;
use bollard::models::{
    ContainerCreateBody, ContainerState, ContainerSummary, HostConfig, NetworkCreateRequest,
    PortBinding, RestartPolicy, RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, KillContainerOptions, ListContainersOptions,
    ListNetworksOptions, ListVolumesOptions, LogsOptions, RemoveContainerOptions,
    RemoveVolumeOptions, StartContainerOptions, StopContainerOptions, UploadToContainerOptions,
};
use bollard::Docker as Engine;
use clap::Args;
use containers::{Container, Images, Network, Secrets};
use futures::StreamExt;
use images::ensure_image;
use owned::Ours;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const PROJECT_LABEL: &str = "com.payctl.project";

const SERVICE_LABEL: &str = "com.payctl.service";

/// The label with the state directory of the stack a container, volume or network belongs to: two
/// checkouts left on the default project must not take (or delete) each other's stack.
const HOME_LABEL: &str = "com.payctl.home";

/// This process's state directory, absolute, for [`HOME_LABEL`] (set when a runtime is made).
static HOME: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn set_home(home: &Path) {
    let absolute = std::path::absolute(home).unwrap_or_else(|_| home.to_owned());
    let _ = HOME.set(absolute.display().to_string());
}

/// The state directory a resource's labels name, if it has the label (older versions did not).
fn home_of(labels: Option<&HashMap<String, String>>) -> Option<&str> {
    labels?.get(HOME_LABEL).map(String::as_str)
}

/// Refuses when one of the project's containers belongs to the stack of another state directory: the
/// same project name from two checkouts (both on the default `payctl`) would otherwise share, and
/// then delete, one stack.
async fn refuse_other_homes(docker: &Engine, project: &str) -> anyhow::Result<()> {
    let Some(ours) = HOME.get() else {
        return Ok(());
    };
    let list = owned::summaries(docker, project).await?;
    if let Some(other) = list
        .iter()
        .filter_map(|c| home_of(c.labels.as_ref()))
        .find(|h| h != ours)
    {
        bail!(
            "project {project} is the Docker stack of {other}, not of {ours}; run payctl there, or give this one \
             another --project (PAYCTL_PROJECT)"
        );
    }
    Ok(())
}

/// Options of the Docker runtime (`payctl up --runtime docker`).
#[derive(Debug, Clone, Args)]
pub struct DockerArgs {
    /// Container network: bridge (services by name, ports published on 127.0.0.1) or host.
    #[arg(long, value_enum, env = "PAYCTL_DOCKER_NETWORK", default_value_t = Network::Bridge)]
    pub network: Network,
    /// Name of this stack: prefix of its containers, volumes and network, and its label value.
    #[arg(long, env = "PAYCTL_PROJECT", default_value = "payctl", value_parser = project_name)]
    pub project: String,
    /// Build argument for the project's images (repeatable), e.g. RUNTIME_IMAGE=debian:bookworm-slim.
    #[arg(
        long = "build-arg",
        value_name = "NAME=VALUE",
        env = "PAYCTL_BUILD_ARGS",
        value_delimiter = ','
    )]
    pub build_args: Vec<String>,
    /// Network mode for image builds (RUN steps), e.g. host where the default bridge is unavailable.
    #[arg(long, env = "PAYCTL_BUILD_NETWORK")]
    pub build_network: Option<String>,
    /// Put pay-server, pay-consumer, pay-settlement and pay-acquirer from this directory into their images instead of compiling in a
    /// container (e.g. target/release).
    #[arg(long, env = "PAYCTL_PREBUILT", value_name = "DIR")]
    pub prebuilt: Option<PathBuf>,
    /// Build the project's images even when they exist.
    #[arg(long)]
    pub rebuild: bool,
    /// Services to leave out (prometheus, grafana), comma-separated.
    #[arg(long, value_delimiter = ',', value_parser = ["prometheus", "grafana"])]
    pub without: Vec<String>,
    /// How long a service may take to become healthy.
    #[arg(long, default_value_t = 180, value_name = "SECONDS")]
    pub health_timeout: u64,
    #[command(flatten)]
    pub images: Images,
}

/// The label value the images payctl builds carry (containers run from them inherit it): no stack may
/// be called that, or its `down` would remove containers it never made.
const IMAGE_PROJECT: &str = "payctl-image";

/// clap's value parser for `--project`: a name Docker takes as a container-name prefix, not the
/// images' own label value.
pub fn project_name(s: &str) -> Result<String, String> {
    let valid = s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !valid {
        return Err(format!(
            "{s:?} is not a project name: letters, digits, '_', '.' and '-', starting with a letter or digit"
        ));
    }
    if s == IMAGE_PROJECT {
        return Err(format!(
            "{IMAGE_PROJECT} is the label of payctl's images; choose another project name"
        ));
    }
    Ok(s.to_owned())
}

/// What `up` ran, for the commands that follow (`down`, `status`, `logs`, `cb test`).
#[derive(Debug, Serialize, Deserialize)]
pub struct Saved {
    pub project: String,
    pub network: Network,
    /// The engine the stack runs on (its ID, which any address of it reports), so that a later command
    /// in a shell whose DOCKER_HOST or context points elsewhere refuses instead of acting on another
    /// engine's containers of the same project. Absent in what older versions saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<SavedEngine>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedEngine {
    pub id: String,
    /// The address `up` reached it at, for the message.
    pub host: String,
}

/// The engine the stack opened by this process runs on (set by [`Docker::open`]); [`connect`] refuses
/// another one.
static EXPECTED: std::sync::Mutex<Option<SavedEngine>> = std::sync::Mutex::new(None);

/// The engine's ID, as `docker info` reports it.
async fn engine_id(docker: &Engine) -> anyhow::Result<String> {
    docker
        .info()
        .await
        .context("asking the Docker engine for its ID")?
        .id
        .filter(|id| !id.is_empty())
        .context("the Docker engine reports no ID")
}

impl DockerArgs {
    /// What `payctl up --runtime docker` runs with when no flag is given (PAYCTL_* or the defaults),
    /// for the stack saved as `saved`.
    fn defaults_for(saved: &Saved) -> anyhow::Result<Self> {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            args: DockerArgs,
        }
        let mut args = <Defaults as clap::Parser>::try_parse_from(["payctl"])?.args;
        args.project = saved.project.clone();
        args.network = saved.network;
        Ok(args)
    }
}

/// The stack as containers of one project.
pub struct Docker {
    home: PathBuf,
    ports: Ports,
    project: String,
    /// How `up` builds and runs the stack; for a saved stack, its project and network with the
    /// defaults.
    args: Option<Box<DockerArgs>>,
    network: Network,
}

impl Docker {
    /// The stack `payctl up` is to start as `args` say.
    pub fn new(home: &Path, ports: &Ports, args: DockerArgs) -> Self {
        set_home(home);
        Self {
            home: home.to_owned(),
            ports: ports.clone(),
            project: args.project.clone(),
            network: args.network,
            args: Some(Box::new(args)),
        }
    }

    /// The stack `up` saved under `home`.
    pub fn open(home: &Path, ports: &Ports, saved: Saved) -> Self {
        set_home(home);
        if let (Some(engine), Ok(mut expected)) = (saved.engine, EXPECTED.lock()) {
            *expected = Some(engine);
        }
        Self {
            home: home.to_owned(),
            ports: ports.clone(),
            project: saved.project,
            network: saved.network,
            args: None,
        }
    }

    /// The engine and the container of a service of the stack (by its labels), if there is one.
    async fn ours(&self, service: &str) -> anyhow::Result<(Engine, Option<Ours>)> {
        self.service(service)?;
        let docker = connect().await?;
        let ours = owned::find(&docker, &self.project, service).await?;
        Ok((docker, ours))
    }

    /// The engine and the container of a running service of the stack.
    async fn running(&self, service: &str) -> anyhow::Result<(Engine, Ours)> {
        match self.ours(service).await? {
            (docker, Some(c)) if is_running(&docker, &c.id).await => Ok((docker, c)),
            _ => bail!(
                "{service} is not running ({})",
                container_name(&self.project, service)
            ),
        }
    }

    fn service(&self, name: &str) -> anyhow::Result<Svc> {
        saved_service(&self.home, &self.ports, name)
    }
}

#[async_trait]
impl Runtime for Docker {
    fn supports(&self, _: Kind) -> bool {
        true
    }

    async fn up(&self, scale: Scale) -> anyhow::Result<()> {
        let args = match &self.args {
            Some(args) => args.as_ref().clone(),
            None => DockerArgs::defaults_for(&Saved {
                project: self.project.clone(),
                network: self.network,
                engine: None,
            })?,
        };
        up(&self.home, &self.ports, scale, &args).await
    }

    async fn down(&self, volumes: bool) -> anyhow::Result<()> {
        down(&self.home, &self.project, volumes).await
    }

    async fn status(&self) -> anyhow::Result<Vec<ServiceStatus>> {
        rows(&connect().await?, &self.home).await
    }

    async fn logs(&self, service: &str, lines: usize, follow: bool) -> anyhow::Result<LogStream> {
        let Some(ours) = owned::find(&connect().await?, &self.project, service).await? else {
            bail!(
                "no container for service '{service}' in stack {} ({})",
                self.project,
                container_name(&self.project, service)
            );
        };
        logs(&ours, lines, follow).await
    }

    async fn start(&self, service: &str) -> anyhow::Result<()> {
        let svc = self.service(service)?;
        let (docker, ours) = self.ours(service).await?;
        let Some(ours) = ours else {
            bail!(
                "no container for service '{service}' in stack {}; `payctl up` creates it",
                self.project
            );
        };
        start_service(&docker, &ours, &svc).await?;
        // On a bridge, a started container may have another address than before, and nginx
        // resolved the instances' names when it loaded its config.
        if svc.kind == Kind::Ingest && self.network == Network::Bridge {
            if let Some(gateway) = owned::find(&docker, &self.project, "gateway").await? {
                if is_running(&docker, &gateway.id).await {
                    scale::reload_gateway(&docker, &gateway).await?;
                }
            }
        }
        Ok(())
    }

    async fn stop(&self, service: &str) -> anyhow::Result<bool> {
        match self.ours(service).await? {
            (docker, Some(ours)) => stop_service(&docker, &ours).await,
            (_, None) => Ok(false),
        }
    }

    async fn kill(&self, service: &str) -> anyhow::Result<bool> {
        let (docker, Some(ours)) = self.ours(service).await? else {
            return Ok(false);
        };
        let (id, name) = (&ours.id, &ours.name);
        if !is_running(&docker, id).await {
            return Ok(false);
        }
        docker
            .kill_container(
                id,
                Some(KillContainerOptions {
                    signal: "SIGKILL".into(),
                }),
            )
            .await
            .with_context(|| format!("killing {name}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while is_running(&docker, id).await {
            if Instant::now() > deadline {
                bail!("{name} still runs after docker kill");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(true)
    }

    async fn freeze(&self, service: &str) -> anyhow::Result<()> {
        let (docker, ours) = self.running(service).await?;
        docker
            .pause_container(&ours.id)
            .await
            .with_context(|| format!("pausing {}", ours.name))
    }

    async fn thaw(&self, service: &str) -> anyhow::Result<()> {
        let (docker, ours) = self.running(service).await?;
        docker
            .unpause_container(&ours.id)
            .await
            .with_context(|| format!("unpausing {}", ours.name))
    }

    async fn health(&self, service: &str) -> anyhow::Result<Health> {
        let svc = self.service(service)?;
        let (docker, ours) = self.ours(service).await?;
        let running = match &ours {
            Some(c) => is_running(&docker, &c.id).await,
            None => false,
        };
        Ok(if !running {
            Health::Stopped
        } else if healthy(svc.kind, svc.port).await {
            Health::Healthy
        } else {
            Health::Unhealthy
        })
    }

    async fn pid(&self, _: &str) -> Option<u32> {
        None
    }
}

fn saved_path(home: &Path) -> PathBuf {
    home.join("docker.json")
}

/// The Docker stack `up` started under `home`, if that is the runtime in use.
pub fn saved(home: &Path) -> Option<Saved> {
    serde_json::from_slice(&std::fs::read(saved_path(home)).ok()?).ok()
}

/// Connects to the engine the docker CLI would use ([`engine`]: DOCKER_HOST, the Docker context, the
/// default and well-known sockets), with an agreed API version.
async fn connect() -> anyhow::Result<Engine> {
    let docker = engine::connect_engine()
        .await
        .map_err(engine::NoEngine::into_error)?;
    let expected = EXPECTED.lock().ok().and_then(|e| e.clone());
    if let Some(expected) = expected {
        let id = engine_id(&docker).await?;
        if id != expected.id {
            let now = engine::found()
                .map_or_else(|| "?".to_owned(), |e| format!("{} ({})", e.host, e.from));
            bail!(
                "this stack runs on the Docker engine `up` reached at {}, but Docker now points at another engine, {now}; \
                 set DOCKER_HOST={} (or switch back to that Docker context) to act on it",
                expected.host,
                expected.host
            );
        }
        // Checked once per process: the same engine from here on.
        if let Ok(mut e) = EXPECTED.lock() {
            *e = None;
        }
    }
    Ok(docker)
}

/// True when an engine answers.
pub async fn answers() -> bool {
    connect().await.is_ok()
}

/// Whether `--runtime auto` runs on Docker: yes when an engine answers, no when none is configured and
/// none answers on the usual sockets, and an error naming the endpoint when DOCKER_HOST or a context
/// names an engine that does not answer (the user meant that engine, not the native runtime). A socket
/// that is there but dead (Docker Desktop not started) is said in one line before going native.
pub async fn chosen_by_auto() -> anyhow::Result<bool> {
    match engine::connect_engine().await {
        Ok(_) => Ok(true),
        Err(engine::NoEngine::NoneFound {
            error,
            socket_exists,
        }) => {
            if socket_exists {
                eprintln!(
                    "note: {error:#}\nnote: so the native runtime runs the stack (start Docker, or use --runtime docker to insist)"
                );
            }
            Ok(false)
        }
        Err(engine::NoEngine::Configured(e)) => Err(e),
    }
}

fn container_name(project: &str, service: &str) -> String {
    format!("{project}-{service}")
}

fn labels(project: &str, service: Option<&str>) -> HashMap<String, String> {
    let mut l = HashMap::from([(PROJECT_LABEL.to_owned(), project.to_owned())]);
    if let Some(home) = HOME.get() {
        l.insert(HOME_LABEL.to_owned(), home.clone());
    }
    if let Some(s) = service {
        l.insert(SERVICE_LABEL.to_owned(), s.to_owned());
    }
    l
}

fn project_filter(project: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_owned(),
        vec![format!("{PROJECT_LABEL}={project}")],
    )])
}

/// The secrets the containers run with, generated once per state directory (dev only).
async fn secrets(home: &Path, ports: &Ports, with_store_key: bool) -> anyhow::Result<Secrets> {
    Ok(Secrets {
        db_password: secret(home, "db-password")?,
        db_root_password: secret(home, "db-root-password")?,
        admin_token: secret(home, "admin-token")?,
        grafana_password: secret(home, "grafana-admin-password")?,
        store_key: if with_store_key {
            Some(store_key(home, ports).await?.expose().to_owned())
        } else {
            None
        },
    })
}

async fn up(home: &Path, ports: &Ports, scale: Scale, args: &DockerArgs) -> anyhow::Result<()> {
    let docker = connect().await?;
    if let Some(e) = engine::found() {
        eprintln!("docker engine at {} ({})", e.host, e.from);
    }
    std::fs::create_dir_all(home)?;
    let home = &home.canonicalize()?;
    let project = args.project.as_str();
    let stack = containers::plan(ports, scale, &args.without);
    stack::refuse_port_clash(&stack)?;
    let defs = containers::containers(
        &stack,
        args.network,
        &args.images,
        &secrets(home, ports, false).await?,
    );
    // Names held by what is not ours, volumes of other secrets: refused before anything changes.
    owned::check(&docker, project, args.network, &defs, home).await?;
    check_ports(&docker, project, &stack).await?;
    std::fs::write(
        saved_path(home),
        serde_json::to_vec_pretty(&Saved {
            project: project.to_owned(),
            network: args.network,
            engine: Some(SavedEngine {
                id: engine_id(&docker).await?,
                host: engine::found().map_or_else(String::new, |e| e.host),
            }),
        })?,
    )?;
    stack::save(home, &stack)?;

    // Images first: nothing starts until every image is there.
    // Once per image: the ingest instances share one, and checking it means hashing its build context.
    let mut checked = std::collections::HashSet::new();
    for def in defs.iter().filter(|d| checked.insert(d.image.clone())) {
        ensure_image(&docker, def, args, home).await?;
    }
    if args.network == Network::Bridge {
        ensure_network(&docker, project).await?;
    }

    // Instances beyond the ones asked for (`--scale` down), removed once nothing routes to them.
    let surplus = scale::surplus(&docker, project, &stack).await?;
    // Whether the instances change in this run: then a running gateway and Prometheus follow.
    let mut instances_changed = !surplus.is_empty();
    for svc in &stack {
        let started = Instant::now();
        // The gateway's config holds the store merchant's key, which needs the database up.
        let secrets = secrets(home, ports, svc.kind == Kind::Gateway).await?;
        let defs = containers::containers(&stack, args.network, &args.images, &secrets);
        let mut def = defs
            .iter()
            .find(|d| d.service == svc.name)
            .context("service without a container definition")?
            .clone();
        if let (Kind::Ingest, Some(p)) = (svc.kind, scale.partitions) {
            def.env.push(("APP_KAFKA_PARTITIONS".into(), p.to_string()));
        }
        let def = &def;
        let name = container_name(project, &svc.name);
        let ours = owned::find(&docker, project, &svc.name).await?;
        if let Some(ours) = &ours {
            if is_running(&docker, &ours.id).await {
                if runs_current_image(&docker, &ours.id, &def.image).await {
                    if instances_changed && matches!(svc.kind, Kind::Gateway | Kind::Prometheus) {
                        scale::follow(&docker, ours, def).await?;
                        eprintln!(
                            "{} {:<10} now on {} API instance(s) and {} consumer(s)",
                            output::mark(true),
                            svc.name,
                            scale.ingest.max(1),
                            scale.consumer.max(1)
                        );
                    } else {
                        eprintln!("{:<10} already running ({name})", svc.name);
                    }
                    continue;
                }
                // Rebuilt (or another image named): replace this container, and only this one.
                eprintln!(
                    "{:<10} runs an older image than {}: recreating {name}",
                    svc.name, def.image
                );
                stop_service(&docker, ours).await?;
            }
        }
        instances_changed |= matches!(svc.kind, Kind::Ingest | Kind::Consumer);
        let spinner = indicatif::ProgressBar::new_spinner();
        spinner.set_message(format!(
            "{:<10} starting {name} ({}) …",
            svc.name, def.image
        ));
        spinner.enable_steady_tick(Duration::from_millis(100));
        let result = start(&docker, project, args, def, ours.as_ref()).await;
        let result = match result {
            Ok(created) => {
                wait_healthy(
                    &docker,
                    &created,
                    svc,
                    Duration::from_secs(args.health_timeout),
                )
                .await
            }
            Err(e) => Err(e),
        };
        spinner.finish_and_clear();
        if let Err(e) = result {
            eprintln!(
                "{} {:<10} failed after {:.1?}",
                output::mark(false),
                svc.name,
                started.elapsed()
            );
            return Err(e.context(format!(
                "{} failed to start; `payctl logs {}` shows its log, `payctl down` removes the stack",
                svc.name, svc.name
            )));
        }
        eprintln!(
            "{} {:<10} healthy on 127.0.0.1:{} in {:.1?}",
            output::mark(true),
            svc.name,
            svc.port,
            started.elapsed()
        );
    }
    for extra in &surplus {
        scale::remove(&docker, extra).await?;
        eprintln!("{:<10} removed ({})", extra.service, extra.name);
    }
    if instances_changed {
        if let Some(prometheus) = stack.iter().find(|s| s.kind == Kind::Prometheus) {
            scale::await_targets(prometheus.port, "ingest", scale.ingest.max(1)).await;
            scale::await_targets(prometheus.port, "consumer", scale.consumer.max(1)).await;
        }
    }
    Ok(())
}

/// Fails before anything starts when a port is taken by something other than this stack, naming the
/// container (or process) that holds it.
async fn check_ports(docker: &Engine, project: &str, stack: &[Svc]) -> anyhow::Result<()> {
    let all = docker
        .list_containers(Some(ListContainersOptions {
            all: false,
            ..Default::default()
        }))
        .await?;
    for svc in stack {
        if !payctl_stack::ports::is_listening(svc.port) {
            continue;
        }
        if let Some(ours) = owned::find(docker, project, &svc.name).await? {
            if is_running(docker, &ours.id).await {
                continue;
            }
        }
        let holder = payctl_stack::ports::holder(svc.port);
        // A published port (docker-proxy) or a process inside a container (host network).
        let container = all.iter().find(|c| {
            let publishes = c
                .ports
                .iter()
                .flatten()
                .any(|p| p.public_port == Some(svc.port));
            let runs_holder = holder.as_ref().is_some_and(|(pid, _)| {
                let cgroup =
                    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
                c.id.as_deref().is_some_and(|id| cgroup.contains(id))
            });
            publishes || runs_holder
        });
        let who = match (container, holder) {
            (Some(c), _) => format!(
                "container {} ({})",
                name_of(c),
                c.image.as_deref().unwrap_or("?")
            ),
            (None, Some((pid, cmd))) => format!("{cmd} (pid {pid})"),
            (None, None) => "another process".into(),
        };
        let flag = svc.name.split('-').next().unwrap_or(&svc.name);
        bail!(
            "port {} for {} is already in use by {who}; free it or choose another with --{flag}-port",
            svc.port,
            svc.name
        );
    }
    Ok(())
}

async fn ensure_network(docker: &Engine, project: &str) -> anyhow::Result<()> {
    let existing = docker
        .list_networks(Some(ListNetworksOptions {
            filters: Some(project_filter(project)),
        }))
        .await?;
    if existing.iter().any(|n| n.name.as_deref() == Some(project)) {
        return Ok(());
    }
    docker
        .create_network(NetworkCreateRequest {
            name: project.to_owned(),
            driver: Some("bridge".into()),
            labels: Some(labels(project, None)),
            ..Default::default()
        })
        .await
        .with_context(|| format!("creating network {project}"))?;
    Ok(())
}

/// True when container `name` was created from the image `image` names now (its id, not its name:
/// a rebuilt image takes the name and leaves the container on the old one).
async fn runs_current_image(docker: &Engine, name: &str, image: &str) -> bool {
    let Ok(container) = docker
        .inspect_container(name, None::<InspectContainerOptions>)
        .await
    else {
        return false;
    };
    match docker.inspect_image(image).await {
        Ok(current) => current.id.is_some() && container.image == current.id,
        // The image is gone (pruned): nothing to compare with, leave the container alone.
        Err(_) => true,
    }
}

/// True once a container has exited and been restarted by its restart policy: it is crash-looping.
async fn has_restarted(docker: &Engine, id: &str) -> bool {
    docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
        .ok()
        .is_some_and(|c| {
            c.restart_count.unwrap_or(0) > 0 || c.state.and_then(|s| s.restarting).unwrap_or(false)
        })
}

/// A container's state as the engine has it, if the container exists.
async fn state(docker: &Engine, id: &str) -> Option<ContainerState> {
    docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
        .ok()?
        .state
}

/// Whether a container (by id: a name could be someone else's) runs; paused counts as running.
async fn is_running(docker: &Engine, id: &str) -> bool {
    state(docker, id)
        .await
        .and_then(|s| s.running)
        .unwrap_or(false)
}

/// Creates (replacing `stopped`, a stopped one of ours) and starts one container, its config files
/// placed first; returns it.
async fn start(
    docker: &Engine,
    project: &str,
    args: &DockerArgs,
    def: &Container,
    stopped: Option<&Ours>,
) -> anyhow::Result<Ours> {
    let name = container_name(project, &def.service);
    // A stopped container of ours may hold an older definition: replace it (its data is in the
    // volume). Found by its labels: a container of someone else's with this name was refused before.
    if let Some(old) = stopped {
        remove_container(docker, old).await?;
    }
    let mut binds = Vec::new();
    if let Some(mount) = def.volume {
        let volume = container_name(project, &def.service);
        docker
            .create_volume(VolumeCreateRequest {
                name: Some(volume.clone()),
                labels: Some(owned::volume_labels(project, def)),
                ..Default::default()
            })
            .await
            .with_context(|| format!("creating volume {volume}"))?;
        binds.push(format!("{volume}:{mount}"));
    }
    let port_bindings: HashMap<String, Option<Vec<PortBinding>>> = def
        .publish
        .iter()
        .map(|(host, inside)| {
            (
                format!("{inside}/tcp"),
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(host.to_string()),
                }]),
            )
        })
        .collect();
    let body = ContainerCreateBody {
        image: Some(def.image.clone()),
        env: Some(def.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        cmd: def.cmd.clone(),
        labels: Some(labels(project, Some(&def.service))),
        exposed_ports: Some(
            def.publish
                .iter()
                .map(|(_, p)| format!("{p}/tcp"))
                .collect(),
        ),
        host_config: Some(HostConfig {
            network_mode: Some(match args.network {
                Network::Bridge => project.to_owned(),
                Network::Host => "host".into(),
            }),
            port_bindings: Some(port_bindings),
            binds: Some(binds),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            ..Default::default()
        }),
        networking_config: (args.network == Network::Bridge).then(|| {
            bollard::models::NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    project.to_owned(),
                    bollard::models::EndpointSettings {
                        aliases: Some(vec![def.service.clone()]),
                        ..Default::default()
                    },
                )])),
            }
        }),
        ..Default::default()
    };
    let id = docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            }),
            body,
        )
        .await
        .with_context(|| format!("creating container {name} from {}", def.image))?
        .id;
    let created = Ours {
        id,
        name,
        service: def.service.clone(),
    };
    put_files(docker, &created, &def.files).await?;
    docker
        .start_container(&created.id, None::<StartContainerOptions>)
        .await
        .with_context(|| format!("starting {}", created.name))?;
    Ok(created)
}

/// Writes config files (path, content) into a container.
async fn put_files(docker: &Engine, c: &Ours, files: &[(String, Vec<u8>)]) -> anyhow::Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    let mut tar = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(
            &mut header,
            path.trim_start_matches('/'),
            content.as_slice(),
        )?;
    }
    docker
        .upload_to_container(
            &c.id,
            Some(UploadToContainerOptions {
                path: "/".into(),
                ..Default::default()
            }),
            bollard::body_full(tar.into_inner()?.into()),
        )
        .await
        .with_context(|| format!("writing the config files into {}", c.name))
}

/// Removes a container of ours with its anonymous volumes (apache/kafka declares some: kept, each
/// recreate would leave two behind that no label finds); its named volume stays.
async fn remove_container(docker: &Engine, c: &Ours) -> anyhow::Result<()> {
    docker
        .remove_container(
            &c.id,
            Some(RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            }),
        )
        .await
        .with_context(|| format!("removing container {}", c.name))
}

/// Waits until the service answers on its port; on a time-out or an exit, the container's last log
/// lines are in the error.
async fn wait_healthy(
    docker: &Engine,
    c: &Ours,
    svc: &Svc,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let name = &c.name;
    loop {
        if healthy(svc.kind, svc.port).await {
            return Ok(());
        }
        let running = is_running(docker, &c.id).await && !has_restarted(docker, &c.id).await;
        if !running || Instant::now() > deadline {
            let why = if running {
                format!("did not become healthy within {}s", timeout.as_secs())
            } else {
                "exited".to_owned()
            };
            bail!(
                "container {name} {why}; its last log lines:\n{}",
                log_lines(docker, &c.id, 30).await.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn log_lines(docker: &Engine, id: &str, lines: usize) -> Vec<String> {
    let mut stream = docker.logs(
        id,
        Some(LogsOptions {
            stdout: true,
            stderr: true,
            tail: lines.to_string(),
            ..Default::default()
        }),
    );
    let mut out = Vec::new();
    while let Some(Ok(chunk)) = stream.next().await {
        out.extend(chunk.to_string().lines().map(str::to_owned));
    }
    out
}

/// Stops one service's container; true if it was running.
async fn stop_service(docker: &Engine, c: &Ours) -> anyhow::Result<bool> {
    let (id, name) = (&c.id, &c.name);
    if !is_running(docker, id).await {
        return Ok(false);
    }
    if state(docker, id).await.and_then(|s| s.paused) == Some(true) {
        // A paused container would not see the stop signal until the grace time ran out.
        docker
            .unpause_container(id)
            .await
            .with_context(|| format!("unpausing {name}"))?;
    }
    docker
        .stop_container(
            id,
            Some(StopContainerOptions {
                t: Some(30),
                ..Default::default()
            }),
        )
        .await
        .with_context(|| format!("stopping {name}"))?;
    Ok(true)
}

/// Starts a service's container again, unless it runs, and waits until it is healthy.
async fn start_service(docker: &Engine, c: &Ours, svc: &Svc) -> anyhow::Result<()> {
    if !is_running(docker, &c.id).await {
        docker
            .start_container(&c.id, None::<StartContainerOptions>)
            .await
            .with_context(|| format!("starting {}", c.name))?;
    }
    wait_healthy(docker, c, svc, Duration::from_secs(120)).await
}

/// Whether the state directory `home` is this stack's, or no stack's (secrets only, say after an `up`
/// that was refused): `down --project` run where another stack keeps its state leaves that alone.
fn home_is_ours(home: &Path, project: &str) -> bool {
    match saved(home) {
        Some(s) => s.project == project,
        None => !stack::saved_file(home).exists(),
    }
}

/// Removes this project's containers and network, and with `volumes` its volumes and state directory.
/// Only resources labelled with the project are touched, so this needs nothing from `home`: it
/// works after `.payctl` was removed.
async fn down(home: &Path, project: &str, volumes: bool) -> anyhow::Result<()> {
    let docker = connect().await?;
    refuse_other_homes(&docker, project).await?;
    let filters = Some(project_filter(project));
    let containers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: filters.clone(),
            ..Default::default()
        }))
        .await?;
    // Reverse start order: the gateway first, the database last.
    let order = |c: &ContainerSummary| std::cmp::Reverse(start_rank(&service_of(c)));
    let mut containers = containers;
    containers.sort_by_key(order);
    for c in &containers {
        let Some(id) = c.id.as_deref() else { continue };
        let name = name_of(c);
        let _ = docker
            .stop_container(
                id,
                Some(StopContainerOptions {
                    t: Some(30),
                    ..Default::default()
                }),
            )
            .await;
        docker
            .remove_container(
                id,
                Some(RemoveContainerOptions {
                    force: true,
                    // With their anonymous volumes (apache/kafka declares some), which no label finds.
                    v: true,
                    ..Default::default()
                }),
            )
            .await
            .with_context(|| format!("removing container {name}"))?;
        eprintln!("{name:<22} removed");
    }
    for n in docker
        .list_networks(Some(ListNetworksOptions {
            filters: filters.clone(),
        }))
        .await?
    {
        let name = n.name.unwrap_or_default();
        docker
            .remove_network(&name)
            .await
            .with_context(|| format!("removing network {name}"))?;
        eprintln!("{name:<22} network removed");
    }
    if volumes {
        let list = docker
            .list_volumes(Some(ListVolumesOptions {
                filters: filters.clone(),
            }))
            .await?;
        for v in list.volumes.unwrap_or_default() {
            docker
                .remove_volume(&v.name, None::<RemoveVolumeOptions>)
                .await
                .with_context(|| format!("removing volume {}", v.name))?;
            eprintln!("{:<22} volume removed", v.name);
        }
        if home.exists() && home_is_ours(home, project) {
            stack::remove_state_dir(home)?;
        }
    }
    // A plain down keeps the stack's record (docker.json): the commands after it, `down --volumes`
    // first, still talk to this Docker stack, not to a native one.
    Ok(())
}

/// The payctl service a container runs (its label).
fn service_of(c: &ContainerSummary) -> String {
    c.labels
        .as_ref()
        .and_then(|l| l.get(SERVICE_LABEL))
        .cloned()
        .unwrap_or_default()
}

/// A container's name, without the engine's leading slash.
fn name_of(c: &ContainerSummary) -> String {
    c.names
        .iter()
        .flatten()
        .next()
        .map(|n| n.trim_start_matches('/').to_owned())
        .unwrap_or_default()
}

async fn rows(docker: &Engine, home: &Path) -> anyhow::Result<Vec<ServiceStatus>> {
    let project = saved(home)
        .map(|s| s.project)
        .unwrap_or_else(|| "payctl".into());
    let stack = stack::saved(home).unwrap_or_default();
    let mut containers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(project_filter(&project)),
            ..Default::default()
        }))
        .await?;
    containers.sort_by_key(|c| (start_rank(&service_of(c)), service_of(c)));
    let mut out = Vec::new();
    for c in containers {
        let service = service_of(&c);
        let svc = stack.iter().find(|s| s.name == service);
        // A paused (frozen) container runs, answering nothing: unhealthy, as a frozen process is.
        let running = c
            .state
            .as_ref()
            .is_some_and(|s| matches!(s.to_string().as_str(), "running" | "paused"));
        let health = match svc {
            _ if !running => Health::Stopped,
            Some(s) if healthy(s.kind, s.port).await => Health::Healthy,
            _ => Health::Unhealthy,
        };
        out.push(ServiceStatus {
            runs: Runs::Container {
                container: name_of(&c),
                image: c.image.unwrap_or_default(),
                state: c.status.unwrap_or_default(),
            },
            address: svc
                .map(|s| format!("127.0.0.1:{}", s.port))
                .unwrap_or_default(),
            health,
            service,
        });
    }
    Ok(out)
}

/// A service's container log through the engine: its last lines, then (with follow) what it writes.
async fn logs(c: &Ours, lines: usize, follow: bool) -> anyhow::Result<LogStream> {
    let docker = connect().await?;
    let stream = docker.logs(
        &c.id,
        Some(LogsOptions {
            follow,
            stdout: true,
            stderr: true,
            tail: lines.to_string(),
            ..Default::default()
        }),
    );
    Ok(stream.map(|item| Ok(item?.to_string())).boxed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_for_a_project_removes_only_its_own_state_directory() {
        let dir = std::env::temp_dir().join(format!("payctl-home-is-ours-{}", std::process::id()));
        let home = dir.join(".payctl");
        std::fs::create_dir_all(home.join("secrets")).unwrap();
        // Only secrets (an `up` refused before it saved anything): no stack's state, removable.
        assert!(home_is_ours(&home, "payctl-ci"));
        let save = |project: &str| {
            let saved = Saved {
                project: project.into(),
                network: Network::Host,
                engine: None,
            };
            std::fs::write(saved_path(&home), serde_json::to_vec(&saved).unwrap()).unwrap();
        };
        save("payctl-ci");
        assert!(home_is_ours(&home, "payctl-ci"));
        save("payctl");
        assert!(!home_is_ours(&home, "payctl-ci"), "another project's state");
        std::fs::remove_file(saved_path(&home)).unwrap();
        stack::save(&home, &[]).unwrap();
        assert!(!home_is_ours(&home, "payctl-ci"), "a native stack's state");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
