//! Listing with S3's semantics: keys in UTF-8 byte order, an optional prefix, an optional
//! delimiter that rolls keys up into common prefixes, an exclusive marker to resume after, and a
//! page size.
//!
//! A common prefix is skipped in one seek (to the first key past everything it covers), so a
//! listing with a delimiter costs one step per entry returned, not per key underneath.

use super::{ObjectError, ObjectInfo, ObjectService};
use crate::meta::prefix_successor;

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub prefix: String,
    pub delimiter: Option<String>,
    /// Resume strictly after this key or common prefix (S3's marker, start-after, or the
    /// decoded continuation token).
    pub after: Option<String>,
    /// Entries (keys plus common prefixes) per page; 0 returns an empty, untruncated page.
    pub max_keys: usize,
}

/// One page of a listing.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub objects: Vec<ObjectInfo>,
    pub common_prefixes: Vec<String>,
    pub truncated: bool,
    /// The last entry of this page when it is truncated: resume after it.
    pub next_after: Option<String>,
}

/// Where a resumed listing starts: just after `after`, or past everything under it when it is
/// a common prefix of this listing.
fn resume_point(q: &ListQuery, after: &str) -> Option<Vec<u8>> {
    let is_prefix = q.delimiter.as_deref().is_some_and(|d| {
        !d.is_empty() && after.starts_with(&q.prefix) && after[q.prefix.len()..].ends_with(d)
    });
    if is_prefix {
        prefix_successor(after.as_bytes())
    } else {
        let mut from = after.as_bytes().to_vec();
        from.push(0);
        Some(from)
    }
}

impl ObjectService {
    /// One page of `bucket`'s listing.
    pub fn list_objects(&self, bucket: &str, q: &ListQuery) -> Result<ListPage, ObjectError> {
        self.head_bucket(bucket)?;
        let mut page = ListPage::default();
        if q.max_keys == 0 {
            return Ok(page);
        }
        let mut from = match &q.after {
            Some(after) => match resume_point(q, after) {
                Some(f) => f,
                None => return Ok(page),
            },
            None => q.prefix.as_bytes().to_vec(),
        };
        let delimiter = q.delimiter.as_deref().filter(|d| !d.is_empty());
        let mut count = 0usize;
        loop {
            // Scan until the page is full or a common prefix needs a seek.
            let mut seek_to: Option<Option<Vec<u8>>> = None;
            self.meta.scan_objects(bucket, &q.prefix, &from, |obj| {
                if count == q.max_keys {
                    page.truncated = true;
                    return Ok(false);
                }
                let rest = &obj.key[q.prefix.len()..];
                if let Some(d) = delimiter {
                    if let Some(pos) = rest.find(d) {
                        let cp = obj.key[..q.prefix.len() + pos + d.len()].to_string();
                        seek_to = Some(prefix_successor(cp.as_bytes()));
                        page.next_after = Some(cp.clone());
                        page.common_prefixes.push(cp);
                        count += 1;
                        return Ok(false);
                    }
                }
                page.next_after = Some(obj.key.clone());
                page.objects.push(ObjectInfo {
                    key: obj.key,
                    manifest: obj.manifest,
                });
                count += 1;
                Ok(true)
            })?;
            match seek_to {
                // Past this common prefix (nothing is past an all-0xff one).
                Some(Some(next)) => from = next,
                _ => break,
            }
        }
        if !page.truncated {
            page.next_after = None;
        }
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resuming_after_a_common_prefix_skips_what_it_covers() {
        let q = ListQuery {
            prefix: "a/".into(),
            delimiter: Some("/".into()),
            ..ListQuery::default()
        };
        assert_eq!(resume_point(&q, "a/b/").as_deref(), Some(&b"a/b0"[..]));
        assert_eq!(resume_point(&q, "a/key").as_deref(), Some(&b"a/key\0"[..]));
    }
}
