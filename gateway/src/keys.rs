//! S3 access keys: an id clients send in the clear, and a secret kept in the metadata wrapped by
//! the master key (a stolen metadata database alone reveals no secret).

use chunker::{DataKey, MasterKey};

use crate::digest::hex;
use crate::meta::{AccessKeyRecord, Meta, MetaError};
use crate::time::now_ms;

/// Characters of generated key ids (like AWS's: upper-case letters and digits).
const ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("key material: {0}")]
    Crypto(#[from] chunker::CryptoError),
}

/// A new access key: its id and its secret (shown to the user once).
#[derive(Debug, Clone)]
pub struct NewKey {
    pub id: String,
    pub secret: String,
}

/// Creates and stores a new key.
pub fn create(meta: &Meta, master: &MasterKey, description: &str) -> Result<NewKey, KeyError> {
    let material = DataKey::generate()?;
    let secret = secret_text(&material);
    let id_bytes = DataKey::generate()?.to_bytes();
    let id: String = "GK"
        .chars()
        .chain(
            id_bytes[..18]
                .iter()
                .map(|b| char::from(ID_ALPHABET[usize::from(b % 32)])),
        )
        .collect();
    meta.put_access_key(
        &id,
        &AccessKeyRecord {
            secret: master.wrap(&material)?,
            created_ms: now_ms(),
            description: description.to_string(),
            disabled: false,
        },
    )?;
    Ok(NewKey { id, secret })
}

/// The secret of a stored key.
pub fn secret(master: &MasterKey, record: &AccessKeyRecord) -> Result<String, KeyError> {
    Ok(secret_text(&master.unwrap(&record.secret)?))
}

fn secret_text(material: &DataKey) -> String {
    hex(&material.to_bytes()[..20])
}

/// Disables (or enables again) a key; `false` if there is no such key. Effective for the next
/// request: every request looks its key up.
pub fn set_disabled(meta: &Meta, id: &str, disabled: bool) -> Result<bool, KeyError> {
    let Some(mut record) = meta.access_key(id)? else {
        return Ok(false);
    };
    record.disabled = disabled;
    meta.put_access_key(id, &record)?;
    Ok(true)
}
