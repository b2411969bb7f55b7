//! The images of the Docker runtime: upstream ones pulled when missing (with the user's registry
//! credentials, retried, a progress bar per layer), the project's own built from compose/*.Dockerfile
//! with a context of only the paths each needs.
//!
//! A project image carries the label `com.payctl.inputs`: a hash of everything its build reads (the
//! context sent — sources, Cargo.lock, the Dockerfile, or the host-built binary with `--prebuilt` — the
//! target and the build arguments). `up` rebuilds an image whose label differs from the checkout's, so
//! a `git pull` or a rebuilt binary reaches the containers without `--rebuild`.

use super::containers::{self, Container};
use super::registry::{self, Reference};
use super::{engine, labels, DockerArgs, HOME_LABEL};
use crate::ops::store::build_store_if_missing;
use crate::output;
use anyhow::{bail, Context};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    BuildImageOptions, CreateContainerOptions, CreateImageOptions, LogsOptions,
    RemoveContainerOptions, StartContainerOptions, WaitContainerOptions,
};
use bollard::Docker as Engine;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// The label holding the hash of a project image's build inputs.
pub const INPUTS_LABEL: &str = "com.payctl.inputs";

const RUST_DOCKERFILE: &str = "compose/rust-service.Dockerfile";
const GATEWAY_DOCKERFILE: &str = "compose/gateway.Dockerfile";

/// The image's `com.payctl.inputs` label, if the image exists.
async fn inputs_label(docker: &Engine, image: &str) -> Option<Option<String>> {
    let inspect = docker.inspect_image(image).await.ok()?;
    Some(
        inspect
            .config
            .and_then(|c| c.labels)
            .and_then(|l| l.get(INPUTS_LABEL).cloned()),
    )
}

/// Pulls an upstream image when it is missing; builds a project image when it is missing, was built
/// from other inputs than the checkout's, or `--rebuild` says so. Build logs go under `home/build/`.
pub async fn ensure_image(
    docker: &Engine,
    def: &Container,
    args: &DockerArgs,
    home: &Path,
) -> anyhow::Result<()> {
    match &def.build {
        Some(build) => {
            let plan = plan_build(build, args)?;
            let built_from = inputs_label(docker, &def.image).await;
            let why = match &built_from {
                _ if args.rebuild => Some("--rebuild"),
                None => Some("missing"),
                Some(label) if label.as_deref() != Some(plan.inputs.as_str()) => {
                    Some("its inputs changed")
                }
                Some(_) => None,
            };
            if let Some(why) = why {
                if let Some(binary) = &plan.prebuilt_binary {
                    check_prebuilt(docker, binary, &plan.runtime_image).await?;
                }
                build_image(docker, &def.image, build, plan, why, home).await?;
            }
        }
        None => {
            if docker.inspect_image(&def.image).await.is_err() {
                pull(docker, &def.image).await?;
            }
        }
    }
    Ok(())
}

/// Pulls an image with a progress bar per layer; retried on failure with a growing pause.
pub async fn pull(docker: &Engine, image: &str) -> anyhow::Result<()> {
    const ATTEMPTS: u32 = 4;
    let reference = Reference::parse(image)?;
    let (from_image, tag) = reference.pull_args();
    let credentials = registry::credentials(
        &engine::config_dir(),
        &reference.registry,
        registry::helper_on_path,
    )
    .unwrap_or_else(|e| {
        // Anonymous pulls still work for public images: say why the login was not used.
        eprintln!("warning: pulling {image} without credentials: {e:#}");
        None
    });
    let mut last = None;
    for attempt in 1..=ATTEMPTS {
        eprintln!(
            "pulling {image} (attempt {attempt}/{ATTEMPTS}{})",
            if credentials.is_some() {
                format!(", as the user logged in to {}", reference.registry)
            } else {
                String::new()
            }
        );
        let bars = indicatif::MultiProgress::new();
        let mut layers: HashMap<String, indicatif::ProgressBar> = HashMap::new();
        let style = indicatif::ProgressStyle::with_template(
            "  {prefix:12} {msg:12} {bar:30} {bytes}/{total_bytes}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        let mut stream = docker.create_image(
            Some(CreateImageOptions {
                from_image: Some(from_image.clone()),
                tag: tag.clone(),
                ..Default::default()
            }),
            None,
            credentials.clone(),
        );
        let mut failed = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(e) = info.error_detail.and_then(|e| e.message) {
                        failed = Some(anyhow::anyhow!(e));
                        break;
                    }
                    let Some(id) = info.id else { continue };
                    let bar = layers.entry(id.clone()).or_insert_with(|| {
                        let b = bars.add(indicatif::ProgressBar::new(0));
                        b.set_style(style.clone());
                        b.set_prefix(id);
                        b
                    });
                    if let Some(p) = info.progress_detail {
                        if let (Some(cur), Some(total)) = (p.current, p.total) {
                            bar.set_length(total.max(0) as u64);
                            bar.set_position(cur.max(0) as u64);
                        }
                    }
                    bar.set_message(info.status.unwrap_or_default());
                }
                Err(e) => {
                    failed = Some(e.into());
                    break;
                }
            }
        }
        for bar in layers.values() {
            bar.finish();
        }
        match failed {
            None => return Ok(()),
            Some(e) => {
                eprintln!("  pull failed: {e}");
                last = Some(e);
                if attempt < ATTEMPTS {
                    tokio::time::sleep(Duration::from_secs(2u64.pow(attempt))).await;
                }
            }
        }
    }
    Err(last
        .unwrap_or_else(|| anyhow::anyhow!("no attempt made"))
        .context(format!("pulling {image} failed {ATTEMPTS} times")))
}

