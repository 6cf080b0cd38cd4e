#!/usr/bin/env bash
# ThreadSanitizer lane over the concurrency tests: the GIL, the registry, the
# lifecycle (close, deferred close, runtime drop) and the module tables.
#
#   RUSTFLAGS=-Zsanitizer=thread cargo +nightly test -Zbuild-std \
#       --target x86_64-unknown-linux-gnu --test gil --test registry ...
#
# -Zbuild-std rebuilds std with the sanitizer, so std's own synchronization
# (Mutex, Condvar, Arc, channels, thread spawn/join) is instrumented and
# TSan sees every happens-before edge; without it, it reports false races.
# Needs a nightly toolchain with `rust-src` (installed here if missing).
# Exits non-zero on any report (halt_on_error) or test failure.
#
# Budget: about 6 minutes on 2 cores, build included (own target directory,
# target/tsan). Force the valgrind fallback (helgrind on the same binaries,
# plain debug build) with SANITIZER=helgrind, e.g. where no nightly exists.
set -euo pipefail
cd "$(dirname "$0")/.."

TESTS=(gil registry lifecycle module_table)
TEST_ARGS=()
for t in "${TESTS[@]}"; do TEST_ARGS+=(--test "$t"); done
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/tsan}"
TARGET=x86_64-unknown-linux-gnu

lane="${SANITIZER:-}"
if [[ -z "$lane" ]]; then
    if cargo +nightly --version >/dev/null 2>&1; then lane=tsan; else lane=helgrind; fi
fi

case "$lane" in
tsan)
    echo "== ThreadSanitizer lane ($(cargo +nightly --version))"
    if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src'; then
        rustup component add rust-src --toolchain nightly
    fi
    # --target keeps the sanitizer off build scripts and proc-macros.
    RUSTFLAGS="-Zsanitizer=thread -Cdebug-assertions=on" \
    TSAN_OPTIONS="halt_on_error=1:abort_on_error=1:second_deadlock_stack=1" \
        cargo +nightly test -Zbuild-std -p subinterp --target "$TARGET" "${TEST_ARGS[@]}" -- --test-threads=2
    ;;
helgrind)
    command -v valgrind >/dev/null || { echo "neither cargo +nightly nor valgrind is available" >&2; exit 2; }
    echo "== valgrind helgrind lane ($(valgrind --version))"
    pattern="/deps/($(IFS='|'; echo "${TESTS[*]}"))-[0-9a-f]+$"
    mapfile -t bins < <(cargo test -p subinterp --no-run --message-format=json "${TEST_ARGS[@]}" 2>/dev/null \
        | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | grep -E "$pattern")
    [[ ${#bins[@]} -eq ${#TESTS[@]} ]] || { echo "expected ${#TESTS[@]} test binaries, got ${#bins[@]}" >&2; exit 2; }
    for bin in "${bins[@]}"; do
        echo "-- $bin"
        valgrind --tool=helgrind --quiet --error-exitcode=1 "$bin" --test-threads=2
    done
    ;;
*)
    echo "unknown SANITIZER=$lane (tsan|helgrind)" >&2
    exit 2
    ;;
esac
echo "== thread sanitizer lane passed ($lane)"
