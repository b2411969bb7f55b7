//! Finding the Docker engine the way the docker CLI does, so payctl talks to the engine `docker ps`
//! shows: `DOCKER_HOST` first, then the Docker context (`DOCKER_CONTEXT`, else `currentContext` in
//! `$DOCKER_CONFIG/config.json`), then the default socket, then the sockets Docker Desktop, Colima and
//! rootless Docker create. An engine that was configured (DOCKER_HOST or a context) and does not answer
//! is an error naming it, never a reason to look elsewhere: the user asked for that engine.
//!
//! TLS endpoints (`DOCKER_TLS_VERIFY` with `tcp://`, `https://`, contexts created with `ca=,cert=,key=`)
//! are spoken with the client certificate from `DOCKER_CERT_PATH` (else the config directory) or the
//! context's TLS directory, as the docker CLI does.
//!
//! The resolution is a pure function of [`Env`] and the files under the config directory, so the tests
//! run it against temporary `DOCKER_CONFIG` directories.

use anyhow::{bail, Context};
use bollard::{Docker as Engine, API_DEFAULT_VERSION};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// The socket every Docker Engine on Linux listens on unless told otherwise.
pub const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";

/// How long one endpoint may take to answer a version request and a ping.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// Read/write timeout of each request, as bollard's own defaults.
const REQUEST_TIMEOUT: u64 = 120;

/// What the engine search reads from the process environment.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub docker_host: Option<String>,
    pub docker_context: Option<String>,
    /// `DOCKER_TLS_VERIFY` is set (to anything non-empty, as the docker CLI reads it).
    pub tls_verify: bool,
    /// `DOCKER_CERT_PATH`: ca.pem, cert.pem and key.pem for TLS through DOCKER_HOST.
    pub cert_path: Option<PathBuf>,
    /// `$DOCKER_CONFIG`, else `~/.docker`.
    pub config_dir: PathBuf,
    pub home: Option<PathBuf>,
    pub xdg_runtime_dir: Option<PathBuf>,
    /// [`DEFAULT_SOCKET`] (tests put another path here).
    pub default_socket: String,
}

impl Env {
    pub fn from_process() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let home = var("HOME").map(PathBuf::from);
        Self {
            docker_host: var("DOCKER_HOST"),
            docker_context: var("DOCKER_CONTEXT"),
            tls_verify: var("DOCKER_TLS_VERIFY").is_some(),
            cert_path: var("DOCKER_CERT_PATH").map(PathBuf::from),
            config_dir: config_dir(),
            home,
            xdg_runtime_dir: var("XDG_RUNTIME_DIR").map(PathBuf::from),
            default_socket: DEFAULT_SOCKET.into(),
        }
    }
}

/// The docker CLI's configuration directory: `$DOCKER_CONFIG`, else `~/.docker`.
pub fn config_dir() -> PathBuf {
    match std::env::var_os("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join(".docker"),
    }
}

/// One address an engine may answer on, and why payctl looks there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `unix:///…`, `tcp://host:port` or `http://host:port`.
    pub host: String,
    /// Where the address came from, for messages: "DOCKER_HOST", "context colima", "Docker Desktop".
    pub from: String,
    /// With TLS: the directory of ca.pem, cert.pem and key.pem (DOCKER_TLS_VERIFY or `https://`, or
    /// a context with TLS material).
    pub tls: Option<PathBuf>,
}

/// Where to look for the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Search {
    /// DOCKER_HOST or a context named one address: that engine or none.
    Configured(Endpoint),
    /// Nothing configured: the default socket, then the well-known ones that exist, first to answer.
    Sockets(Vec<Endpoint>),
}

