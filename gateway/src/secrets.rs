//! The gateway's secrets in its data directory, created on first start with owner-only
//! permissions and refused when others can read them: `master.key` (wraps every object's data
//! key and every access key's secret), `identity.key` (its libp2p identity, which nodes are
//! configured to obey), `admin.token`, and `gateway dev`'s `cluster.json` (which holds a secret
//! key and the token).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context};
use chunker::MasterKey;
use libp2p::identity::Keypair;

/// File name of the master key.
pub const MASTER_KEY_FILE: &str = "master.key";

/// Loads the master key, creating it if the directory has none. Losing this file loses every
/// object: back it up.
pub fn master_key(data_dir: &Path) -> anyhow::Result<MasterKey> {
    let path = data_dir.join(MASTER_KEY_FILE);
    if !path.exists() {
        let bytes = MasterKey::generate_bytes().context("generate a master key")?;
        write_new_secret(&path, &bytes)?;
        tracing::info!(path = %path.display(), "created a new master key; back it up");
    }
    let bytes = read_private(&path)?;
    MasterKey::from_bytes(&bytes)
        .with_context(|| format!("{} does not hold a 32-byte key", path.display()))
}

/// Reads a secret file, refusing one that users other than its owner may read or write.
pub fn read_private(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mode = std::fs::metadata(path)
        .with_context(|| format!("read {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "{} is accessible to other users (mode {:o}); run `chmod 600` on it",
            path.display(),
            mode & 0o777
        );
    }
    std::fs::read(path).with_context(|| format!("read {}", path.display()))
}

/// Writes `bytes` to `path` (replacing it) readable by its owner only: a temporary file of
/// mode 0600, synced, renamed over `path`.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    write_new_secret(&tmp, bytes)?;
    std::fs::rename(&tmp, path).with_context(|| format!("replace {}", path.display()))
}

/// Creates `path` readable by its owner only, with `bytes`, synced. Refuses to overwrite.
pub fn write_new_secret(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("write {}", path.display()))
}

/// Loads the gateway's identity, creating it if the directory has none.
pub fn identity(data_dir: &Path) -> anyhow::Result<Keypair> {
    if data_dir
        .join(storage_node::identity::IDENTITY_FILE)
        .exists()
    {
        storage_node::identity::load(data_dir)
    } else {
        storage_node::identity::create(data_dir)
    }
}
