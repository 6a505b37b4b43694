#!/usr/bin/env bash
# Runs the coverage-guided fuzz targets, each for a bounded time, and fails on the first crash
# (printing the crashing input in base64, so a CI log is enough to reproduce it).
#
#   bash fuzz/run.sh                      # every target, 60 s each
#   FUZZ_SECONDS=600 bash fuzz/run.sh sigv4
#
# Needs `cargo fuzz` (cargo install cargo-fuzz --version 0.13.2 --locked). Works on a stable
# toolchain: the targets are built with `--dev -s none` (no sanitizer, so no -Z flags; opt-level
# 1 from fuzz/Cargo.toml). The corpus grows in $FUZZ_WORK (default /tmp/kiln-fuzz), seeded from
# the repository's documents and signing test vectors; a crash is kept in $FUZZ_WORK/artifacts.

set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

SECONDS_PER_TARGET="${FUZZ_SECONDS:-60}"
WORK="${FUZZ_WORK:-${RUNNER_TEMP:-/tmp}/kiln-fuzz}"
ALL_TARGETS=(component_document sigv4)
TARGETS=("${@:-${ALL_TARGETS[@]}}")

seeds() {
    case "$1" in
        component_document) echo "tests/corpus/components" ;;
        sigv4) echo "crates/kiln-auth/tests/aws-signing-test-suite/v4" ;;
        *) echo "unknown fuzz target '$1' (targets: ${ALL_TARGETS[*]})" >&2; return 1 ;;
    esac
}

for target in "${TARGETS[@]}"; do
    seeds "$target" >/dev/null
done

# `cargo fuzz build` takes one target or all: build all once, then run each.
cargo fuzz build --dev -s none

status=0
for target in "${TARGETS[@]}"; do
    corpus="$WORK/corpus/$target"
    artifacts="$WORK/artifacts/$target/"
    mkdir -p "$corpus" "$artifacts"
    echo "fuzzing $target for ${SECONDS_PER_TARGET} s (corpus $corpus, seeds $(seeds "$target"))"
    # libFuzzer's line per new input is noise in a CI log; its summary and any crash are kept.
    set +e
    cargo fuzz run --dev -s none "$target" "$corpus" "$(seeds "$target")" -- \
        -max_total_time="$SECONDS_PER_TARGET" -artifact_prefix="$artifacts" \
        -print_final_stats=1 2>&1 | grep -vE '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse)|# Uses: '
    rc=${PIPESTATUS[0]}
    set -e
    if [ "$rc" -ne 0 ]; then
        status=1
        echo "FUZZ TARGET $target CRASHED; reproduce with:"
        for crash in "$artifacts"*; do
            [ -f "$crash" ] || continue
            echo "  echo '$(base64 -w0 "$crash")' | base64 -d > crash && cargo fuzz run --dev -s none $target crash"
        done
    fi
done
exit "$status"
