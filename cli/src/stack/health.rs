//! Health checks: whether a service answers as itself on its port — the same real probes for `up`,
//! `status` and every runtime.

use super::Kind;
use payctl_stack::services::{mariadb_greets, redis_pongs};
use std::time::Duration;

/// True when the service on 127.0.0.1:`port` answers as itself (a greeting, a PONG, broker metadata,
/// an HTTP 200), not merely when the port accepts: Docker's port proxy accepts for a container that is
/// not up yet.
pub async fn healthy(kind: Kind, port: u16) -> bool {
    match kind {
        Kind::MariaDb => tokio::task::spawn_blocking(move || mariadb_greets(port))
            .await
            .unwrap_or(false),
        Kind::Redis => tokio::task::spawn_blocking(move || redis_pongs(port))
            .await
            .unwrap_or(false),
        Kind::Kafka => tokio::task::spawn_blocking(move || kafka_answers(port))
            .await
            .unwrap_or(false),
        Kind::Ingest
        | Kind::Consumer
        | Kind::Acquirer
        | Kind::Settlement
        | Kind::Gateway
        | Kind::Prometheus
        | Kind::Grafana => reqwest::Client::new()
            .get(format!(
                "http://127.0.0.1:{port}/{}",
                match kind {
                    Kind::Gateway | Kind::Acquirer => "health",
                    Kind::Prometheus => "-/ready",
                    Kind::Grafana => "api/health",
                    _ => "ready",
                }
            ))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false),
    }
}

/// A broker answers a metadata request on 127.0.0.1:`port`.
fn kafka_answers(port: u16) -> bool {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: Result<BaseConsumer, _> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", format!("127.0.0.1:{port}"))
        .set_log_level(rdkafka::config::RDKafkaLogLevel::Emerg)
        .create();
    consumer.is_ok_and(|c| c.fetch_metadata(None, Duration::from_secs(2)).is_ok())
}

/// How long `require_running` waits for a port: a refused connection answers at once, a filtered one
/// would not.
const PROBE: Duration = Duration::from_millis(1500);

/// Ok when something accepts on 127.0.0.1:`port`; else the one error every command gives when the
/// platform is not up, at once rather than after a client's own timeouts.
pub fn require_running(port: u16) -> anyhow::Result<()> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    match std::net::TcpStream::connect_timeout(&addr, PROBE) {
        Ok(_) => Ok(()),
        Err(_) => Err(not_running(port)),
    }
}

pub fn not_running(port: u16) -> anyhow::Error {
    anyhow::anyhow!(
        "the platform is not running (no answer on 127.0.0.1:{port}); start it with: payctl up"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_nobody_listens_on_is_the_platform_not_running() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(require_running(port).is_ok());
        drop(l);
        let started = std::time::Instant::now();
        let e = require_running(port).unwrap_err().to_string();
        assert_eq!(
            e,
            format!("the platform is not running (no answer on 127.0.0.1:{port}); start it with: payctl up")
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
