//! What the CLI's end-to-end test binaries share.

use payctl_stack::free_port;
use std::net::TcpListener;

const PORT_FLAGS: [&str; 9] = [
    "--mariadb-port",
    "--redis-port",
    "--kafka-port",
    "--ingest-port",
    "--consumer-port",
    "--gateway-port",
    "--prometheus-port",
    "--acquirer-port",
    "--settlement-port",
];

/// Free ports for every service (the ingest range gets room for 3 instances), as flags.
pub fn free_ports() -> (Vec<u16>, Vec<String>) {
    let mut ports: Vec<u16> = Vec::new();
    while ports.len() < PORT_FLAGS.len() {
        let p = free_port().unwrap();
        // Keep p+1 and p+2 free too, for --scale ingest=3.
        let room = (1..3).all(|i| TcpListener::bind(("127.0.0.1", p + i)).is_ok());
        if room && !ports.iter().any(|q| q.abs_diff(p) < 3) {
            ports.push(p);
        }
    }
    let flags = PORT_FLAGS
        .iter()
        .zip(&ports)
        .flat_map(|(f, p)| [f.to_string(), p.to_string()])
        .collect();
    (ports, flags)
}
