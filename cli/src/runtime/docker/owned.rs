//! What belongs to a stack: its containers and volumes are found by their labels (project and
//! service), never by name alone, and a name of ours held by something payctl did not create for this
//! stack is refused, not taken over or removed.
//!
//! Volumes outlive the state directory (`.payctl`), which holds the secrets a volume was initialised
//! with (MariaDB's users, Grafana's admin). Such a volume carries a fingerprint of those secrets, so
//! `up` can tell, before it starts anything, that the secrets it has are not the volume's, and say what
//! to do instead of letting MariaDB answer "Access denied".

use super::containers::{Container, Network};
use super::{container_name, labels, project_filter, PROJECT_LABEL, SERVICE_LABEL};
use anyhow::bail;
use bollard::models::ContainerSummary;
use bollard::query_parameters::{
    InspectContainerOptions, InspectNetworkOptions, ListContainersOptions,
};
use bollard::Docker as Engine;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;

/// The label with the fingerprint of the secrets a volume was initialised with.
pub const CREDENTIALS_LABEL: &str = "com.payctl.credentials";

/// A container of the stack, as found by its labels.
#[derive(Debug, Clone)]
pub struct Ours {
    /// What the engine calls are made with: unlike the name, it cannot be someone else's.
    pub id: String,
    pub name: String,
    pub service: String,
}

impl Ours {
    fn from_summary(c: &ContainerSummary) -> Option<Self> {
        Some(Self {
            id: c.id.clone()?,
            name: super::name_of(c),
            service: super::service_of(c),
        })
    }
}

/// What the engine says of every container of the stack (running or not), by its project label.
pub async fn summaries(docker: &Engine, project: &str) -> anyhow::Result<Vec<ContainerSummary>> {
    Ok(docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(project_filter(project)),
            ..Default::default()
        }))
        .await?)
}

/// Every container of the stack (running or not), by its project label.
pub async fn all(docker: &Engine, project: &str) -> anyhow::Result<Vec<Ours>> {
    let list = summaries(docker, project).await?;
    Ok(list.iter().filter_map(Ours::from_summary).collect())
}

/// The container of one service of the stack, by its project and service labels.
pub async fn find(docker: &Engine, project: &str, service: &str) -> anyhow::Result<Option<Ours>> {
    let mut filters = project_filter(project);
    filters
        .entry("label".to_owned())
        .or_default()
        .push(format!("{SERVICE_LABEL}={service}"));
    let list = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await?;
    Ok(list.iter().find_map(Ours::from_summary))
}

/// A fingerprint of the secrets a volume is initialised with: it tells whether the secrets at hand are
/// those, and gives none of them away.
pub fn fingerprint(secrets: &[&str]) -> String {
    let mut hash = Sha256::new();
    for s in secrets {
        hash.update(s.as_bytes());
        hash.update([0]);
    }
    format!("sha256:{}", hex::encode(hash.finalize()))
}

/// Whether `labels` are those payctl gives `service` of `project`.
fn labelled(labels: Option<&HashMap<String, String>>, project: &str, service: &str) -> bool {
    labels.is_some_and(|l| {
        l.get(PROJECT_LABEL).map(String::as_str) == Some(project)
            && l.get(SERVICE_LABEL).map(String::as_str) == Some(service)
    })
}

/// Fails, before anything starts, when a container, volume or (on a bridge) network name of the stack
/// is held by one payctl did not create for it, or when a volume of the stack was initialised with
/// other secrets than those in `home`.
pub async fn check(
    docker: &Engine,
    project: &str,
    network: Network,
    defs: &[Container],
    home: &Path,
) -> anyhow::Result<()> {
    super::refuse_other_homes(docker, project).await?;
    if network == Network::Bridge {
        if let Ok(n) = docker
            .inspect_network(project, None::<InspectNetworkOptions>)
            .await
        {
            // The engine also finds a network by a prefix of its id: only the name counts.
            let ours = n
                .labels
                .as_ref()
                .and_then(|l| l.get(PROJECT_LABEL))
                .is_some_and(|p| p == project);
            if n.name.as_deref() == Some(project) && !ours {
                bail!(
                    "a network named {project} exists that payctl did not create (it lacks the label \
                     {PROJECT_LABEL}={project}); remove it, or choose another --project"
                );
            }
        }
    }
    for def in defs {
        let name = container_name(project, &def.service);
        if let Ok(c) = docker
            .inspect_container(&name, None::<InspectContainerOptions>)
            .await
        {
            let labels = c.config.as_ref().and_then(|c| c.labels.as_ref());
            if !labelled(labels, project, &def.service) {
                bail!(
                    "a container named {name} exists that payctl did not create for stack {project} \
                     (it lacks the label {PROJECT_LABEL}={project}); rename or remove it, or choose \
                     another --project"
                );
            }
        }
        if def.volume.is_none() {
            continue;
        }
        let Ok(volume) = docker.inspect_volume(&name).await else {
            continue;
        };
        if !labelled(Some(&volume.labels), project, &def.service) {
            bail!(
                "a volume named {name} exists that payctl did not create for stack {project} \
                 (it lacks the label {PROJECT_LABEL}={project}); remove it if its data is not needed \
                 (docker volume rm {name}), or choose another --project"
            );
        }
        // A volume from a payctl that did not label credentials cannot be checked: it is used as is.
        if let (Some(had), Some(have)) = (volume.labels.get(CREDENTIALS_LABEL), &def.credentials) {
            if had != have {
                bail!(
                    "the volume {name} was initialised with other credentials than those in {} \
                     ({} was removed, or the stack is another directory's?); remove it with \
                     `payctl down --volumes --project {project}` (its data is lost), restore those \
                     secrets, or choose another --project",
                    home.join("secrets").display(),
                    home.display()
                );
            }
        }
    }
    Ok(())
}

/// The labels of a service's volume: the container's, and the fingerprint of the secrets it is
/// initialised with.
pub fn volume_labels(project: &str, def: &Container) -> HashMap<String, String> {
    let mut l = labels(project, Some(&def.service));
    if let Some(f) = &def.credentials {
        l.insert(CREDENTIALS_LABEL.to_owned(), f.clone());
    }
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_changes_with_any_secret_and_shows_none() {
        let a = fingerprint(&["db-secret", "root-secret"]);
        assert_eq!(a, fingerprint(&["db-secret", "root-secret"]));
        assert_ne!(a, fingerprint(&["db-secret", "other"]));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
        assert!(!a.contains("secret"), "{a}");
    }

    #[test]
    fn only_both_labels_of_the_service_make_a_resource_ours() {
        let l = labels("payctl-ci", Some("redis"));
        assert!(labelled(Some(&l), "payctl-ci", "redis"));
        assert!(!labelled(Some(&l), "payctl", "redis"));
        assert!(!labelled(Some(&l), "payctl-ci", "kafka"));
        assert!(!labelled(Some(&HashMap::new()), "payctl-ci", "redis"));
        assert!(!labelled(None, "payctl-ci", "redis"));
    }
}
