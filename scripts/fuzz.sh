#!/usr/bin/env bash
# Fuzzes every decoder of untrusted bytes (fuzz/fuzz_targets: node protocol messages, proofs,
# manifests, ledger statements, admin API bodies) with cargo-fuzz (libFuzzer, AddressSanitizer),
# SECONDS each (default 60). A crash stops the script and leaves its input in
# fuzz/artifacts/<target>/; `cargo fuzz run <target> <file>` replays it.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# The first run builds the workspace again with sanitizer flags (rocksdb included): expect
# 15-20 minutes on 2 cores before the first target starts.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-60}"
shift || true
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# cargo-fuzz passes nightly-only flags (-Zsanitizer); the stable toolchain takes them with this.
export RUSTC_BOOTSTRAP=1
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build
for t in "${targets[@]}"; do
    echo "=== $t (${secs} s)"
    mkdir -p "corpus/$t"
    cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=4096 -print_final_stats=1 2>&1 |
        grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==|SUMMARY|thread .* panicked|artifact_prefix|Test unit written)' || true
    if ls "artifacts/$t"/crash-* "artifacts/$t"/oom-* "artifacts/$t"/timeout-* >/dev/null 2>&1; then
        echo "fuzz: $t found an input that fails: see fuzz/artifacts/$t" >&2
        exit 1
    fi
done
echo "fuzz: every target ran ${secs} s without a failure"
