//! The digests an upload computes over its plaintext: MD5 for the ETag, and whichever S3
//! checksums the client asked for.

use chunker::manifest::{Checksum, ChecksumAlgorithm};
use md5::Digest as _;
use s3s::crypto::Checksum as _;

enum Sum {
    Crc32(s3s::crypto::Crc32),
    Crc32c(s3s::crypto::Crc32c),
    Crc64Nvme(s3s::crypto::Crc64Nvme),
    Sha1(s3s::crypto::Sha1),
    Sha256(s3s::crypto::Sha256),
}

/// Running digests of a body.
pub struct BodyDigest {
    md5: md5::Md5,
    sums: Vec<Sum>,
    size: u64,
}

impl std::fmt::Debug for BodyDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyDigest")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// What a body hashed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    pub size: u64,
    pub md5: [u8; 16],
    pub checksums: Vec<Checksum>,
}

impl Digests {
    /// The ETag of a single-part object: the MD5 in hex.
    pub fn etag(&self) -> String {
        hex(&self.md5)
    }

    /// The checksum computed with `algorithm`, if it was asked for.
    pub fn checksum(&self, algorithm: ChecksumAlgorithm) -> Option<&[u8]> {
        self.checksums
            .iter()
            .find(|c| c.algorithm == algorithm)
            .map(|c| c.value.as_slice())
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Bytes from hex (either case); `None` for an odd length or a non-hex digit.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|d| u8::from_str_radix(d, 16).ok()))
        .collect()
}

impl BodyDigest {
    /// MD5 plus the checksums in `algorithms` (duplicates ignored).
    pub fn new(algorithms: &[ChecksumAlgorithm]) -> Self {
        let mut algorithms = algorithms.to_vec();
        algorithms.sort();
        algorithms.dedup();
        let sums = algorithms
            .into_iter()
            .map(|a| match a {
                ChecksumAlgorithm::Crc32 => Sum::Crc32(s3s::crypto::Crc32::new()),
                ChecksumAlgorithm::Crc32c => Sum::Crc32c(s3s::crypto::Crc32c::new()),
                ChecksumAlgorithm::Crc64Nvme => Sum::Crc64Nvme(s3s::crypto::Crc64Nvme::new()),
                ChecksumAlgorithm::Sha1 => Sum::Sha1(s3s::crypto::Sha1::new()),
                ChecksumAlgorithm::Sha256 => Sum::Sha256(s3s::crypto::Sha256::new()),
            })
            .collect();
        BodyDigest {
            md5: md5::Md5::new(),
            sums,
            size: 0,
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.size += data.len() as u64;
        self.md5.update(data);
        for s in &mut self.sums {
            match s {
                Sum::Crc32(h) => h.update(data),
                Sum::Crc32c(h) => h.update(data),
                Sum::Crc64Nvme(h) => h.update(data),
                Sum::Sha1(h) => h.update(data),
                Sum::Sha256(h) => h.update(data),
            }
        }
    }

    /// The results.
    pub fn finish(self) -> Digests {
        let checksums = self
            .sums
            .into_iter()
            .map(|s| {
                let (algorithm, value) = match s {
                    Sum::Crc32(h) => (ChecksumAlgorithm::Crc32, h.finalize().as_ref().to_vec()),
                    Sum::Crc32c(h) => (ChecksumAlgorithm::Crc32c, h.finalize().as_ref().to_vec()),
                    Sum::Crc64Nvme(h) => {
                        (ChecksumAlgorithm::Crc64Nvme, h.finalize().as_ref().to_vec())
                    }
                    Sum::Sha1(h) => (ChecksumAlgorithm::Sha1, h.finalize().as_ref().to_vec()),
                    Sum::Sha256(h) => (ChecksumAlgorithm::Sha256, h.finalize().as_ref().to_vec()),
                };
                Checksum {
                    algorithm,
                    composite: false,
                    value,
                }
            })
            .collect();
        Digests {
            size: self.size,
            md5: self.md5.finalize().into(),
            checksums,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        let mut d = BodyDigest::new(&[ChecksumAlgorithm::Crc32, ChecksumAlgorithm::Sha256]);
        d.update(b"hello ");
        d.update(b"world");
        let r = d.finish();
        assert_eq!(r.size, 11);
        assert_eq!(r.etag(), "5eb63bbbe01eeed093cb22bb8f5acdc3");
        assert_eq!(
            r.checksum(ChecksumAlgorithm::Crc32),
            Some(&0x0d4a_1185u32.to_be_bytes()[..])
        );
        assert_eq!(
            hex(r.checksum(ChecksumAlgorithm::Sha256).unwrap()),
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert!(r.checksum(ChecksumAlgorithm::Sha1).is_none());
    }
}
