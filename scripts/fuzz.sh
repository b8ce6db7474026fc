#!/usr/bin/env bash
# Fuzzes dropship's input handling: each target in fuzz/ (inventory, playbook, template) is
# built and run for SECONDS (default 60) in one libFuzzer process, then the next. Not part of CI.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Needs cargo-fuzz (installed from crates.io when missing). The toolchain is stable:
# RUSTC_BOOTSTRAP=1 lets it accept the -Z flags cargo-fuzz passes. Inputs that found new
# coverage go to fuzz/corpus/TARGET (kept between runs, not committed; the committed seeds are
# fuzz/seeds/TARGET); a crash is written to fuzz/artifacts/TARGET/ and stops the script:
# turn it into a regression test in the normal suite, then fix it.
set -euo pipefail

seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(inventory playbook template)

cd "$(dirname "$0")/../fuzz"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1

# No sanitizer (dropship is safe Rust: panics, overflows, stack overflows, hangs and memory
# blow-ups are what we look for) and debug assertions on, so arithmetic overflow panics.
flags=(--sanitizer none --debug-assertions)
cargo fuzz build "${flags[@]}"
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    echo "== $target: ${seconds}s"
    status=0
    cargo fuzz run "${flags[@]}" "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"corpus/$target.log" 2>&1 || status=$?
    # The last progress line and the final stats: executions, time, coverage.
    grep -E '^#[0-9]+' "corpus/$target.log" | tail -n 1 || true
    grep -E '^(stat::|Done [0-9]+ runs)' "corpus/$target.log" || true
    if [ "$status" -ne 0 ]; then
        grep -E 'panicked|ERROR|SUMMARY|Test unit written' "corpus/$target.log" >&2 || true
        echo "!! $target failed (exit $status): see fuzz/artifacts/$target/ and fuzz/corpus/$target.log" >&2
        exit "$status"
    fi
done