/// The repository checkout the project's images are built from.
fn source_dir() -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os("PAYCTL_SOURCE_DIR") {
        Some(d) => PathBuf::from(d),
        None => std::env::current_dir()?,
    };
    if !dir.join(RUST_DOCKERFILE).exists() {
        bail!(
            "{} is not a payctl checkout (no {RUST_DOCKERFILE}); run from the checkout or set PAYCTL_SOURCE_DIR",
            dir.display()
        );
    }
    Ok(dir)
}

/// The labels of what images are built with: no state directory, as an image serves every checkout
/// (and the containers run from it inherit its labels).
fn image_labels() -> HashMap<String, String> {
    let mut l = labels(super::IMAGE_PROJECT, None);
    l.remove(HOME_LABEL);
    l
}

/// The commit checked out in `source`, if it is a git checkout.
fn git_commit(source: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(source)
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    let commit = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !commit.is_empty()).then_some(commit)
}

/// Everything one image build sends and reads.
struct BuildPlan {
    context: Vec<u8>,
    /// The Dockerfile stage built ("" = the last one).
    target: &'static str,
    buildargs: HashMap<String, String>,
    /// The hash of context, target, Dockerfile and build arguments: the image's INPUTS_LABEL.
    inputs: String,
    /// With --prebuilt: the host binary put into the image, and the image it runs on.
    prebuilt_binary: Option<PathBuf>,
    runtime_image: String,
    /// Network mode of RUN steps (--build-network).
    network: Option<String>,
}

/// Directories never sent to the engine: build output, installed packages, payctl's state.
const NEVER_SENT: &[&str] = &["target", "node_modules", ".payctl", ".git"];

fn plan_build(build: &containers::Build, args: &DockerArgs) -> anyhow::Result<BuildPlan> {
    let source = source_dir()?;
    let mut buildargs: HashMap<String, String> = args
        .build_args
        .iter()
        .filter_map(|a| a.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let mut paths: Vec<&str> = build.context.to_vec();
    let mut prebuilt_binary = None;
    let target = if let Some(service) = build.service {
        buildargs.insert("SERVICE".into(), service.into());
        match &args.prebuilt {
            // The prebuilt stage copies only the binary: the sources would only slow the upload.
            Some(dir) => {
                paths.retain(|p| p.starts_with("compose/"));
                prebuilt_binary = Some(dir.join(service));
                "prebuilt"
            }
            None => {
                // The build context has no .git: tell the build script which commit it compiles.
                // Only for a source build: a prebuilt binary already carries its commit.
                if let Some(commit) = git_commit(&source) {
                    buildargs
                        .entry("PAYCTL_GIT_COMMIT".into())
                        .or_insert(commit);
                }
                "release"
            }
        }
    } else if build.dockerfile == GATEWAY_DOCKERFILE {
        build_store_if_missing();
        let stage = gateway_stage(&source, &mut paths);
        if stage == "release" {
            eprintln!(
                "frontend/dist is missing (no npm here?): the gateway image builds the store in its Node stage (NODE_IMAGE)"
            );
        }
        stage
    } else {
        ""
    };
    let context = context_tar(&source, &paths, build.service.zip(args.prebuilt.as_deref()))?;
    let mut hash = Sha256::new();
    hash.update(build.dockerfile.as_bytes());
    hash.update([0]);
    hash.update(target.as_bytes());
    hash.update([0]);
    for (k, v) in buildargs.iter().collect::<BTreeMap<_, _>>() {
        hash.update(format!("{k}={v}\0").as_bytes());
    }
    hash.update(&context);
    let runtime_image = match buildargs.get("RUNTIME_IMAGE") {
        Some(image) => image.clone(),
        None => dockerfile_default(&source.join(RUST_DOCKERFILE), "RUNTIME_IMAGE")
            .unwrap_or_else(|| "debian:bookworm-slim".into()),
    };
    Ok(BuildPlan {
        context,
        target,
        buildargs,
        inputs: hex::encode(hash.finalize()),
        prebuilt_binary,
        runtime_image,
        network: args.build_network.clone(),
    })
}

/// The gateway's stage: `dist` (the checkout's store build from the context) when frontend/dist has
/// one, else `release`, which builds the store in the Dockerfile's Node stage; the context then carries
/// the store's sources (without node_modules) instead of its build.
fn gateway_stage(source: &Path, paths: &mut [&str]) -> &'static str {
    if source.join("frontend/dist/index.html").exists() {
        return "dist";
    }
    for p in paths.iter_mut().filter(|p| p.starts_with("frontend/dist")) {
        *p = "frontend";
    }
    "release"
}

