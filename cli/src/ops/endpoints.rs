//! Where the parts of a stack answer and where its dev secrets are, from local state only (the plan
//! `up` saved and the state directory): what `status` lists after the services, `env` exports and
//! `open` opens. Nothing here asks a service anything, and no secret is read — only its file named.

use crate::stack::secrets::{DATABASE, DB_USER};
use crate::stack::{saved_plan, Kind, Ports};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The dev merchant's key file under a state directory (written by `up`, mode 0600).
pub fn dev_key_file(home: &Path) -> PathBuf {
    home.join("secrets/dev-merchant.key")
}

/// The URLs and secret files of the stack under `home` on `ports`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    /// The demo store, at the gateway's `/`.
    pub store_url: String,
    /// The payment API through the gateway.
    pub api_url: String,
    /// Prometheus, when the stack has it.
    pub prometheus_url: Option<String>,
    /// Grafana, when the stack runs it (the Docker runtime only).
    pub grafana_url: Option<String>,
    /// The dev merchant's API key, in a file (never printed here).
    pub dev_key_file: PathBuf,
    /// The database, without its password (see `database_password_file`).
    pub database_url: String,
    pub database_password_file: PathBuf,
}

impl Endpoints {
    /// `home` is shown as given; callers pass it absolute when it exists so the paths work anywhere.
    pub fn of(home: &Path, ports: &Ports) -> Self {
        let plan = saved_plan(home, ports);
        let port_of = |kind: Kind| plan.iter().find(|s| s.kind == kind).map(|s| s.port);
        Self {
            store_url: format!("http://127.0.0.1:{}/", ports.gateway_port),
            api_url: format!("http://127.0.0.1:{}/api", ports.gateway_port),
            prometheus_url: port_of(Kind::Prometheus).map(|p| format!("http://127.0.0.1:{p}/")),
            grafana_url: port_of(Kind::Grafana).map(|p| format!("http://127.0.0.1:{p}/")),
            dev_key_file: dev_key_file(home),
            database_url: format!(
                "mysql://{DB_USER}@127.0.0.1:{}/{DATABASE}",
                ports.mariadb_port
            ),
            database_password_file: home.join("secrets/db-password"),
        }
    }

    /// (label, value) lines for people, in the order `supabase status` would show them.
    pub fn lines(&self) -> Vec<(&'static str, String)> {
        let or_absent = |u: &Option<String>, why: &str| u.clone().unwrap_or_else(|| why.to_owned());
        vec![
            ("store", self.store_url.clone()),
            ("API", self.api_url.clone()),
            (
                "Prometheus",
                or_absent(&self.prometheus_url, "not in this stack"),
            ),
            (
                "Grafana",
                or_absent(&self.grafana_url, "needs the Docker runtime"),
            ),
            ("dev key", self.dev_key_file.display().to_string()),
            (
                "database",
                format!(
                    "{}   (password in {})",
                    self.database_url,
                    self.database_password_file.display()
                ),
            ),
        ]
    }
}

/// `home` absolute when it exists (paths printed for another shell or folder must still work).
pub fn absolute(home: &Path) -> PathBuf {
    home.canonicalize().unwrap_or_else(|_| home.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::{plan, save, Scale, Svc};

    #[test]
    fn endpoints_follow_the_saved_plan_and_never_hold_the_password() {
        let home = std::env::temp_dir().join(format!("payctl-endpoints-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(&home).unwrap();
        let ports = Ports {
            gateway_port: 28080,
            mariadb_port: 23306,
            prometheus_port: 29090,
            ..Ports::default()
        };
        let mut stack = plan(&ports, Scale::default());
        save(&home, &stack).unwrap();
        let e = Endpoints::of(&home, &ports);
        assert_eq!(e.store_url, "http://127.0.0.1:28080/");
        assert_eq!(e.api_url, "http://127.0.0.1:28080/api");
        assert_eq!(e.prometheus_url.as_deref(), Some("http://127.0.0.1:29090/"));
        assert_eq!(e.grafana_url, None, "no Grafana in a native plan");
        assert_eq!(e.database_url, "mysql://payctl@127.0.0.1:23306/payments");
        assert_eq!(e.dev_key_file, home.join("secrets/dev-merchant.key"));
        assert!(
            !home.join("secrets/db-password").exists(),
            "no secret is created"
        );
        stack.push(Svc {
            name: "grafana".into(),
            kind: Kind::Grafana,
            port: 23000,
        });
        save(&home, &stack).unwrap();
        let e = Endpoints::of(
            &home,
            &Ports {
                grafana_port: 23000,
                ..ports
            },
        );
        assert_eq!(e.grafana_url.as_deref(), Some("http://127.0.0.1:23000/"));
        let json = serde_json::to_value(&e).unwrap();
        for key in [
            "storeUrl",
            "apiUrl",
            "prometheusUrl",
            "grafanaUrl",
            "devKeyFile",
            "databaseUrl",
            "databasePasswordFile",
        ] {
            assert!(json.get(key).is_some(), "{key} in {json}");
        }
        std::fs::remove_dir_all(&home).unwrap();
    }
}
