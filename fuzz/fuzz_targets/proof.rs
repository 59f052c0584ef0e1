//! A storage proof as the auditor checks it: any (challenge, proof) pair that decodes is
//! accepted or refused by `verify` without a panic, and a refused one stays refused.
#![no_main]

use chunker::{Challenge, Proof};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(((challenge, proof), _)) = postcard::take_from_bytes::<(Challenge, Proof)>(data) else {
        return;
    };
    let first = chunker::proof::verify(&challenge, &proof).is_ok();
    assert_eq!(chunker::proof::verify(&challenge, &proof).is_ok(), first);
    let _ = chunker::proof::transcript_hash(&challenge, &proof);
});