/// The default of `ARG name=value` in a Dockerfile.
fn dockerfile_default(dockerfile: &Path, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(dockerfile).ok()?;
    text.lines().find_map(|l| {
        l.trim()
            .strip_prefix("ARG ")?
            .trim()
            .strip_prefix(name)?
            .strip_prefix('=')
            .map(|v| v.trim().to_owned())
    })
}

/// The build context as a tar: the repository paths the Dockerfile uses (never target/ or
/// node_modules/), in a fixed order with fixed metadata so the same files give the same bytes (and the
/// same inputs hash), plus the host-built binary with --prebuilt.
fn context_tar(
    source: &Path,
    paths: &[&str],
    prebuilt: Option<(&str, &Path)>,
) -> anyhow::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(true);
    // The classic builder rejects GNU sparse entries (debug binaries can be sparse on disk).
    tar.sparse(false);
    tar.mode(tar::HeaderMode::Deterministic);
    for path in paths {
        let full = source.join(path);
        if full.is_dir() {
            add_tree(&mut tar, &full, Path::new(path))
                .with_context(|| format!("adding {} to the build context", full.display()))?;
        } else if full.exists() {
            tar.append_path_with_name(&full, path)?;
        } else {
            bail!("{} is missing", full.display());
        }
    }
    if let Some((service, dir)) = prebuilt {
        let binary = dir.join(service);
        tar.append_path_with_name(&binary, format!("compose/prebuilt/{service}"))
            .with_context(|| format!("adding the prebuilt {}", binary.display()))?;
    }
    Ok(tar.into_inner()?)
}

/// A directory into the tar, entries sorted, without [`NEVER_SENT`] directories.
fn add_tree(tar: &mut tar::Builder<Vec<u8>>, dir: &Path, name: &Path) -> anyhow::Result<()> {
    tar.append_dir(name, dir)?;
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let file_name = entry.file_name();
        let path = entry.path();
        let inside = name.join(&file_name);
        if path.is_dir() {
            if NEVER_SENT.iter().any(|n| file_name == *n) {
                continue;
            }
            add_tree(tar, &path, &inside)?;
        } else if path.exists() {
            tar.append_path_with_name(&path, &inside)?;
        }
    }
    Ok(())
}

/// A glibc version (2, 36, 0); the third number is for versions such as 2.2.5.
type Glibc = (u32, u32, u32);

fn show((major, minor, patch): Glibc) -> String {
    if patch == 0 {
        format!("{major}.{minor}")
    } else {
        format!("{major}.{minor}.{patch}")
    }
}

/// The newest glibc a binary asks for: the highest `GLIBC_x.y[.z]` among its version needs (the
/// ELF's .gnu.version_r section); for a file that is not a 64-bit little-endian ELF, the highest
/// NUL-terminated `GLIBC_x.y` string in it.
fn glibc_needed(binary: &[u8]) -> Option<Glibc> {
    match elf_version_needs(binary) {
        Some(needs) => needs
            .iter()
            .filter_map(|n| n.strip_prefix("GLIBC_"))
            .filter_map(parse_glibc)
            .max(),
        None => scan_glibc(binary),
    }
}

