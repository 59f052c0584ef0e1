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

/// An entry of a page: an object or a common prefix, ordered by its key or prefix.
enum Entry {
    Object(Box<ObjectInfo>),
    Prefix(String),
}

impl Entry {
    fn name(&self) -> &str {
        match self {
            Entry::Object(o) => &o.key,
            Entry::Prefix(p) => p,
        }
    }
}

fn entries(page: ListPage) -> impl Iterator<Item = Entry> {
    page.objects
        .into_iter()
        .map(|o| Entry::Object(Box::new(o)))
        .chain(page.common_prefixes.into_iter().map(Entry::Prefix))
}

/// Merges two pages of the same listing (same prefix, delimiter and resume point, each at most
/// `max_keys` entries) into one: S3 order, an entry in both taken from `first`, at most
/// `max_keys` entries, truncated if either side was or entries were left over.
pub fn merge(first: ListPage, second: ListPage, max_keys: usize) -> ListPage {
    let either_truncated = first.truncated || second.truncated;
    let mut all: Vec<(u8, Entry)> = entries(first)
        .map(|e| (0, e))
        .chain(entries(second).map(|e| (1, e)))
        .collect();
    all.sort_by(|(sa, a), (sb, b)| {
        a.name()
            .as_bytes()
            .cmp(b.name().as_bytes())
            .then(sa.cmp(sb))
    });
    all.dedup_by(|(_, later), (_, earlier)| later.name() == earlier.name());
    let left_over = all.len() > max_keys;
    all.truncate(max_keys);
    let mut page = ListPage {
        truncated: left_over || either_truncated,
        ..ListPage::default()
    };
    if page.truncated {
        page.next_after = all.last().map(|(_, e)| e.name().to_string());
    }
    for (_, e) in all {
        match e {
            Entry::Object(o) => page.objects.push(*o),
            Entry::Prefix(p) => page.common_prefixes.push(p),
        }
    }
    page
}

impl ObjectService {
    /// One page of `bucket`'s listing; a bucket that falls back to a remote lists the remote's
    /// keys too (the bucket's own object wins where both have a key).
    pub async fn list_objects(&self, bucket: &str, q: &ListQuery) -> Result<ListPage, ObjectError> {
        let local = self.list_local(bucket, q)?;
        match self.list_remote(bucket, q).await? {
            Some(remote) => Ok(merge(local, remote, q.max_keys)),
            None => Ok(local),
        }
    }

    /// One page of the bucket's own listing.
    fn list_local(&self, bucket: &str, q: &ListQuery) -> Result<ListPage, ObjectError> {
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

    fn page(objects: &[&str], prefixes: &[&str], truncated: bool) -> ListPage {
        let manifest = |size| chunker::ObjectManifest {
            size,
            etag: String::new(),
            content_type: None,
            user_metadata: Default::default(),
            checksums: Vec::new(),
            created_ms: 0,
            wrapped_key: chunker::WrappedKey::from_bytes(Vec::new()),
            parts: Vec::new(),
            body: chunker::manifest::Body::Remote { key: String::new() },
            headers: Default::default(),
            tags: Default::default(),
        };
        ListPage {
            objects: objects
                .iter()
                .map(|k| ObjectInfo {
                    key: k.to_string(),
                    manifest: manifest(k.len() as u64),
                })
                .collect(),
            common_prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            truncated,
            next_after: None,
        }
    }

    fn names(p: &ListPage) -> (Vec<&str>, Vec<&str>) {
        (
            p.objects.iter().map(|o| o.key.as_str()).collect(),
            p.common_prefixes.iter().map(String::as_str).collect(),
        )
    }

    #[test]
    fn merged_pages_keep_order_and_page_size_and_prefer_the_first() {
        let local = page(&["a", "c", "é"], &["d/"], false);
        let mut remote = page(&["b", "c", "z"], &["d/", "e/"], false);
        remote.objects[1].manifest.size = 99;
        let m = merge(local.clone(), remote.clone(), 1000);
        assert_eq!(names(&m), (vec!["a", "b", "c", "z", "é"], vec!["d/", "e/"]));
        assert!(!m.truncated && m.next_after.is_none());
        assert_eq!(
            m.objects[2].manifest.size, 1,
            "the bucket's own object wins"
        );
        let m = merge(local.clone(), remote.clone(), 4);
        assert_eq!(names(&m), (vec!["a", "b", "c"], vec!["d/"]));
        assert!(m.truncated);
        assert_eq!(m.next_after.as_deref(), Some("d/"));
        let m = merge(page(&["a"], &[], true), page(&[], &[], false), 5);
        assert!(m.truncated);
        assert_eq!(m.next_after.as_deref(), Some("a"));
    }

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