/// Where the engine is, as the docker CLI would resolve it (DOCKER_HOST beats DOCKER_CONTEXT, which
/// beats the config file's currentContext; the context "default" means no context).
pub fn search(env: &Env) -> anyhow::Result<Search> {
    if let Some(host) = &env.docker_host {
        let tls = (env.tls_verify || host.starts_with("https://")).then(|| {
            env.cert_path
                .clone()
                .unwrap_or_else(|| env.config_dir.clone())
        });
        return Ok(Search::Configured(Endpoint {
            host: host.clone(),
            from: "DOCKER_HOST".into(),
            tls,
        }));
    }
    let (context, why) = match &env.docker_context {
        Some(c) => (Some(c.clone()), "DOCKER_CONTEXT"),
        None => (current_context(&env.config_dir)?, "currentContext"),
    };
    if let Some(name) = context.filter(|c| c != "default") {
        return context_endpoint(&env.config_dir, &name, why).map(Search::Configured);
    }
    let mut sockets = vec![Endpoint {
        host: env.default_socket.clone(),
        from: "the default socket".into(),
        tls: None,
    }];
    let mut well_known: Vec<(PathBuf, &str)> = Vec::new();
    if let Some(home) = &env.home {
        well_known.push((home.join(".docker/desktop/docker.sock"), "Docker Desktop"));
        well_known.push((home.join(".docker/run/docker.sock"), "Docker Desktop"));
        well_known.push((home.join(".colima/default/docker.sock"), "Colima"));
    }
    if let Some(run) = &env.xdg_runtime_dir {
        well_known.push((run.join("docker.sock"), "rootless Docker"));
    }
    sockets.extend(
        well_known
            .into_iter()
            .filter(|(path, _)| path.exists())
            .map(|(path, from)| Endpoint {
                host: format!("unix://{}", path.display()),
                from: from.into(),
                tls: None,
            }),
    );
    Ok(Search::Sockets(sockets))
}

/// The context the config file selects (`currentContext`), if the file exists and names one.
fn current_context(config_dir: &Path) -> anyhow::Result<Option<String>> {
    #[derive(Deserialize)]
    struct Config {
        #[serde(rename = "currentContext")]
        current_context: Option<String>,
    }
    let path = config_dir.join("config.json");
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(None);
    };
    let config: Config =
        serde_json::from_slice(&bytes).with_context(|| format!("reading {}", path.display()))?;
    Ok(config.current_context.filter(|c| !c.is_empty()))
}

/// The docker endpoint of context `name`: `contexts/meta/<sha256 of the name>/meta.json` under the
/// config directory, `Endpoints.docker.Host` (the layout `docker context create` writes).
fn context_endpoint(config_dir: &Path, name: &str, why: &str) -> anyhow::Result<Endpoint> {
    #[derive(Deserialize)]
    struct Meta {
        #[serde(rename = "Endpoints")]
        endpoints: Endpoints,
    }
    #[derive(Deserialize)]
    struct Endpoints {
        docker: Option<DockerEndpoint>,
    }
    #[derive(Deserialize)]
    struct DockerEndpoint {
        #[serde(rename = "Host")]
        host: Option<String>,
    }
    let id = hex::encode(Sha256::digest(name.as_bytes()));
    let path = config_dir.join("contexts/meta").join(&id).join("meta.json");
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "Docker context '{name}' (from {why}) does not exist: no {}; `docker context ls` lists the contexts",
            path.display()
        )
    })?;
    let meta: Meta =
        serde_json::from_slice(&bytes).with_context(|| format!("reading {}", path.display()))?;
    let host = meta
        .endpoints
        .docker
        .and_then(|d| d.host)
        .filter(|h| !h.is_empty())
        .with_context(|| {
            format!(
                "Docker context '{name}' has no docker endpoint ({})",
                path.display()
            )
        })?;
    // `docker context create --docker host=…,ca=…,cert=…,key=…` stores TLS material here.
    let tls = Some(config_dir.join("contexts/tls").join(&id).join("docker")).filter(|d| d.exists());
    Ok(Endpoint {
        host,
        from: format!("Docker context '{name}'"),
        tls,
    })
}

