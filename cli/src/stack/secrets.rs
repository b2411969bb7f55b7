//! The dev secrets a stack runs with, generated once per state directory (mode 0600), and the database
//! URL made from them. Dev-only.

use super::Ports;
use anyhow::Context;
use rand::distributions::Alphanumeric;
use rand::Rng;
use std::path::Path;

pub const DATABASE: &str = "payments";

pub const DB_USER: &str = "payctl";

/// A generated secret kept in the state directory (mode 0600), created on first use. Dev-only.
pub fn secret(home: &Path, name: &str) -> anyhow::Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = home.join("secrets").join(name);
    if let Ok(s) = std::fs::read_to_string(&path) {
        return Ok(s.trim().to_owned());
    }
    std::fs::create_dir_all(path.parent().context("secrets dir")?)?;
    let value: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&path)?;
    std::io::Write::write_all(&mut f, value.as_bytes())?;
    Ok(value)
}

/// Writes a file only its owner can read (mode 0600 when created): keys and configs that hold them.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)?;
    // `mode` applies only when the file is created: an existing one loses looser permissions here.
    f.set_permissions(
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
    )?;
    std::io::Write::write_all(&mut f, bytes)?;
    Ok(())
}

pub fn database_url(home: &Path, ports: &Ports) -> anyhow::Result<String> {
    Ok(format!(
        "mysql://{DB_USER}:{}@127.0.0.1:{}/{DATABASE}",
        secret(home, "db-password")?,
        ports.mariadb_port
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_private_file_is_0600_even_when_it_existed_with_looser_permissions() {
        let path = std::env::temp_dir().join(format!("payctl-private-{}", std::process::id()));
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, b"new key").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), b"new key");
        std::fs::remove_file(&path).unwrap();
    }
}
