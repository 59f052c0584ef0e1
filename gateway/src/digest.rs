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

/// CRC-64/NVME's polynomial, bit-reflected (the CRC is computed least significant bit first).
const CRC64_NVME_REFLECTED: u64 = 0x9a6c_9329_ac4b_c9b5;

/// The CRC-64/NVME of `A ‖ B` from the CRCs of `A` and `B` and the length of `B` (the
/// Galois-field method of zlib's `crc32_combine`, for 64 bits): how the full-object checksum of
/// a multipart upload comes from its parts' checksums without reading the parts again. Init and
/// final XOR are both all ones, so finished CRCs combine directly.
pub fn crc64_nvme_combine(crc_a: u64, crc_b: u64, len_b: u64) -> u64 {
    fn times(matrix: &[u64; 64], mut vec: u64) -> u64 {
        let mut sum = 0;
        let mut row = 0;
        while vec != 0 {
            if vec & 1 != 0 {
                sum ^= matrix[row];
            }
            vec >>= 1;
            row += 1;
        }
        sum
    }
    fn square(matrix: &[u64; 64]) -> [u64; 64] {
        let mut out = [0u64; 64];
        for (n, row) in out.iter_mut().enumerate() {
            *row = times(matrix, matrix[n]);
        }
        out
    }
    if len_b == 0 {
        return crc_a;
    }
    // The operator for one zero bit, then two, then four.
    let mut odd = [0u64; 64];
    odd[0] = CRC64_NVME_REFLECTED;
    for (n, row) in odd.iter_mut().enumerate().skip(1) {
        *row = 1 << (n - 1);
    }
    let mut even = square(&odd);
    odd = square(&even);
    // Apply len_b zero bytes to crc_a: square up through 8, 16, 32… zero bits.
    let (mut crc, mut len) = (crc_a, len_b);
    loop {
        even = square(&odd);
        if len & 1 != 0 {
            crc = times(&even, crc);
        }
        len >>= 1;
        if len == 0 {
            break;
        }
        odd = square(&even);
        if len & 1 != 0 {
            crc = times(&odd, crc);
        }
        len >>= 1;
        if len == 0 {
            break;
        }
    }
    crc ^ crc_b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crc64(data: &[u8]) -> u64 {
        let mut d = BodyDigest::new(&[ChecksumAlgorithm::Crc64Nvme]);
        d.update(data);
        let r = d.finish();
        u64::from_be_bytes(
            r.checksum(ChecksumAlgorithm::Crc64Nvme)
                .unwrap()
                .try_into()
                .unwrap(),
        )
    }

    #[test]
    fn crc64_nvme_of_two_parts_combines_into_the_whole() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        for cut in [0, 1, 7, 8, 9, 1000, 65_536, 199_999, 200_000] {
            let (a, b) = data.split_at(cut);
            assert_eq!(
                crc64_nvme_combine(crc64(a), crc64(b), b.len() as u64),
                crc64(&data),
                "cut at {cut}"
            );
        }
        // CRC-64/NVME's check value.
        assert_eq!(crc64(b"123456789"), 0xae8b_1486_0a79_9888);
    }

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
