//! A bucket's remote as the admin API takes it (`PUT /admin/v1/buckets/{b}/remote`): any JSON
//! body parses to a configuration that validates or is refused, never a panic.
#![no_main]

use gateway::hybrid::RemoteConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(config) = serde_json::from_slice::<RemoteConfig>(data) {
        let _ = config.validate();
    }
});
