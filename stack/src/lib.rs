//! Native processes for the platform's real dependencies: MariaDB, Redis and tansu (a Kafka-wire broker).
//!
//! One set of launchers serves two masters: the integration tests, which start private instances on free
//! ports and let them die with the test process ([`Lifetime::TiedToThisProcess`]), and `payctl up` on the
//! native runtime, which leaves them running in the background ([`Lifetime::Detached`]). Each service has a
//! data directory, a log file and a real readiness check (a protocol greeting, not a sleep).
//!
//! The calls here block: they run at start-up, once, before anything else can make progress.

pub mod install;
pub mod ports;
pub mod process;
pub mod services;
pub mod testing;

pub use ports::free_port;
pub use process::{Lifetime, Supervised};
pub use services::{MariaDb, Redis, Tansu};
