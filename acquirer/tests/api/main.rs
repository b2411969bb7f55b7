//! Integration tests of pay-acquirer on its real SQLite database (a fresh file per test). One file per
//! feature.

mod chaos;
mod helpers;
mod ops;
mod review;
mod settlements;
mod statements;
