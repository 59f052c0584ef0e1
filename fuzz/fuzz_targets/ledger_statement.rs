//! Ledger statements as `gateway ledger --verify` and a node read them (JSON lines, or the
//! node's stored form): any bytes are a statement that verifies or is refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use storage_node::ledger::SignedStatement;

fuzz_target!(|data: &[u8]| {
    if let Ok(statement) = serde_json::from_slice::<SignedStatement>(data) {
        let _ = statement.verify();
        let _ = statement.statement.claimed();
        let _ = statement.statement.rule();
    }
    if let Ok((statement, _)) = postcard::take_from_bytes::<SignedStatement>(data) {
        let _ = statement.verify();
        let _ = statement.statement.rule();
    }
});