/// A client for one endpoint; nothing is sent yet.
fn client(endpoint: &Endpoint) -> anyhow::Result<Engine> {
    let host = endpoint.host.as_str();
    if let Some(dir) = &endpoint.tls {
        if !(host.starts_with("tcp://") || host.starts_with("https://")) {
            bail!(
                "{} ({host}): TLS needs a tcp:// or https:// address",
                endpoint.from
            );
        }
        return Engine::connect_with_ssl(
            host,
            &dir.join("key.pem"),
            &dir.join("cert.pem"),
            &dir.join("ca.pem"),
            REQUEST_TIMEOUT,
            API_DEFAULT_VERSION,
        )
        .with_context(|| {
            format!(
                "{} ({host}) wants TLS: ca.pem, cert.pem and key.pem in {} (DOCKER_CERT_PATH)",
                endpoint.from,
                dir.display()
            )
        });
    }
    if let Some(path) = host.strip_prefix("unix://") {
        return Engine::connect_with_unix(path, REQUEST_TIMEOUT, API_DEFAULT_VERSION)
            .with_context(|| format!("no socket at {path}"));
    }
    if host.starts_with("tcp://") || host.starts_with("http://") {
        return Ok(Engine::connect_with_http(
            host,
            REQUEST_TIMEOUT,
            API_DEFAULT_VERSION,
        )?);
    }
    if host.starts_with("ssh://") {
        bail!(
            "{} ({host}) is an ssh endpoint, which this payctl does not speak; forward the socket \
             (`ssh -NL /tmp/docker.sock:/var/run/docker.sock <host>`) and set DOCKER_HOST=unix:///tmp/docker.sock",
            endpoint.from
        );
    }
    bail!(
        "{} ({host}): unsupported address; expected unix://, tcp:// or http://",
        endpoint.from
    )
}

/// Connects to one endpoint, agrees on an API version (Debian's engine speaks 1.41; bollard asks for
/// newer by default) and pings it.
async fn answer(endpoint: &Endpoint) -> anyhow::Result<Engine> {
    let docker = client(endpoint)?;
    let talk = async move {
        let docker = docker.negotiate_version().await?;
        docker.ping().await?;
        anyhow::Ok(docker)
    };
    match tokio::time::timeout(ANSWER_WITHIN, talk).await {
        Ok(result) => result,
        Err(_) => bail!("no answer within {}s", ANSWER_WITHIN.as_secs()),
    }
}

/// The engine found earlier in this process: later connections go straight there.
static FOUND: Mutex<Option<Endpoint>> = Mutex::new(None);

/// The endpoint the last successful [`connect`] used.
pub fn found() -> Option<Endpoint> {
    FOUND.lock().ok()?.clone()
}

/// Why no engine was reached.
#[derive(Debug)]
pub enum NoEngine {
    /// DOCKER_HOST or a context named an engine that does not answer (or cannot be used).
    Configured(anyhow::Error),
    /// Nothing configured and no socket answered; `socket_exists` when one of the sockets is there
    /// (Docker is installed, its engine stopped: Docker Desktop or Colima not started).
    NoneFound {
        error: anyhow::Error,
        socket_exists: bool,
    },
}

impl NoEngine {
    pub fn into_error(self) -> anyhow::Error {
        match self {
            NoEngine::Configured(error) | NoEngine::NoneFound { error, .. } => error,
        }
    }
}

/// Connects to the engine [`search`] finds for this process's environment.
pub async fn connect_engine() -> Result<Engine, NoEngine> {
    if let Some(endpoint) = found() {
        if let Ok(docker) = answer(&endpoint).await {
            return Ok(docker);
        }
    }
    connect_in(&Env::from_process()).await
}

/// Connects to the engine [`search`] finds for `env`.
async fn connect_in(env: &Env) -> Result<Engine, NoEngine> {
    match search(env).map_err(NoEngine::Configured)? {
        Search::Configured(endpoint) => match answer(&endpoint).await {
            Ok(docker) => {
                remember(&endpoint);
                Ok(docker)
            }
            Err(e) => Err(NoEngine::Configured(anyhow::anyhow!(
                "the Docker engine does not answer at {} ({}): {e:#}; start it or fix {}, or use --runtime native",
                endpoint.host,
                endpoint.from,
                if endpoint.from == "DOCKER_HOST" {
                    "DOCKER_HOST"
                } else {
                    "the context (`docker context use default`)"
                }
            ))),
        },
        Search::Sockets(sockets) => {
            let mut tried = Vec::new();
            for endpoint in &sockets {
                match answer(endpoint).await {
                    Ok(docker) => {
                        remember(endpoint);
                        return Ok(docker);
                    }
                    Err(e) => tried.push(format!("{} ({}): {e:#}", endpoint.host, endpoint.from)),
                }
            }
            let socket_exists = sockets.iter().any(|s| {
                s.host
                    .strip_prefix("unix://")
                    .is_some_and(|p| Path::new(p).exists())
            });
            Err(NoEngine::NoneFound {
                error: anyhow::anyhow!(
                    "the Docker engine does not answer (is dockerd running? set DOCKER_HOST or a docker context, or use --runtime native); tried {}",
                    tried.join("; ")
                ),
                socket_exists,
            })
        }
    }
}