/// The highest NUL-terminated `GLIBC_x.y[.z]` string anywhere in `bytes`.
fn scan_glibc(bytes: &[u8]) -> Option<Glibc> {
    memchr::memmem::find_iter(bytes, b"GLIBC_")
        .filter_map(|at| {
            let rest = &bytes[at + b"GLIBC_".len()..];
            let end = rest.iter().position(|&b| b == 0)?;
            parse_glibc(std::str::from_utf8(&rest[..end]).ok()?)
        })
        .max()
}

/// The symbol versions an ELF64 little-endian file needs from its libraries (`vna_name` of every
/// Vernaux in SHT_GNU_verneed sections, read from the string table the section links to); none when
/// the file is not such an ELF. A static binary gives an empty list.
fn elf_version_needs(elf: &[u8]) -> Option<Vec<String>> {
    const SHT_GNU_VERNEED: u32 = 0x6fff_fffe;
    let u16_at = |at: usize| -> Option<usize> {
        Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?) as usize)
    };
    let u32_at = |at: usize| -> Option<usize> {
        Some(u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?) as usize)
    };
    let u64_at = |at: usize| -> Option<usize> {
        usize::try_from(u64::from_le_bytes(elf.get(at..at + 8)?.try_into().ok()?)).ok()
    };
    // Magic, ELFCLASS64, ELFDATA2LSB.
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let (shoff, shentsize, shnum) = (u64_at(0x28)?, u16_at(0x3a)?, u16_at(0x3c)?);
    let section = |i: usize| -> Option<(u32, usize, usize, usize)> {
        let h = shoff + i * shentsize;
        // (sh_type, sh_link, sh_offset, sh_size)
        Some((
            u32_at(h + 4)? as u32,
            u32_at(h + 0x28)?,
            u64_at(h + 0x18)?,
            u64_at(h + 0x20)?,
        ))
    };
    let mut needs = Vec::new();
    for i in 0..shnum {
        let (kind, link, offset, size) = section(i)?;
        if kind != SHT_GNU_VERNEED {
            continue;
        }
        let (_, _, strings, strings_size) = section(link)?;
        let name = |at: usize| -> Option<String> {
            let bytes = elf.get(strings + at..strings + strings_size)?;
            let end = bytes.iter().position(|&b| b == 0)?;
            Some(String::from_utf8_lossy(&bytes[..end]).into_owned())
        };
        // Verneed entries chained by vn_next, each with vn_cnt Vernaux chained by vna_next.
        let mut need = offset;
        while need < offset + size {
            let (count, mut aux) = (u16_at(need + 2)?, need + u32_at(need + 8)?);
            for _ in 0..count {
                needs.push(name(u32_at(aux + 8)?)?);
                aux += u32_at(aux + 12)?;
            }
            match u32_at(need + 12)? {
                0 => break,
                next => need += next,
            }
        }
    }
    Some(needs)
}

/// "2.36" or "2.2.5"; nothing else (GLIBC_PRIVATE, prose).
fn parse_glibc(text: &str) -> Option<Glibc> {
    let mut parts = text.split('.');
    let mut next = |required: bool| -> Option<u32> {
        match parts.next() {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok(),
            None if !required => Some(0),
            _ => None,
        }
    };
    let version = (next(true)?, next(true)?, next(false)?);
    parts.next().is_none().then_some(version)
}

/// The glibc of well-known runtime images, so the check needs no container for them.
fn known_glibc(image: &str) -> Option<Glibc> {
    let image = image.strip_prefix("docker.io/").unwrap_or(image);
    let image = image.strip_prefix("library/").unwrap_or(image);
    const KNOWN: &[(&str, Glibc)] = &[
        ("debian:bookworm", (2, 36, 0)),
        ("debian:12", (2, 36, 0)),
        ("debian:trixie", (2, 41, 0)),
        ("debian:13", (2, 41, 0)),
        ("debian:bullseye", (2, 31, 0)),
        ("debian:11", (2, 31, 0)),
        ("ubuntu:24.04", (2, 39, 0)),
        ("ubuntu:noble", (2, 39, 0)),
        ("ubuntu:22.04", (2, 35, 0)),
        ("ubuntu:jammy", (2, 35, 0)),
        ("gcr.io/distroless/cc-debian12", (2, 36, 0)),
    ];
    KNOWN
        .iter()
        .find(|(prefix, _)| {
            image == *prefix
                || image
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with(['-', '.', ':', '@']))
        })
        .map(|(_, v)| *v)
}

