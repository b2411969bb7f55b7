//! Integration tests of pay-acquirer against a real MariaDB (one per test binary, a fresh database per
//! test). One file per feature.

mod chaos;
mod helpers;
mod ops;
mod settlements;
mod statements;
