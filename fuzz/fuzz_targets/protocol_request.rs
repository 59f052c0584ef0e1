//! A gateway's order as a node decodes it: any bytes decode to a valid request or an error, and
//! a valid request encodes back to what decodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use storage_node::protocol::{decode_header, encode_header, Registration, Request};

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = decode_header::<Request>(data) {
        let again: Request = decode_header(&encode_header(&request)).expect("round trip");
        assert_eq!(again, request);
        let _ = request.kind();
        let _ = request.payload_len();
    }
    // A node's registration, as the gateway decodes it.
    if let Ok(registration) = decode_header::<Registration>(data) {
        let again: Registration = decode_header(&encode_header(&registration)).expect("round trip");
        assert_eq!(again, registration);
    }
});
