#!/usr/bin/env bash
# Miri lane for the unsafe code: the unit tests of gc, mem, registry, interp
# and module, and tests/miri_paths.rs (dealloc with user code, collections,
# close with live objects, checked frees of own and foreign blocks), under
# Miri with tree borrows. Miri sees what the sanitizer lane cannot: aliasing
# violations, pointers used without provenance, reads of memory freed inside
# our own arenas, leaks of Rust-heap memory, data races.
#
# Runs (see docs/verification.md, "Miri"):
#   1. strict provenance (-Zmiri-strict-provenance): the tests that never
#      touch crossbeam-epoch (whose 0.9 API passes pointers as integers) nor
#      the checked free's exposed-provenance fast path: gc::items, gc::dict and the heap
#      on its own (mem::tests::arenas_..., mem::api, mem::stats);
#   2. every other unit test of those modules, permissive provenance;
#   3. the registry's racing-writers test again under MIRI_RACE_SEEDS (3)
#      more scheduler seeds;
#   4. tests/miri_paths.rs under MIRI_SEEDS (8) seeds, permissive provenance.
# Runs 2-4 are permissive only because of crossbeam-epoch and that one fast
# path: afterwards the log must show no integer-to-pointer cast in our own
# code but that one (`with_exposed_provenance_mut` in src/mem/heap.rs).
# The registry unit tests work around crossbeam-rs/crossbeam#545 (see
# `with_collector_dropped_last` in src/registry.rs).
#
# Budget: about 10 minutes on 2 cores including the build (the sysroot is
# built once per toolchain into ~/.cache/miri). Exits non-zero on any failure
# or undefined behaviour. MIRI_EXTRA_FLAGS adds flags to every run.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/miri}"
export CARGO_TERM_COLOR=never
export PROPTEST_CASES="${PROPTEST_CASES:-16}"

step() { printf -- '-- %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

step "toolchain: nightly with miri and rust-src"
installed="$(rustup component list --toolchain nightly --installed 2>/dev/null || true)"
if ! grep -q '^miri' <<<"$installed" || ! grep -q '^rust-src' <<<"$installed"; then
    rustup component add miri rust-src --toolchain nightly
fi
cargo +nightly miri --version
cargo +nightly miri setup >/dev/null

BASE="-Zmiri-tree-borrows -Zmiri-disable-isolation ${MIRI_EXTRA_FLAGS:-}"
SEEDS="${MIRI_SEEDS:-8}"
RACE_SEEDS="${MIRI_RACE_SEEDS:-3}"
STRICT=(gc::items gc::dict mem::tests::arenas_fill_drain_discard_and_serve_again mem::api:: mem::stats::)
skips=()
for t in "${STRICT[@]}"; do skips+=(--skip "$t"); done
log="$CARGO_TARGET_DIR/miri-lane.log"
mkdir -p "$CARGO_TARGET_DIR"
: >"$log"

miri() { # flags, cargo/test arguments...
    local flags="$1"
    shift
    MIRIFLAGS="$BASE $flags" cargo +nightly miri test --locked -p subinterp "$@" 2>&1 | tee -a "$log"
}

step "1/4 strict provenance: ${STRICT[*]}"
miri "-Zmiri-strict-provenance" --lib -- --test-threads=1 "${STRICT[@]}"

step "2/4 unit tests of gc, mem, registry, interp, module (permissive provenance)"
miri "" --lib -- --test-threads=1 gc:: mem:: registry:: interp:: module:: "${skips[@]}"

if [[ "$RACE_SEEDS" -gt 0 ]]; then
    step "3/4 racing registry writers, seeds 1..$RACE_SEEDS"
    miri "-Zmiri-many-seeds=1..$((RACE_SEEDS + 1))" --lib -- --test-threads=1 \
        registry::tests::concurrent_writers_with_tiny_chunks
fi

step "4/4 tests/miri_paths.rs, seeds 0..$((SEEDS - 1)) (permissive provenance)"
miri "-Zmiri-many-seeds=0..$SEEDS" --test miri_paths -- --test-threads=1

step "no integer-to-pointer cast in our code but the documented one"
# Miri warns once per cast site: the `-->` line names it, the next numbered
# line shows the code.
stray="$(awk '
    /warning: integer-to-pointer cast/ { w = 1; loc = ""; next }
    w && /-->/ { loc = $2; next }
    w && /^ *[0-9]+ \|/ {
        if (loc ~ /^(src|tests)\// && !(loc ~ /^src\/mem\/heap\.rs:/ && $0 ~ /with_exposed_provenance_mut::<u8>\(addr\)/))
            print loc ": " $0
        w = 0
    }' "$log")"
if [[ -n "$stray" ]]; then
    echo "integer-to-pointer casts in our code (derive the pointer from one with provenance):" >&2
    echo "$stray" >&2
    exit 1
fi

step "miri lane passed"
