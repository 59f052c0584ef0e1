//! Integration tests that span crates: real storage-node processes and in-process gateways driven
//! by real S3 clients. The helpers that start and break clusters live here; the tests themselves
//! are in `tests/tests/`. Nothing spans crates yet: the chunker's own tests live in
//! `chunker/tests/`.
