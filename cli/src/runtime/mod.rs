//! Where the stack runs: native processes ([`native`]) or Docker containers ([`docker`]), both from the
//! one stack definition ([`crate::stack`]) and both behind one trait, [`Runtime`].
//!
//! [`open`] gives the runtime of the stack `up` started under a state directory (what it saved there
//! says which), [`choose`] the one `up` starts it on; a command asks neither which one it got.

pub mod docker;
pub mod native;

use crate::stack::{Kind, Ports, Scale};
use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::Serialize;
use std::path::Path;

/// The platform on one runtime: the whole stack (`up`, `down`, `status`) and each named service of it
/// (mariadb, redis, kafka, ingest[-N], consumer[-N], prometheus, gateway, grafana).
#[async_trait]
pub trait Runtime: Send + Sync {
    /// Whether this runtime can run a service of this kind (Grafana only runs in a container).
    fn supports(&self, kind: Kind) -> bool;

    /// Starts what is not running of a stack of `scale`'s shape, in start order, each once it is
    /// healthy before the next, and stops the instances beyond it; reports progress on stderr. Saves
    /// the plan for the commands after.
    async fn up(&self, scale: Scale) -> anyhow::Result<()>;

    /// Stops the whole stack, last started first; with `volumes` its data is deleted too.
    async fn down(&self, volumes: bool) -> anyhow::Result<()>;

    /// Every service of the stack: what runs it, where it listens, and its health.
    async fn status(&self) -> anyhow::Result<Vec<ServiceStatus>>;

    /// A service's log: the last `lines`, then with `follow` what is appended, until the stream is
    /// dropped.
    async fn logs(&self, service: &str, lines: usize, follow: bool) -> anyhow::Result<LogStream>;

    /// Starts one service of the stack again on its data, unless it runs, and waits until it is
    /// healthy.
    async fn start(&self, service: &str) -> anyhow::Result<()>;

    /// Stops one service (gracefully, then by force; a frozen one is thawed first); true if it was
    /// running.
    async fn stop(&self, service: &str) -> anyhow::Result<bool>;

    /// Kills one service at once, as a crash would (SIGKILL to its processes; `docker kill`), and
    /// returns once it is gone; true if it was running. `start` brings it back on its data.
    async fn kill(&self, service: &str) -> anyhow::Result<bool>;

    /// Freezes a running service where it is (SIGSTOP to its processes; a paused container): it keeps
    /// its port and connections and answers nothing until [`Runtime::thaw`].
    async fn freeze(&self, service: &str) -> anyhow::Result<()>;

    /// Lets a frozen service go on (SIGCONT; unpause).
    async fn thaw(&self, service: &str) -> anyhow::Result<()>;

    /// A service's health now: stopped, or whether it answers the probe `up` waits for.
    async fn health(&self, service: &str) -> anyhow::Result<Health>;

    /// The pid of a service's process on this machine, where the runtime keeps one (native).
    async fn pid(&self, service: &str) -> Option<u32>;
}

/// A service's log as it comes: pieces of text to print as they are.
pub type LogStream = BoxStream<'static, anyhow::Result<String>>;

/// One service in [`Runtime::status`].
#[derive(Debug, Serialize)]
pub struct ServiceStatus {
    pub service: String,
    #[serde(flatten)]
    pub runs: Runs,
    /// Where it listens on this machine.
    pub address: String,
    pub health: Health,
}

/// What runs a service.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Runs {
    /// A process of the native runtime, with its pid while it runs.
    Process { pid: Option<u32> },
    /// A container: its name, image and the engine's word for its state.
    Container {
        container: String,
        image: String,
        state: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Answers as itself on its port (the same probe as `up` waits for).
    Healthy,
    /// Runs, but does not answer.
    Unhealthy,
    Stopped,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
            Health::Stopped => "stopped",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Choice {
    Auto,
    Native,
    Docker,
}

/// The runtime `payctl up` starts the stack on: Docker when asked, or (auto) when an engine answers;
/// native otherwise. Auto fails, naming the endpoint, when DOCKER_HOST or a Docker context names an
/// engine that does not answer.
pub async fn choose(
    requested: Choice,
    home: &Path,
    ports: &Ports,
    no_install: bool,
    docker: &docker::DockerArgs,
) -> anyhow::Result<Box<dyn Runtime>> {
    let on_docker = match requested {
        Choice::Auto => docker::chosen_by_auto().await?,
        Choice::Native => false,
        Choice::Docker => true,
    };
    Ok(if on_docker {
        Box::new(docker::Docker::new(home, ports, docker.clone()))
    } else {
        Box::new(native::Native::new(home, ports, no_install))
    })
}

/// The runtime of the stack `up` started under `home`: Docker when it saved a Docker stack there,
/// native otherwise. `ports`: where the native stack's services are when `up` saved no plan.
pub fn open(home: &Path, ports: &Ports) -> Box<dyn Runtime> {
    match docker::saved(home) {
        Some(saved) => Box::new(docker::Docker::open(home, ports, saved)),
        None => Box::new(native::Native::new(home, ports, false)),
    }
}
