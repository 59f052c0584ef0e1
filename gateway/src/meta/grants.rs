//! Who may use a bucket: per-bucket grants to access keys.
//!
//! - `grants`: `bucket 0x00 access key id` → [`Grant`]. The key that creates a bucket is
//!   granted [`Grant::Owner`] in the creating write; an owner grants others `Read`, `Write` or
//!   `Owner` through the admin API (`gateway keys grant`). A bucket's grants go with it, and a
//!   key's grants with the key.
//!
//! A bucket with no grant at all was created before grants existed: every key may use it, as
//! every key could then (`gateway keys grant` gives it an owner, which closes it).

use rocksdb::{Direction, IteratorMode, WriteBatch};
use serde::{Deserialize, Serialize};

use super::{decode, encode, Meta, MetaError};

pub(super) const CF_GRANTS: &str = "grants";

/// What a key may do with a bucket; each includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Grant {
    /// List it, read its objects and their attributes.
    Read,
    /// Also write, overwrite and delete objects, and run multipart uploads.
    Write,
    /// Also change the bucket's configuration, grant keys, and delete it.
    Owner,
}

impl Grant {
    pub fn as_str(self) -> &'static str {
        match self {
            Grant::Read => "read",
            Grant::Write => "write",
            Grant::Owner => "owner",
        }
    }
}

impl std::str::FromStr for Grant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Grant::Read),
            "write" => Ok(Grant::Write),
            "owner" => Ok(Grant::Owner),
            other => Err(format!("{other:?} is not a grant (read, write, owner)")),
        }
    }
}

/// A bucket's grants, as one read gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BucketGrants(pub Vec<(String, Grant)>);

impl BucketGrants {
    /// Whether `key` may do what `needed` allows (a bucket without grants is open to all).
    pub fn allows(&self, key: &str, needed: Grant) -> bool {
        self.0.is_empty() || self.0.iter().any(|(k, g)| k == key && *g >= needed)
    }

    /// Whether the bucket has an owner (grants exist).
    pub fn is_owned(&self) -> bool {
        !self.0.is_empty()
    }
}

fn grant_prefix(bucket: &str) -> Vec<u8> {
    let mut k = bucket.as_bytes().to_vec();
    k.push(0);
    k
}

fn grant_key(bucket: &str, key: &str) -> Vec<u8> {
    let mut k = grant_prefix(bucket);
    k.extend_from_slice(key.as_bytes());
    k
}

impl Meta {
    /// The grants of `bucket`.
    pub fn grants(&self, bucket: &str) -> Result<BucketGrants, MetaError> {
        let prefix = grant_prefix(bucket);
        let mut out = Vec::new();
        let it = self.db.iterator_cf(
            self.cf(CF_GRANTS),
            IteratorMode::From(&prefix, Direction::Forward),
        );
        for item in it {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            let key = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            out.push((key, decode("grant", &v)?));
        }
        Ok(BucketGrants(out))
    }

    /// Gives `key` the grant `grant` on `bucket` (`None`: takes its grant away).
    /// [`MetaError::NoSuchBucket`] if there is no such bucket.
    pub fn set_grant(
        &self,
        bucket: &str,
        key: &str,
        grant: Option<Grant>,
    ) -> Result<(), MetaError> {
        let _guard = self.lock();
        if self.bucket(bucket)?.is_none() {
            return Err(MetaError::NoSuchBucket);
        }
        let mut batch = WriteBatch::default();
        match grant {
            Some(g) => batch.put_cf(self.cf(CF_GRANTS), grant_key(bucket, key), encode(&g)),
            None => batch.delete_cf(self.cf(CF_GRANTS), grant_key(bucket, key)),
        }
        self.write(batch)
    }

    /// Adds to `batch`: `owner` owns `bucket`.
    pub(super) fn add_owner(&self, batch: &mut WriteBatch, bucket: &str, owner: &str) {
        batch.put_cf(
            self.cf(CF_GRANTS),
            grant_key(bucket, owner),
            encode(&Grant::Owner),
        );
    }

    /// Adds to `batch`: forget every grant of `bucket`.
    pub(super) fn drop_grants_of_bucket(
        &self,
        batch: &mut WriteBatch,
        bucket: &str,
    ) -> Result<(), MetaError> {
        for (key, _) in self.grants(bucket)?.0 {
            batch.delete_cf(self.cf(CF_GRANTS), grant_key(bucket, &key));
        }
        Ok(())
    }

    /// Adds to `batch`: forget every grant of access key `key` (on every bucket).
    pub(super) fn drop_grants_of_key(
        &self,
        batch: &mut WriteBatch,
        key: &str,
    ) -> Result<(), MetaError> {
        for item in self.db.iterator_cf(self.cf(CF_GRANTS), IteratorMode::Start) {
            let (k, _) = item?;
            let Some(zero) = k.iter().position(|&b| b == 0) else {
                continue;
            };
            if &k[zero + 1..] == key.as_bytes() {
                batch.delete_cf(self.cf(CF_GRANTS), &k);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_include_the_lesser_ones_and_unowned_buckets_are_open() {
        let g = BucketGrants(vec![("A".into(), Grant::Owner), ("B".into(), Grant::Read)]);
        assert!(g.allows("A", Grant::Owner) && g.allows("A", Grant::Write));
        assert!(g.allows("B", Grant::Read) && !g.allows("B", Grant::Write));
        assert!(!g.allows("C", Grant::Read));
        assert!(BucketGrants::default().allows("C", Grant::Owner));
        assert_eq!("write".parse::<Grant>(), Ok(Grant::Write));
        assert!("admin".parse::<Grant>().is_err());
    }

    #[test]
    fn a_buckets_grants_live_and_die_with_it_and_with_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open(dir.path()).unwrap();
        meta.create_bucket("b", 1, Some("A")).unwrap();
        meta.create_bucket("c", 1, Some("A")).unwrap();
        meta.set_grant("b", "B", Some(Grant::Read)).unwrap();
        assert_eq!(
            meta.grants("b").unwrap().0,
            vec![
                ("A".to_string(), Grant::Owner),
                ("B".to_string(), Grant::Read)
            ]
        );
        assert!(matches!(
            meta.set_grant("nope", "B", Some(Grant::Read)),
            Err(MetaError::NoSuchBucket)
        ));
        meta.delete_bucket("b").unwrap();
        assert!(meta.grants("b").unwrap().0.is_empty());
        // A bucket made anew under the name inherits nothing.
        meta.create_bucket("b", 2, None).unwrap();
        assert!(!meta.grants("b").unwrap().is_owned());
        let mut batch = WriteBatch::default();
        meta.drop_grants_of_key(&mut batch, "A").unwrap();
        meta.write(batch).unwrap();
        assert!(!meta.grants("c").unwrap().is_owned());
    }
}
