//! The registry side of pulls: image references split as the engine splits them (registry host,
//! repository, tag, digest), and the credentials the docker CLI would send for that registry, read from
//! `$DOCKER_CONFIG/config.json` (`credHelpers`, `credsStore` through `docker-credential-<helper> get`,
//! then `auths`). Logged-in users then pull as themselves instead of as anonymous (rate limits, private
//! images).

use anyhow::{bail, Context};
use base64::Engine as _;
use bollard::auth::DockerCredentials;
use serde::Deserialize;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where Docker Hub's credentials are kept in config.json and sent as the server address.
const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// An image reference: `[registry/]repository[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The registry host (with its port), `docker.io` when the reference names none.
    pub registry: String,
    /// The name as written, registry included (`host:5000/team/app`, `apache/kafka`).
    pub name: String,
    pub tag: Option<String>,
    /// `sha256:…`
    pub digest: Option<String>,
}

impl Reference {
    pub fn parse(reference: &str) -> anyhow::Result<Self> {
        let (rest, digest) = match reference.split_once('@') {
            Some((rest, digest)) => {
                let Some((algorithm, hex)) = digest.split_once(':') else {
                    bail!("{reference}: the digest '{digest}' has no algorithm (sha256:…)");
                };
                if algorithm.is_empty() || hex.is_empty() {
                    bail!("{reference}: the digest '{digest}' is not algorithm:hex");
                }
                (rest, Some(digest.to_owned()))
            }
            None => (reference, None),
        };
        // A tag follows the last ':' after the last '/'; a ':' before it is a registry's port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (
                &rest[..last_slash + i],
                Some(rest[last_slash + i + 1..].to_owned()),
            ),
            None => (rest, None),
        };
        if name.is_empty() || tag.as_deref() == Some("") {
            bail!("'{reference}' is not an image reference");
        }
        // The first component is a registry when it looks like a host: a dot, a port, or localhost.
        let registry = match name.split_once('/') {
            Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => {
                first.to_owned()
            }
            _ => "docker.io".to_owned(),
        };
        Ok(Self {
            registry,
            name: name.to_owned(),
            tag,
            digest,
        })
    }

    /// The engine's create-image arguments (fromImage, tag): by digest when there is one (the engine
    /// ignores the tag then), else by tag (`latest` when none is written).
    pub fn pull_args(&self) -> (String, Option<String>) {
        match &self.digest {
            Some(digest) => (format!("{}@{digest}", self.name), None),
            None => (
                self.name.clone(),
                Some(self.tag.clone().unwrap_or_else(|| "latest".into())),
            ),
        }
    }
}

/// The key of a registry in config.json and the server address credentials are for.
pub fn auth_key(registry: &str) -> String {
    if is_docker_hub(registry) {
        DOCKER_HUB_AUTH_KEY.to_owned()
    } else {
        registry.to_owned()
    }
}

fn is_docker_hub(registry: &str) -> bool {
    matches!(
        registry,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    )
}

/// A config.json key reduced to its host: `https://ghcr.io/v1/` → `ghcr.io`.
fn host_of(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

#[derive(Debug, Default, Deserialize)]
struct Config {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(rename = "credHelpers", default)]
    cred_helpers: HashMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    identitytoken: Option<String>,
}

