//! S3's rules for an object's tag set, for every way a tag set arrives: a client's header or
//! body (mapped to S3 errors in `crate::s3::attrs`) and a remote's answer on copy-in.

use std::collections::BTreeMap;

/// At most this many tags per object.
pub const MAX_TAGS: usize = 10;
/// Keys are 1 to this many characters.
pub const MAX_TAG_KEY: usize = 128;
/// Values are at most this many characters.
pub const MAX_TAG_VALUE: usize = 256;

/// How a tag set breaks S3's rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    #[error("Object tags cannot be greater than {MAX_TAGS}")]
    TooMany,
    #[error("The TagKey you have provided is invalid: it must be 1 to {MAX_TAG_KEY} characters")]
    Key,
    #[error(
        "The TagValue you have provided is invalid: it must be at most {MAX_TAG_VALUE} characters"
    )]
    Value,
    #[error("Cannot provide multiple Tags with the same key")]
    Duplicate,
}

/// `pairs` as a tag set, if it keeps S3's rules (at most 10 tags, keys 1–128 and values up to
/// 256 characters, no key twice).
pub fn checked(pairs: Vec<(String, String)>) -> Result<BTreeMap<String, String>, TagError> {
    if pairs.len() > MAX_TAGS {
        return Err(TagError::TooMany);
    }
    let mut out = BTreeMap::new();
    for (k, v) in pairs {
        if k.is_empty() || k.chars().count() > MAX_TAG_KEY {
            return Err(TagError::Key);
        }
        if v.chars().count() > MAX_TAG_VALUE {
            return Err(TagError::Value);
        }
        if out.insert(k, v).is_some() {
            return Err(TagError::Duplicate);
        }
    }
    Ok(out)
}
