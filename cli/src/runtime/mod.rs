//! Where the stack runs: native processes ([`native`]) or Docker containers ([`docker`]), both from the
//! one stack definition ([`crate::stack`]).

pub mod docker;
pub mod native;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Choice {
    Auto,
    Native,
    Docker,
}

/// Picks the runtime: Docker when asked, or (auto) when an engine answers; native otherwise.
pub async fn choose(requested: Choice) -> anyhow::Result<Choice> {
    Ok(match requested {
        Choice::Auto if docker::answers().await => Choice::Docker,
        Choice::Auto => Choice::Native,
        other => other,
    })
}
