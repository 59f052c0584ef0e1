//! A node's answer as the gateway decodes it (proofs, receipts, piece headers, errors): any
//! bytes decode to a valid response or an error; whatever a response carries can be checked
//! without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use storage_node::protocol::{decode_header, encode_header, RegistrationReply, Response};

fuzz_target!(|data: &[u8]| {
    if let Ok(response) = decode_header::<Response>(data) {
        let again: Response = decode_header(&encode_header(&response)).expect("round trip");
        assert_eq!(again, response);
        if let Response::UsageReceipt { receipt } = &response {
            let _ = receipt.verify();
        }
    }
    if let Ok(reply) = decode_header::<RegistrationReply>(data) {
        let again: RegistrationReply = decode_header(&encode_header(&reply)).expect("round trip");
        assert_eq!(again, reply);
    }
});
