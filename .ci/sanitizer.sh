#!/usr/bin/env bash
# Sanitizer lane for the unsafe code: every integration test binary (heap,
# collector, user code in dealloc/collection/close, modules, registry,
# lifecycle, GIL) and every unit test of the library.
#
# With a nightly toolchain: the allocator tests under AddressSanitizer
#   RUSTFLAGS=-Zsanitizer=address cargo +nightly test --target x86_64-unknown-linux-gnu --test mem_...
# Without one: the same test binaries (plain debug build) under valgrind memcheck.
# Exits non-zero on any sanitizer/valgrind error or test failure.
#
# Budget: about 8 minutes on 2 cores. Property-test cases default to 2,000
# under ASan (every property test: heap, collector, user code, API state machine) and 300 under valgrind (about 50x slower); override with
# PROPTEST_CASES. Force a lane with SANITIZER=asan|valgrind.
#
# Scope: ASan and memcheck see every access of the unsafe code to memory the
# heap did not map (overruns past an arena, the large-block path's system
# allocations, use after munmap) and, with memcheck, uses of uninitialized
# values. They do not see misuse *inside* an arena (the heap does not poison
# free blocks); the ownership check and the property tests cover that.
set -euo pipefail
cd "$(dirname "$0")/.."

# Every integration test binary (all of them touch the heap, the GIL or close;
# trybuild only compiles, loom needs its own cfg, and ulimit runs its cases
# under `ulimit -v`, which the sanitizer's shadow memory cannot live with).
TESTS=(mem_api mem_fragmentation mem_props registry lifecycle gil gc gc_api gc_props gc_incremental_props gc_user_code_props soundness
    objects heap_buffers module_import module_isolation module_table module_objects api_state_machine audit code_extra codecs)
TEST_ARGS=()
for t in "${TESTS[@]}"; do TEST_ARGS+=(--test "$t"); done
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target-sanitizer}"

lane="${SANITIZER:-}"
if [[ -z "$lane" ]]; then
    if cargo +nightly --version >/dev/null 2>&1; then lane=asan; else lane=valgrind; fi
fi

case "$lane" in
asan)
    echo "== AddressSanitizer lane ($(cargo +nightly --version))"
    export PROPTEST_CASES="${PROPTEST_CASES:-2000}"
    # --target keeps the sanitizer off build scripts and proc-macros.
    RUSTFLAGS="-Zsanitizer=address -Cdebug-assertions=on" \
    ASAN_OPTIONS="detect_leaks=1:detect_stack_use_after_return=1:abort_on_error=1:halt_on_error=1" \
        cargo +nightly test --offline -p subinterp --target x86_64-unknown-linux-gnu "${TEST_ARGS[@]}" -- --test-threads=2
    # Every unit test of the library.
    RUSTFLAGS="-Zsanitizer=address -Cdebug-assertions=on" \
    ASAN_OPTIONS="detect_leaks=1:detect_stack_use_after_return=1:abort_on_error=1:halt_on_error=1" \
        cargo +nightly test --offline -p subinterp --target x86_64-unknown-linux-gnu --lib -- --test-threads=2
    ;;
valgrind)
    command -v valgrind >/dev/null || { echo "neither cargo +nightly nor valgrind is available" >&2; exit 2; }
    echo "== valgrind memcheck lane ($(valgrind --version))"
    export PROPTEST_CASES="${PROPTEST_CASES:-300}"
    # Only the test binaries (cargo also builds the package's [[bin]] targets).
    pattern="/deps/($(IFS='|'; echo "${TESTS[*]}"))-[0-9a-f]+$"
    mapfile -t bins < <(cargo test --offline -p subinterp --no-run --message-format=json "${TEST_ARGS[@]}" 2>/dev/null \
        | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | grep -E "$pattern")
    [[ ${#bins[@]} -eq ${#TESTS[@]} ]] || { echo "expected ${#TESTS[@]} test binaries, got ${#bins[@]}" >&2; exit 2; }
    for bin in "${bins[@]}"; do
        echo "-- $bin"
        valgrind --quiet --error-exitcode=1 --errors-for-leak-kinds=definite --leak-check=full \
            --track-origins=yes "$bin" --test-threads=2
    done
    ;;
*)
    echo "unknown SANITIZER=$lane (asan|valgrind)" >&2
    exit 2
    ;;
esac
echo "== sanitizer lane passed ($lane)"
