//! Rebuild when a migration is added or changed: `sqlx::migrate!` embeds `domain/migrations` at compile
//! time, and cargo does not watch those files by itself (a new migration was missing from a warm target).
fn main() {
    println!("cargo:rerun-if-changed=../domain/migrations");
}
