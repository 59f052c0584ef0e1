//! An object manifest as the gateway reads it from its metadata: any bytes decode to a
//! manifest that passes validation or an error, and everything the read path asks of a valid
//! one (segments of a range, layouts) answers without a panic.
#![no_main]

use chunker::manifest::Body;
use chunker::ObjectManifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(manifest) = ObjectManifest::decode(data) else {
        return;
    };
    let again = ObjectManifest::decode(&manifest.encode()).expect("round trip");
    assert_eq!(again, manifest);
    let size = manifest.size;
    for range in [0..size, 0..size.min(1), size / 2..size, size..size] {
        for span in manifest.segments_in(range) {
            assert!(span.range.start <= span.range.end);
        }
    }
    if let Body::Segments(segments) = &manifest.body {
        for seg in segments {
            if let Ok(layout) = seg.layout() {
                let _ = layout.piece_len();
            }
            let ids = seg.ids();
            let _ = seg.info(&ids);
        }
    }
});