/// The credentials for pulls from `registry`, as the docker CLI finds them in `config_dir`; none when
/// the user is not logged in there. `helper` turns a helper's name into the program to run.
pub fn credentials(
    config_dir: &Path,
    registry: &str,
    helper: impl Fn(&str) -> PathBuf,
) -> anyhow::Result<Option<DockerCredentials>> {
    let path = config_dir.join("config.json");
    let config: Config = match std::fs::read(&path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).with_context(|| format!("reading {}", path.display()))?
        }
        Err(_) => return Ok(None),
    };
    let server = auth_key(registry);
    let helper_name = config
        .cred_helpers
        .iter()
        .find(|(k, _)| same_registry(k, registry))
        .map(|(_, v)| v.clone())
        .or(config.creds_store.clone())
        .filter(|h| !h.is_empty());
    if let Some(name) = helper_name {
        let program = helper(&name);
        if let Some(found) = from_helper(&program, &server).with_context(|| {
            format!(
                "asking {} for the credentials of {server} (config.json names it)",
                program.display()
            )
        })? {
            return Ok(Some(found));
        }
    }
    let Some(entry) = config
        .auths
        .iter()
        .find(|(k, _)| same_registry(k, registry))
        .map(|(_, v)| v)
    else {
        return Ok(None);
    };
    let mut creds = DockerCredentials {
        serveraddress: Some(server.clone()),
        identitytoken: entry.identitytoken.clone().filter(|t| !t.is_empty()),
        ..Default::default()
    };
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .with_context(|| format!("the auth of {server} in {} is not base64", path.display()))?;
        let decoded = String::from_utf8(decoded)
            .with_context(|| format!("the auth of {server} in {} is not text", path.display()))?;
        let Some((user, password)) = decoded.split_once(':') else {
            bail!(
                "the auth of {server} in {} is not user:password",
                path.display()
            );
        };
        creds.username = Some(user.to_owned());
        creds.password = Some(password.to_owned());
    }
    Ok((creds.username.is_some() || creds.identitytoken.is_some()).then_some(creds))
}

fn same_registry(key: &str, registry: &str) -> bool {
    let host = host_of(key);
    host == registry || (is_docker_hub(host) && is_docker_hub(registry))
}

/// `docker-credential-<helper> get`: the server address on stdin, `{ServerURL, Username, Secret}` on
/// stdout; "credentials not found" (exit 1) means not logged in there.
fn from_helper(program: &Path, server: &str) -> anyhow::Result<Option<DockerCredentials>> {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let mut child = Command::new(program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", program.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(server.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        if said.to_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        bail!("{} get failed: {}", program.display(), said.trim());
    }
    let answer: Answer = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("reading the answer of {} get", program.display()))?;
    // A helper stores an identity token (OAuth refresh token) as Username "<token>".
    Ok(Some(if answer.username == "<token>" {
        DockerCredentials {
            identitytoken: Some(answer.secret),
            serveraddress: Some(server.to_owned()),
            ..Default::default()
        }
    } else {
        DockerCredentials {
            username: Some(answer.username),
            password: Some(answer.secret),
            serveraddress: Some(server.to_owned()),
            ..Default::default()
        }
    }))
}

