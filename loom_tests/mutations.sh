#!/usr/bin/env bash
# The mutation check: every known-bad change to a lock-free protocol must be
# caught by a loom model.
#
# Each mutation is a run-time switch that exists only in loom builds
# (`crate::sync::mutation`, read from SUBINTERP_LOOM_MUTATION; see the list in
# src/sync.rs). One loom build serves every run. For each mutation this runs
# the models that must kill it and fails unless each of them FAILS; it also
# runs those models unmutated and fails unless they pass.
#
#   bash loom_tests/mutations.sh            # LOOM_MAX_PREEMPTIONS=2 by default
#   LOOM_MAX_PREEMPTIONS=3 bash loom_tests/mutations.sh
set -euo pipefail
cd "$(dirname "$0")/.."

export RUSTFLAGS="--cfg loom --cfg crossbeam_loom"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/loom}"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}"
export RUST_BACKTRACE=0
# A killed mutation must be killed promptly; a run that takes longer counts as
# a survivor.
limit="${MUTATION_TIMEOUT:-300}"

# mutation -> the models that must kill it
kills=(
  "no_notify                 gil::mutual_exclusion_and_no_lost_wakeup"
  "ignore_close_request      registry::decref_while_a_thread_is_inside_closes_on_exit gil::shared_gil_excludes_and_runs_a_deferred_close"
  "no_priority               gil::a_returning_thread_gets_the_gil_among_three"
  "no_forced_switch          gil::drop_request_and_forced_switch"
  "pending_relaxed_push      pending::calls_added_while_draining_run_exactly_once"
  "pending_close_no_sentinel pending::a_call_racing_close_either_runs_or_is_refused"
  "registry_no_freeze        registry::an_emptied_slot_races_an_insert"
  "module_relaxed_publish    module::table_growth_and_removal_while_another_thread_looks_up"
  "main_close_unseen         registry::main_close_races_a_create"
  "audit_relaxed_publish     audit::audit_hook_append_races_dispatch"
  "code_extra_racy_index     audit::code_extra_indexes_from_two_threads"
)

# Every mutation point the crate knows has a row here (and no row is stale).
known=$(sed -n '/const KNOWN: &\[&str\] = &\[/,/\];/p' src/sync.rs | grep -o '"[a-z_]*"' | tr -d '"' | sort)
listed=$(for row in "${kills[@]}"; do echo "${row%% *}"; done | sort)
if [ "$known" != "$listed" ]; then
  echo "mutations.sh and src/sync.rs disagree on the mutation list:" >&2
  diff <(echo "$known") <(echo "$listed") >&2 || true
  exit 1
fi

bin=$(cargo test --release -p subinterp --test loom --no-run --message-format=json 2>/dev/null |
  grep '"kind":\["test"\]' | grep '"name":"loom"' |
  grep -o '"executable":"[^"]*"' | tail -1 | sed 's/"executable":"\(.*\)"/\1/')
[ -x "$bin" ] || { echo "loom test binary not found" >&2; exit 1; }
logs="$CARGO_TARGET_DIR/mutations"
mkdir -p "$logs"

run() { # mutation model -> exit status of the model run
  local m="$1" model="$2"
  SUBINTERP_LOOM_MUTATION="$m" timeout "$limit" "$bin" --exact "$model" --test-threads=1 \
    >"$logs/${m:-none}--${model//::/-}.log" 2>&1
}

status=0
declare -A checked
for row in "${kills[@]}"; do
  read -r m models <<<"$row"
  for model in $models; do
    if [ -z "${checked[$model]:-}" ]; then
      checked[$model]=1
      start=$SECONDS
      if run "" "$model" 2>/dev/null; then
        printf '%-26s %-70s passes (%ds)\n' "(none)" "$model" $((SECONDS - start))
      else
        printf '%-26s %-70s FAILS UNMUTATED (%ds)\n' "(none)" "$model" $((SECONDS - start))
        status=1
      fi
    fi
    start=$SECONDS
    set +e
    run "$m" "$model" 2>/dev/null
    rc=$?
    set -e
    if [ "$rc" -eq 124 ]; then
      printf '%-26s %-70s SURVIVED (timed out after %ss)\n' "$m" "$model" "$limit"
      status=1
    elif [ "$rc" -eq 0 ]; then
      printf '%-26s %-70s SURVIVED (the model passed)\n' "$m" "$model"
      status=1
    else
      log="$logs/$m--${model//::/-}.log"
      why=$(grep -m1 -E "^deadlock|Causality violation|leaked|^thread .* panicked at loom_tests" "$log" | cut -c1-110 || true)
      [ -n "$why" ] || why=$(grep -m1 -A1 "panicked at" "$log" | tail -1 | cut -c1-110 || true)
      [ "$rc" -gt 128 ] && why="$why (ended by signal $((rc - 128)))"
      printf '%-26s %-70s killed (%ds): %s\n' "$m" "$model" $((SECONDS - start)) "$why"
    fi
  done
done
if [ "$status" -ne 0 ]; then
  echo "mutation check FAILED (logs in $logs)" >&2
else
  echo "mutation check passed: every mutation killed by every model listed for it"
fi
exit "$status"