fn remember(endpoint: &Endpoint) {
    if let Ok(mut found) = FOUND.lock() {
        *found = Some(endpoint.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(config_dir: &Path) -> Env {
        Env {
            config_dir: config_dir.to_owned(),
            default_socket: DEFAULT_SOCKET.into(),
            ..Default::default()
        }
    }

    /// Writes a context the way `docker context create NAME --docker host=HOST` does.
    fn write_context(config_dir: &Path, name: &str, host: &str) {
        let dir = config_dir
            .join("contexts/meta")
            .join(hex::encode(Sha256::digest(name.as_bytes())));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("meta.json"),
            format!(
                r#"{{"Name":"{name}","Metadata":{{"Description":""}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":false}}}}}}"#
            ),
        )
        .unwrap();
    }

    fn configured(search: Search) -> Endpoint {
        match search {
            Search::Configured(e) => e,
            other => panic!("expected one configured endpoint, got {other:?}"),
        }
    }

    #[test]
    fn the_context_directory_is_the_sha256_of_the_name_as_the_docker_cli_writes_it() {
        // `docker context create desktop-linux` writes contexts/meta/fe9c6bd7…/meta.json.
        assert_eq!(
            hex::encode(Sha256::digest(b"desktop-linux")),
            "fe9c6bd7a66301f49ca9b6a70b217107cd1284598bfc254700c989b916da791e"
        );
    }

    #[test]
    fn the_current_context_of_the_config_file_names_the_engine() {
        let dir = tempdir();
        std::fs::write(
            dir.join("config.json"),
            r#"{"auths":{},"currentContext":"desktop-linux"}"#,
        )
        .unwrap();
        write_context(
            &dir,
            "desktop-linux",
            "unix:///home/me/.docker/desktop/docker.sock",
        );
        let e = configured(search(&env(&dir)).unwrap());
        assert_eq!(e.host, "unix:///home/me/.docker/desktop/docker.sock");
        assert_eq!(e.from, "Docker context 'desktop-linux'");
        assert_eq!(e.tls, None);
    }

    #[test]
    fn docker_context_beats_the_config_file_and_docker_host_beats_both() {
        let dir = tempdir();
        std::fs::write(dir.join("config.json"), r#"{"currentContext":"a"}"#).unwrap();
        write_context(&dir, "a", "unix:///a.sock");
        write_context(&dir, "b", "tcp://10.0.0.2:2375");
        let mut e = env(&dir);
        e.docker_context = Some("b".into());
        assert_eq!(configured(search(&e).unwrap()).host, "tcp://10.0.0.2:2375");
        e.docker_host = Some("unix:///tmp/x.sock".into());
        let found = configured(search(&e).unwrap());
        assert_eq!(found.host, "unix:///tmp/x.sock");
        assert_eq!(found.from, "DOCKER_HOST");
    }

    #[test]
    fn a_missing_context_is_an_error_naming_it_not_a_fallback() {
        let dir = tempdir();
        std::fs::write(dir.join("config.json"), r#"{"currentContext":"colima"}"#).unwrap();
        let err = search(&env(&dir)).unwrap_err().to_string();
        assert!(err.contains("Docker context 'colima'"), "{err}");
        assert!(err.contains("currentContext"), "{err}");
    }

    #[test]
    fn the_default_context_and_no_config_mean_the_default_socket_then_the_well_known_ones() {
        let dir = tempdir();
        let home = dir.join("home");
        let run = dir.join("run");
        std::fs::create_dir_all(home.join(".colima/default")).unwrap();
        std::fs::create_dir_all(home.join(".docker/desktop")).unwrap();
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(home.join(".colima/default/docker.sock"), "").unwrap();
        std::fs::write(run.join("docker.sock"), "").unwrap();
        std::fs::write(dir.join("config.json"), r#"{"currentContext":"default"}"#).unwrap();
        let e = Env {
            home: Some(home.clone()),
            xdg_runtime_dir: Some(run.clone()),
            ..env(&dir)
        };
        let Search::Sockets(sockets) = search(&e).unwrap() else {
            panic!("a search of sockets expected");
        };
        let hosts: Vec<&str> = sockets.iter().map(|s| s.host.as_str()).collect();
        // Docker Desktop's socket does not exist here, so it is not tried.
        assert_eq!(
            hosts,
            vec![
                DEFAULT_SOCKET.to_owned(),
                format!("unix://{}/.colima/default/docker.sock", home.display()),
                format!("unix://{}/docker.sock", run.display()),
            ]
        );
        assert_eq!(sockets[1].from, "Colima");
        assert_eq!(sockets[2].from, "rootless Docker");
    }

    #[test]
    fn tls_comes_from_docker_cert_path_and_ssh_is_refused_with_what_to_do() {
        let dir = tempdir();
        let mut e = env(&dir);
        e.docker_host = Some("tcp://10.0.0.2:2376".into());
        assert_eq!(configured(search(&e).unwrap()).tls, None);
        e.tls_verify = true;
        // Without DOCKER_CERT_PATH the certificates are in the config directory, as for the docker CLI.
        assert_eq!(configured(search(&e).unwrap()).tls, Some(dir.clone()));
        e.cert_path = Some(dir.join("certs"));
        let tls = configured(search(&e).unwrap());
        assert_eq!(tls.tls, Some(dir.join("certs")));
        let err = format!("{:#}", client(&tls).unwrap_err());
        assert!(err.contains("ca.pem, cert.pem and key.pem in"), "{err}");
        let ssh = Endpoint {
            host: "ssh://me@box".into(),
            from: "DOCKER_HOST".into(),
            tls: None,
        };
        assert!(client(&ssh).unwrap_err().to_string().contains("ssh -NL"));
        let tcp = Endpoint { tls: None, ..tls };
        assert!(client(&tcp).is_ok());
    }

    #[test]
    fn a_context_with_tls_material_is_spoken_to_with_it() {
        let dir = tempdir();
        write_context(&dir, "remote", "tcp://10.0.0.3:2376");
        let tls_dir = dir
            .join("contexts/tls")
            .join(hex::encode(Sha256::digest(b"remote")))
            .join("docker");
        std::fs::create_dir_all(&tls_dir).unwrap();
        let mut e = env(&dir);
        e.docker_context = Some("remote".into());
        assert_eq!(configured(search(&e).unwrap()).tls, Some(tls_dir));
    }

    #[tokio::test]
    async fn dead_sockets_are_tried_and_named_and_a_dead_configured_engine_is_no_fallback() {
        let dir = tempdir();
        let home = dir.join("home");
        std::fs::create_dir_all(home.join(".colima/default")).unwrap();
        let colima = home.join(".colima/default/docker.sock");
        // Colima installed but stopped: its socket file is there, nothing listens.
        drop(std::os::unix::net::UnixListener::bind(&colima).unwrap());
        let mut e = Env {
            home: Some(home.clone()),
            default_socket: format!("unix://{}/none.sock", dir.display()),
            ..env(&dir)
        };
        match connect_in(&e).await {
            Err(NoEngine::NoneFound {
                error,
                socket_exists,
            }) => {
                let error = error.to_string();
                assert!(socket_exists);
                assert!(
                    error.contains(&format!("unix://{} (Colima)", colima.display())),
                    "{error}"
                );
                assert!(error.contains("none.sock"), "{error}");
            }
            other => panic!("expected no engine found, got {:?}", other.map(|_| ())),
        }
        // Nothing there at all: no socket exists (auto goes native without a note).
        e.home = None;
        assert!(matches!(
            connect_in(&e).await,
            Err(NoEngine::NoneFound {
                socket_exists: false,
                ..
            })
        ));
        // The same dead socket named by DOCKER_HOST: an error naming it, for auto too.
        e.docker_host = Some(format!("unix://{}", colima.display()));
        match connect_in(&e).await {
            Err(NoEngine::Configured(error)) => {
                let error = error.to_string();
                assert!(error.contains("(DOCKER_HOST)"), "{error}");
            }
            other => panic!(
                "expected a configured engine error, got {:?}",
                other.map(|_| ())
            ),
        }
    }

    #[tokio::test]
    async fn a_socket_nothing_listens_on_does_not_answer() {
        let dir = tempdir();
        // A socket file nothing listens on.
        let path = dir.join("dead.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let endpoint = Endpoint {
            host: format!("unix://{}", path.display()),
            from: "DOCKER_HOST".into(),
            tls: None,
        };
        assert!(answer(&endpoint).await.is_err());
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "payctl-engine-test-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
