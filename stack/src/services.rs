//! The three stateful dependencies, each a real server on 127.0.0.1 with its own data directory.

use crate::install;
use crate::process::{wait_ready, Lifetime, Supervised};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(20);

fn connect(port: u16) -> Option<TcpStream> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    Some(stream)
}

/// Common shape of a service: where it keeps data and logs, and the running process if any.
#[derive(Debug)]
struct Base {
    dir: PathBuf,
    port: u16,
    lifetime: Lifetime,
    process: Option<Supervised>,
}

impl Base {
    fn new(dir: &Path, port: u16, lifetime: Lifetime) -> Self {
        Self {
            dir: dir.to_owned(),
            port,
            lifetime,
            process: None,
        }
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    /// Starts `cmd` as this service and waits until `ready(port)`.
    fn launch(&mut self, name: &str, cmd: Command, ready: fn(u16) -> bool) -> anyhow::Result<()> {
        let mut process = Supervised::spawn(name, cmd, &self.log_path(name), self.lifetime)?;
        let port = self.port;
        wait_ready(&mut process, START_TIMEOUT, || ready(port))?;
        self.process = Some(process);
        Ok(())
    }

    fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut p) = self.process.take() {
            p.stop(STOP_GRACE)?;
        }
        Ok(())
    }

    fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut p) = self.process.take() {
            p.kill()?;
        }
        Ok(())
    }
}

/// MariaDB (`mariadbd`), root without a password on 127.0.0.1 only: a private instance for tests or a
/// developer's stack, never a shared server.
#[derive(Debug)]
pub struct MariaDb {
    base: Base,
    /// Extra server options, e.g. `--innodb-flush-log-at-trx-commit=2` for throw-away test data.
    pub extra_args: Vec<String>,
}

impl MariaDb {
    pub fn new(dir: &Path, port: u16, lifetime: Lifetime) -> Self {
        Self {
            base: Base::new(dir, port, lifetime),
            extra_args: Vec::new(),
        }
    }

    /// `mysql://` URL for `database` as root.
    pub fn url(&self, database: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{database}", self.base.port)
    }

    fn datadir(&self) -> PathBuf {
        self.base.dir.join("data")
    }

    /// Initialises the data directory on first use, starts the server and waits for its greeting.
    pub fn start(&mut self) -> anyhow::Result<()> {
        let datadir = self.datadir();
        // Each instance has its own temporary directory: two bootstraps sharing /tmp can trip over each
        // other's temporary tables.
        let tmpdir = self.base.dir.join("tmp");
        std::fs::create_dir_all(&tmpdir)?;
        if !datadir.join("mysql").exists() {
            static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
            let _one_at_a_time = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
            std::fs::create_dir_all(&datadir)?;
            let mut init = Command::new(install::require("mariadb-install-db")?);
            init.args([
                "--no-defaults",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--user=root",
            ])
            .arg(format!("--datadir={}", datadir.display()))
            .arg(format!("--tmpdir={}", tmpdir.display()));
            let out = init.output()?;
            anyhow::ensure!(
                out.status.success(),
                "mariadb-install-db failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut cmd = Command::new(install::require("mariadbd")?);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", datadir.display()))
            .arg(format!("--port={}", self.base.port))
            .arg(format!(
                "--socket={}",
                self.base.dir.join("mysqld.sock").display()
            ))
            .arg(format!(
                "--pid-file={}",
                self.base.dir.join("mysqld.pid").display()
            ))
            .args([
                "--bind-address=127.0.0.1",
                "--user=root",
                "--skip-name-resolve",
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_unicode_ci",
                "--default-time-zone=+00:00",
                "--max-connections=1000",
                "--innodb-buffer-pool-size=256M",
                "--innodb-log-file-size=256M",
                "--skip-log-bin",
            ])
            .args(&self.extra_args);
        self.base.launch("mariadb", cmd, mariadb_greets)
    }
}

/// True when a MySQL-protocol server on `port` sends its handshake (protocol version 10).
pub fn mariadb_greets(port: u16) -> bool {
    let Some(mut stream) = connect(port) else {
        return false;
    };
    let mut header = [0u8; 5];
    stream.read_exact(&mut header).is_ok() && header[4] == 10
}

/// Redis (`redis-server`).
#[derive(Debug)]
pub struct Redis {
    base: Base,
    /// Keep data across restarts (append-only file); tests leave it off.
    pub persistent: bool,
}

impl Redis {
    pub fn new(dir: &Path, port: u16, lifetime: Lifetime) -> Self {
        Self {
            base: Base::new(dir, port, lifetime),
            persistent: false,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.base.port)
    }

    pub fn start(&mut self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.base.dir)?;
        let mut cmd = Command::new(install::require("redis-server")?);
        cmd.arg("--port")
            .arg(self.base.port.to_string())
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--protected-mode",
                "yes",
            ])
            .arg("--dir")
            .arg(&self.base.dir)
            .args(["--appendonly", if self.persistent { "yes" } else { "no" }]);
        self.base.launch("redis", cmd, redis_pongs)
    }
}

/// True when a Redis server on `port` answers PING.
pub fn redis_pongs(port: u16) -> bool {
    let Some(mut stream) = connect(port) else {
        return false;
    };
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

/// tansu, a Kafka-wire-compatible broker, storing its log in SQLite so it survives restarts.
#[derive(Debug)]
pub struct Tansu {
    base: Base,
}

impl Tansu {
    pub fn new(dir: &Path, port: u16, lifetime: Lifetime) -> Self {
        Self {
            base: Base::new(dir, port, lifetime),
        }
    }

    /// Bootstrap servers for Kafka clients. `127.0.0.1`, not `localhost`: tansu advertises what it is told,
    /// and `localhost` may resolve to `::1` first.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.base.port)
    }

    pub fn start(&mut self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.base.dir)?;
        let url = format!("tcp://127.0.0.1:{}", self.base.port);
        let mut cmd = Command::new(install::tansu()?);
        // tansu reads a `.env` from its working directory and resolves the SQLite path against it: run it
        // in its own directory, with none of its variables inherited.
        cmd.current_dir(&self.base.dir);
        for var in [
            "CLUSTER_ID",
            "STORAGE_ENGINE",
            "LISTENER_URL",
            "ADVERTISED_LISTENER_URL",
            "SCHEMA_REGISTRY",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ] {
            cmd.env_remove(var);
        }
        cmd.arg("broker")
            .args(["--cluster-id", "payctl"])
            .arg("--listener-url")
            .arg(&url)
            .arg("--advertised-listener-url")
            .arg(&url)
            .args(["--storage-engine", "sqlite://tansu.db"]);
        self.base
            .launch("tansu", cmd, |port| connect(port).is_some())
    }
}

/// What every service shares: its port, its pid, and stopping it.
macro_rules! service_common {
    ($($service:ty),*) => {$(
        impl $service {
            pub fn port(&self) -> u16 {
                self.base.port
            }

            pub fn pid(&self) -> Option<u32> {
                self.base.process.as_ref().map(|p| p.pid)
            }

            pub fn stop(&mut self) -> anyhow::Result<()> {
                self.base.stop()
            }

            /// SIGKILL, for crash tests.
            pub fn kill(&mut self) -> anyhow::Result<()> {
                self.base.kill()
            }
        }
    )*};
}

service_common!(MariaDb, Redis, Tansu);
