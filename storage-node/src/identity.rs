//! The node's identity: an ed25519 keypair in `<data-dir>/identity.key` (owner-only), whose libp2p
//! PeerId is the node id.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context};
use libp2p::identity::Keypair;

/// File name of the key inside the data directory.
pub const IDENTITY_FILE: &str = "identity.key";

/// Creates a new identity. Refuses if one exists: a node's identity is what its pieces and
/// reputation are filed under, and overwriting it would orphan both.
pub fn create(data_dir: &Path) -> anyhow::Result<Keypair> {
    let path = data_dir.join(IDENTITY_FILE);
    let keypair = Keypair::generate_ed25519();
    let bytes = keypair
        .to_protobuf_encoding()
        .context("encode the new identity")?;
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                anyhow::anyhow!(
                    "{} already exists: this directory already has a node identity, refusing to overwrite it",
                    path.display()
                )
            } else {
                anyhow::Error::new(e).context(format!("create {}", path.display()))
            }
        })?;
    f.write_all(&bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("write {}", path.display()))?;
    Ok(keypair)
}

/// Loads the identity, refusing a key file that others can read.
pub fn load(data_dir: &Path) -> anyhow::Result<Keypair> {
    let path = data_dir.join(IDENTITY_FILE);
    let meta = fs::metadata(&path)
        .with_context(|| format!("read {} (run `storage-node init` first)", path.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        bail!(
            "{} is accessible to other users (mode {:o}); run `chmod 600` on it",
            path.display(),
            mode & 0o777
        );
    }
    let bytes = fs::read(&path).with_context(|| format!("read {}", path.display()))?;
    Keypair::from_protobuf_encoding(&bytes)
        .with_context(|| format!("{} is not a libp2p key", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_load_and_refuse_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let key = create(dir.path()).unwrap();
        let path = dir.path().join(IDENTITY_FILE);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(load(dir.path()).unwrap().public(), key.public());
        let err = create(dir.path()).unwrap_err().to_string();
        assert!(err.contains("refusing to overwrite"), "{err}");
        assert_eq!(load(dir.path()).unwrap().public(), key.public());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load(dir.path())
            .unwrap_err()
            .to_string()
            .contains("chmod 600"));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, b"garbage").unwrap();
        assert!(load(dir.path()).is_err());
    }
}