/// The first line of `ldd --version`: "ldd (Debian GLIBC 2.36-9+deb12u10) 2.36" → 2.36.
fn parse_ldd_version(output: &str) -> Option<Glibc> {
    parse_glibc(output.lines().next()?.split_whitespace().last()?)
}

/// Runtime images whose glibc was read in this process.
static RUNTIME_GLIBC: Mutex<BTreeMap<String, Glibc>> = Mutex::new(BTreeMap::new());

/// The glibc of `image`: from the table, else `ldd --version` in a throwaway container.
async fn runtime_glibc(docker: &Engine, image: &str) -> anyhow::Result<Glibc> {
    if let Some(v) = known_glibc(image) {
        return Ok(v);
    }
    if let Some(v) = RUNTIME_GLIBC
        .lock()
        .ok()
        .and_then(|m| m.get(image).copied())
    {
        return Ok(v);
    }
    if docker.inspect_image(image).await.is_err() {
        pull(docker, image).await?;
    }
    let created = docker
        .create_container(
            None::<CreateContainerOptions>,
            ContainerCreateBody {
                image: Some(image.to_owned()),
                entrypoint: Some(vec!["ldd".into()]),
                cmd: Some(vec!["--version".into()]),
                user: Some("0".into()),
                labels: Some(image_labels()),
                host_config: Some(HostConfig {
                    network_mode: Some("none".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("creating a container of {image} to read its glibc"))?;
    let id = created.id;
    let run = async {
        docker
            .start_container(&id, None::<StartContainerOptions>)
            .await?;
        // A non-zero exit is an Err here; the output below says why.
        let _ = docker
            .wait_container(&id, None::<WaitContainerOptions>)
            .collect::<Vec<_>>()
            .await;
        let mut logs = docker.logs(
            &id,
            Some(LogsOptions {
                stdout: true,
                stderr: true,
                ..Default::default()
            }),
        );
        let mut out = String::new();
        while let Some(Ok(chunk)) = logs.next().await {
            out += &chunk.to_string();
        }
        anyhow::Ok(out)
    };
    let out = run.await;
    let _ = docker
        .remove_container(
            &id,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await;
    let out = out.with_context(|| format!("running ldd --version in {image}"))?;
    let version = parse_ldd_version(&out).with_context(|| {
        format!(
            "{image} has no glibc that ldd --version reports ({}); --prebuilt needs a glibc-based RUNTIME_IMAGE",
            out.lines().next().unwrap_or("no output")
        )
    })?;
    if let Ok(mut m) = RUNTIME_GLIBC.lock() {
        m.insert(image.to_owned(), version);
    }
    Ok(version)
}

/// The architecture (Docker's name: GOARCH) an ELF binary is built for: None for anything but ELF (a
/// macOS Mach-O, a Windows PE, a script), Some(None) for a machine this table does not name.
fn elf_arch(binary: &[u8]) -> Option<Option<&'static str>> {
    if binary.get(..4)? != b"\x7fELF" {
        return None;
    }
    // e_machine (little-endian: every architecture named here is, as Docker runs them).
    let machine = u16::from_le_bytes(binary.get(0x12..0x14)?.try_into().ok()?);
    Some(match machine {
        62 => Some("amd64"),
        183 => Some("arm64"),
        3 => Some("386"),
        40 => Some("arm"),
        21 => Some("ppc64le"),
        243 => Some("riscv64"),
        _ => None,
    })
}

/// Fails when a prebuilt binary cannot run in the engine's containers: not a Linux (ELF) binary — on
/// a Mac, `cargo build` makes Mach-O — or built for another architecture than the engine's (an x86_64
/// binary on Apple silicon's arm64 engine).
fn runs_on_engine(binary: &Path, bytes: &[u8], engine_arch: &str) -> anyhow::Result<()> {
    match elf_arch(bytes) {
        None => bail!(
            "{} is not a Linux binary (no ELF header): --prebuilt needs binaries built for Linux (e.g. \
             cargo build --target {}-unknown-linux-gnu); drop --prebuilt to compile in Docker",
            binary.display(),
            if engine_arch == "arm64" { "aarch64" } else { "x86_64" }
        ),
        Some(Some(arch)) if arch != engine_arch => bail!(
            "{} is built for {arch} but the Docker engine runs {engine_arch} containers: build for \
             {engine_arch}, or drop --prebuilt to compile in Docker",
            binary.display()
        ),
        Some(_) => Ok(()),
    }
}

/// Fails, before anything is built, when a host-built binary cannot run in the runtime image: not for
/// this engine (see [`runs_on_engine`]), or needing a newer glibc than the image has (a binary from
/// Ubuntu 24.04 or Fedora in debian:bookworm-slim exits at start).
async fn check_prebuilt(docker: &Engine, binary: &Path, runtime_image: &str) -> anyhow::Result<()> {
    let bytes = std::fs::read(binary)
        .with_context(|| format!("reading the prebuilt {}", binary.display()))?;
    // The engine's architecture by Docker's names (amd64, arm64), as its version says.
    if let Some(arch) = docker.version().await.ok().and_then(|v| v.arch) {
        runs_on_engine(binary, &bytes, &arch)?;
    }
    let Some(needed) = glibc_needed(&bytes) else {
        return Ok(()); // static, or not linked against glibc
    };
    let has = runtime_glibc(docker, runtime_image).await?;
    glibc_fits(binary, needed, runtime_image, has)
}

fn glibc_fits(binary: &Path, needed: Glibc, image: &str, has: Glibc) -> anyhow::Result<()> {
    if needed > has {
        bail!(
            "{} needs glibc {} but the runtime image {image} has glibc {}: build the binary on a system \
             with glibc {} or older (e.g. in rust:1-bookworm), drop --prebuilt to compile in Docker, or \
             pass --build-arg RUNTIME_IMAGE=<an image with glibc {} or newer, e.g. debian:trixie-slim>",
            binary.display(),
            show(needed),
            show(has),
            show(has),
            show(needed),
        );
    }
    Ok(())
}

/// A file name for an image's build log: `payctl/pay-server:dev` → `payctl_pay-server_dev.log`.
fn log_name(image: &str) -> String {
    image
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        + ".log"
}

async fn build_image(
    docker: &Engine,
    image: &str,
    build: &containers::Build,
    plan: BuildPlan,
    why: &str,
    home: &Path,
) -> anyhow::Result<()> {
    let log_path = home.join("build").join(log_name(image));
    std::fs::create_dir_all(home.join("build"))?;
    let mut log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    eprintln!(
        "building {image} ({why}) from {}{} ({} KiB context; log in {})",
        build.dockerfile,
        if plan.target.is_empty() {
            String::new()
        } else {
            format!(", target {}", plan.target)
        },
        plan.context.len() / 1024,
        log_path.display()
    );
    // The current Dockerfile step, and under it the build's own last output line.
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {prefix}\n    {wide_msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    spinner.set_prefix(format!("building {image}"));
    spinner.enable_steady_tick(Duration::from_millis(100));
    let mut image_labels = image_labels();
    image_labels.insert(INPUTS_LABEL.into(), plan.inputs.clone());
    let mut stream = docker.build_image(
        BuildImageOptions {
            dockerfile: build.dockerfile.to_owned(),
            t: Some(image.to_owned()),
            rm: true,
            forcerm: true,
            buildargs: Some(plan.buildargs),
            networkmode: plan.network,
            target: plan.target.to_owned(),
            labels: Some(image_labels),
            ..Default::default()
        },
        None,
        Some(bollard::body_full(plan.context.into())),
    );
    let mut tail: Vec<String> = Vec::new();
    let failed = |spinner: &indicatif::ProgressBar, e: String, tail: &[String]| {
        spinner.finish_and_clear();
        anyhow::anyhow!(
            "building {image}: {e}\nlast output:\n{}\nthe whole build log: {}",
            tail.join("\n"),
            log_path.display()
        )
    };
    while let Some(item) = stream.next().await {
        let info = match item {
            Ok(info) => info,
            Err(e) => return Err(failed(&spinner, e.to_string(), &tail)),
        };
        if let Some(e) = info.error_detail.and_then(|e| e.message) {
            let _ = writeln!(log, "ERROR: {e}");
            return Err(failed(&spinner, e, &tail));
        }
        let text = info.stream.unwrap_or_default();
        let _ = log.write_all(text.as_bytes());
        for line in text.lines() {
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            if line.starts_with("Step ") {
                spinner.set_prefix(format!("{image}: {line}"));
                spinner.set_message("");
            } else {
                spinner.set_message(line.to_owned());
            }
            tail.push(line.to_owned());
            if tail.len() > 30 {
                tail.remove(0);
            }
        }
    }
    spinner.finish_and_clear();
    eprintln!("{} built {image}", output::mark(true));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commit_of_a_checkout_is_passed_to_the_image_build() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let commit = git_commit(&repo).unwrap();
        assert!(
            commit.len() == 40 && commit.chars().all(|c| c.is_ascii_hexdigit()),
            "{commit}"
        );
        assert_eq!(git_commit(Path::new("/nonexistent")), None);
    }

    /// `GLIBC_<version>\0`, put together at run time: as a literal it would sit in this test binary,
    /// where the real-binary test below would find it.
    fn need(version: &str) -> Vec<u8> {
        [b"GLIBC".as_slice(), b"_", version.as_bytes(), b"\0"].concat()
    }

    #[test]
    fn the_newest_glibc_symbol_version_is_what_a_binary_needs() {
        let fake: Vec<u8> = [
            b"not an ELF ".to_vec(),
            need("2.2.5"),
            need("2.39"),
            need("2.17"),
            need("PRIVATE"),
            need("2.3.4"),
        ]
        .concat();
        assert_eq!(glibc_needed(&fake), Some((2, 39, 0)));
        // Prose that merely mentions glibc is no version need.
        assert_eq!(glibc_needed(&need("2.99 or newer")), None);
        assert_eq!(glibc_needed(b"statically linked, no versions"), None);
    }

    #[test]
    fn a_real_binary_built_here_fits_debian_bookworm() {
        // This test binary was linked on this machine (Debian 12, glibc 2.36): its version needs are
        // read from its ELF sections.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let needs = elf_version_needs(&me).expect("an ELF64 binary");
        assert!(needs.iter().any(|n| n == "GLIBC_2.2.5"), "{needs:?}");
        let needed = glibc_needed(&me).expect("a glibc-linked binary names GLIBC_ versions");
        assert!(((2, 3, 0)..=(2, 36, 0)).contains(&needed), "{needed:?}");
        let bookworm = known_glibc("debian:bookworm-slim").unwrap();
        assert!(glibc_fits(Path::new("me"), needed, "debian:bookworm-slim", bookworm).is_ok());
    }

    #[test]
    fn a_binary_needing_a_newer_glibc_is_refused_naming_both_versions() {
        let needed = glibc_needed(b"GLIBC_2.34\0GLIBC_2.39\0").unwrap();
        let has = known_glibc("debian:bookworm-slim").unwrap();
        let err = glibc_fits(
            Path::new("target/release/pay-server"),
            needed,
            "debian:bookworm-slim",
            has,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("needs glibc 2.39"), "{err}");
        assert!(err.contains("has glibc 2.36"), "{err}");
        assert!(err.contains("RUNTIME_IMAGE"), "{err}");
        assert!(glibc_fits(
            Path::new("x"),
            needed,
            "ubuntu:24.04",
            known_glibc("ubuntu:24.04").unwrap()
        )
        .is_ok());
    }

    #[test]
    fn a_prebuilt_binary_must_be_linux_for_the_engines_architecture() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let here = if cfg!(target_arch = "x86_64") {
            "amd64"
        } else {
            "arm64"
        };
        assert!(runs_on_engine(Path::new("me"), &me, here).is_ok());
        let other = if here == "amd64" { "arm64" } else { "amd64" };
        let err = runs_on_engine(Path::new("me"), &me, other)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(
                "built for {here} but the Docker engine runs {other}"
            )),
            "{err}"
        );
        // A macOS binary (Mach-O, 64-bit) is no Linux binary.
        let mach_o = [0xcf, 0xfa, 0xed, 0xfe, 0x0c, 0x00, 0x00, 0x01];
        let err = runs_on_engine(Path::new("target/release/pay-server"), &mach_o, "arm64")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not a Linux binary") && err.contains("aarch64-unknown-linux-gnu"),
            "{err}"
        );
    }

    #[test]
    fn runtime_images_glibc_comes_from_the_table_or_ldd() {
        assert_eq!(known_glibc("debian:bookworm-slim"), Some((2, 36, 0)));
        assert_eq!(
            known_glibc("docker.io/library/debian:12.8"),
            Some((2, 36, 0))
        );
        assert_eq!(known_glibc("ubuntu:24.04"), Some((2, 39, 0)));
        assert_eq!(known_glibc("debian:bookwormish"), None);
        assert_eq!(known_glibc("payctl-test/base:bookworm"), None);
        assert_eq!(
            parse_ldd_version("ldd (Debian GLIBC 2.36-9+deb12u10) 2.36\nCopyright (C) 2022\n"),
            Some((2, 36, 0))
        );
        assert_eq!(
            parse_ldd_version("ldd (Ubuntu GLIBC 2.39-0ubuntu8.4) 2.39\n"),
            Some((2, 39, 0))
        );
        assert_eq!(
            parse_ldd_version("musl libc (x86_64)\nVersion 1.2.5\n"),
            None
        );
    }

    #[test]
    fn the_dockerfile_names_the_default_runtime_image() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        assert_eq!(
            dockerfile_default(&root.join(RUST_DOCKERFILE), "RUNTIME_IMAGE").as_deref(),
            Some("debian:bookworm-slim")
        );
    }

    #[test]
    fn the_gateway_copies_a_store_build_or_builds_the_store_from_its_sources() {
        let dir = std::env::temp_dir().join(format!(
            "payctl-gateway-test-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(dir.join("frontend/src")).unwrap();
        std::fs::create_dir_all(dir.join("frontend/node_modules/react")).unwrap();
        std::fs::write(dir.join("frontend/package.json"), "{}").unwrap();
        std::fs::write(dir.join("frontend/node_modules/react/index.js"), "").unwrap();
        let context = ["compose/gateway.Dockerfile", "frontend/dist"];
        let mut paths = context.to_vec();
        assert_eq!(gateway_stage(&dir, &mut paths), "release");
        assert_eq!(paths, ["compose/gateway.Dockerfile", "frontend"]);
        let tar = context_tar(&dir, &paths[1..], None).unwrap();
        let names: Vec<String> = tar::Archive::new(tar.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert!(
            names.contains(&"frontend/package.json".to_owned()),
            "{names:?}"
        );
        assert!(
            !names.iter().any(|n| n.contains("node_modules")),
            "{names:?}"
        );
        std::fs::create_dir_all(dir.join("frontend/dist")).unwrap();
        std::fs::write(dir.join("frontend/dist/index.html"), "<html>").unwrap();
        let mut paths = context.to_vec();
        assert_eq!(gateway_stage(&dir, &mut paths), "dist");
        assert_eq!(paths, context);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_dockerfiles_have_the_stages_payctl_builds() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let stages = |file: &str| -> Vec<String> {
            std::fs::read_to_string(root.join(file))
                .unwrap()
                .lines()
                .filter_map(|l| l.strip_prefix("FROM "))
                .filter_map(|l| l.split_once(" AS ").map(|(_, s)| s.trim().to_owned()))
                .collect()
        };
        // The classic builder runs every stage up to the target: the ones payctl builds here, where no
        // Rust or Node image can be pulled, must come before those that need one.
        assert_eq!(
            stages(RUST_DOCKERFILE),
            ["runtime", "prebuilt", "chef", "planner", "builder", "release"]
        );
        assert_eq!(
            stages(GATEWAY_DOCKERFILE),
            ["base", "dist", "store", "release"]
        );
    }

    #[test]
    fn the_context_leaves_out_build_output_and_gives_the_same_bytes_for_the_same_files() {
        let dir = std::env::temp_dir().join(format!(
            "payctl-context-test-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        for d in ["app/src", "app/target/debug", "app/node_modules/x"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::write(dir.join("app/src/main.rs"), "fn main() {}").unwrap();
        std::fs::write(dir.join("app/Cargo.toml"), "[package]").unwrap();
        std::fs::write(dir.join("app/target/debug/big"), "binary").unwrap();
        std::fs::write(dir.join("app/node_modules/x/index.js"), "js").unwrap();
        let first = context_tar(&dir, &["app"], None).unwrap();
        let mut names: Vec<String> = tar::Archive::new(first.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["app", "app/Cargo.toml", "app/src", "app/src/main.rs"]
        );
        // Touching a file changes no byte; changing its content does.
        std::fs::write(dir.join("app/src/main.rs"), "fn main() {}").unwrap();
        assert_eq!(context_tar(&dir, &["app"], None).unwrap(), first);
        std::fs::write(dir.join("app/src/main.rs"), "fn main() { }").unwrap();
        assert_ne!(context_tar(&dir, &["app"], None).unwrap(), first);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