/// The program for helper `name`, found on PATH by the OS as the docker CLI finds it.
pub fn helper_on_path(name: &str) -> PathBuf {
    PathBuf::from(format!("docker-credential-{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn references_split_into_registry_name_tag_and_digest() {
        let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        // (reference, registry, name, tag, digest)
        type Case = (
            &'static str,
            &'static str,
            &'static str,
            Option<&'static str>,
            Option<&'static str>,
        );
        let cases: &[Case] = &[
            ("mariadb:11.4", "docker.io", "mariadb", Some("11.4"), None),
            (
                "apache/kafka:3.9.1",
                "docker.io",
                "apache/kafka",
                Some("3.9.1"),
                None,
            ),
            ("redis", "docker.io", "redis", None, None),
            (
                "localhost:5000/app",
                "localhost:5000",
                "localhost:5000/app",
                None,
                None,
            ),
            (
                "localhost/app:1",
                "localhost",
                "localhost/app",
                Some("1"),
                None,
            ),
            (
                "ghcr.io/org/team/img:v2",
                "ghcr.io",
                "ghcr.io/org/team/img",
                Some("v2"),
                None,
            ),
            (
                "mariadb@DIGEST",
                "docker.io",
                "mariadb",
                None,
                Some("DIGEST"),
            ),
            (
                "host:5000/name:tag@DIGEST",
                "host:5000",
                "host:5000/name",
                Some("tag"),
                Some("DIGEST"),
            ),
            (
                "registry.example.com:5000/a/b@DIGEST",
                "registry.example.com:5000",
                "registry.example.com:5000/a/b",
                None,
                Some("DIGEST"),
            ),
        ];
        for (reference, registry, name, tag, dig) in cases {
            let reference = reference.replace("DIGEST", digest);
            let r = Reference::parse(&reference).unwrap();
            assert_eq!(r.registry, *registry, "registry of {reference}");
            assert_eq!(r.name, *name, "name of {reference}");
            assert_eq!(r.tag.as_deref(), *tag, "tag of {reference}");
            assert_eq!(
                r.digest.as_deref(),
                dig.map(|_| digest),
                "digest of {reference}"
            );
        }
        for bad in ["", "name:", "name@nodigest", ":tag"] {
            assert!(Reference::parse(bad).is_err(), "'{bad}' was accepted");
        }
    }

    #[test]
    fn a_digest_is_pulled_by_digest_and_a_tag_defaults_to_latest() {
        let r = Reference::parse("host:5000/name:tag@sha256:abc").unwrap();
        assert_eq!(r.pull_args(), ("host:5000/name@sha256:abc".into(), None));
        let r = Reference::parse("host:5000/name").unwrap();
        assert_eq!(
            r.pull_args(),
            ("host:5000/name".into(), Some("latest".into()))
        );
    }

    fn config(json: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "payctl-registry-test-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), json).unwrap();
        dir
    }

    fn no_helper(name: &str) -> PathBuf {
        panic!("no helper expected, asked for {name}")
    }

    #[test]
    fn auths_give_docker_hub_and_other_registries_their_own_credentials() {
        // base64("me:s3cret") and base64("bot:tok:en") (a password may hold a colon).
        let dir = config(
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"bWU6czNjcmV0"},
                "registry.example.com:5000":{"auth":"Ym90OnRvazplbg=="}}}"#,
        );
        let hub = credentials(&dir, "docker.io", no_helper).unwrap().unwrap();
        assert_eq!(hub.username.as_deref(), Some("me"));
        assert_eq!(hub.password.as_deref(), Some("s3cret"));
        assert_eq!(hub.serveraddress.as_deref(), Some(DOCKER_HUB_AUTH_KEY));
        let other = credentials(&dir, "registry.example.com:5000", no_helper)
            .unwrap()
            .unwrap();
        assert_eq!(other.username.as_deref(), Some("bot"));
        assert_eq!(other.password.as_deref(), Some("tok:en"));
        assert!(credentials(&dir, "ghcr.io", no_helper).unwrap().is_none());
        // No config file: anonymous, no error.
        let empty = dir.join("nothing-here");
        assert!(credentials(&empty, "docker.io", no_helper)
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_credential_helper_is_asked_with_the_server_address_on_stdin() {
        let dir = config(
            r#"{"auths":{"https://index.docker.io/v1/":{}},"credsStore":"fake",
                "credHelpers":{"ghcr.io":"tokens"}}"#,
        );
        // A helper that answers for Docker Hub only, as docker-credential-* helpers do.
        let fake = dir.join("docker-credential-fake");
        std::fs::write(
            &fake,
            "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread server\n\
             if [ \"$server\" = https://index.docker.io/v1/ ]; then\n\
             echo '{\"ServerURL\":\"'$server'\",\"Username\":\"me\",\"Secret\":\"pw\"}'\n\
             else echo 'credentials not found in native keychain'; exit 1; fi\n",
        )
        .unwrap();
        let tokens = dir.join("docker-credential-tokens");
        std::fs::write(
            &tokens,
            "#!/bin/sh\nread server\necho '{\"ServerURL\":\"'$server'\",\"Username\":\"<token>\",\"Secret\":\"refresh\"}'\n",
        )
        .unwrap();
        for f in [&fake, &tokens] {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let helper = |name: &str| dir.join(format!("docker-credential-{name}"));
        let hub = credentials(&dir, "docker.io", helper).unwrap().unwrap();
        assert_eq!(
            (hub.username.as_deref(), hub.password.as_deref()),
            (Some("me"), Some("pw"))
        );
        let ghcr = credentials(&dir, "ghcr.io", helper).unwrap().unwrap();
        assert_eq!(ghcr.identitytoken.as_deref(), Some("refresh"));
        assert_eq!(ghcr.username, None);
        // The store does not know quay.io: anonymous, no error.
        assert!(credentials(&dir, "quay.io", helper).unwrap().is_none());
    }
}
