#!/usr/bin/env bash
# Runs each cargo-fuzz target for the given number of seconds, one after the
# other, on one core each (libFuzzer single process), and prints a summary:
# executions, coverage (cov = edges, ft = features), corpus size, crashes.
#
#   fuzz/run.sh <seconds> [target...]      (default: all targets)
#   FUZZ_ARGS="-len_control=0" fuzz/run.sh 600 parse   (extra libFuzzer flags)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). cargo-fuzz passes nightly
# flags (-Zsanitizer=address); on a stable toolchain RUSTC_BOOTSTRAP=1 lets
# them through, which this script sets. Corpora start from sip-fixtures/ and
# fuzz/seeds/ and grow in fuzz/corpus/<target>/ (not committed); crashes land
# in fuzz/artifacts/<target>/: copy each to sip-fixtures/fuzz/<target>/ (a
# regression fixture that tests/fuzz_regressions.rs replays), then fix it.
# Properties: fuzz/checks.rs. Logs: fuzz/logs/<target>.log.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:?usage: fuzz/run.sh <seconds> [target...]}
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(framing parse star_code)
export RUSTC_BOOTSTRAP=1

rfc=(../sip-fixtures/rfc4475/valid/* ../sip-fixtures/rfc4475/invalid/*)
seed() {
  local t=$1 dir=corpus/$1 f
  mkdir -p "$dir"
  case $t in
    parse)
      for f in "${rfc[@]}"; do cp -n "$f" "$dir/"; done ;;
    framing)
      # Two header bytes (size limit, chunking seed), then a stream: each
      # message alone, and all valid ones back to back with keep-alives.
      for f in "${rfc[@]}"; do { printf '\377\007'; cat "$f"; } >"$dir/$(basename "$f")"; done
      { printf '\377\003'; for f in ../sip-fixtures/rfc4475/valid/*; do cat "$f"; printf '\r\n\r\n'; done; } >"$dir/stream-all-valid"
      ;;
  esac
  # Hand-written seeds, and every crash found before (already in the
  # target's input format).
  for f in seeds/"$t"/* ../sip-fixtures/fuzz/"$t"/*; do [ -f "$f" ] && cp -n "$f" "$dir/"; done
  return 0
}

mkdir -p logs
cargo fuzz build >logs/build.txt 2>&1 || { cat logs/build.txt >&2; exit 1; }

summary=()
for t in "${targets[@]}"; do
  seed "$t"
  echo "== $t: ${secs}s" >&2
  rc=0
  cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -print_final_stats=1 \
    -max_len=8192 -timeout=10 -rss_limit_mb=1024 ${FUZZ_ARGS:-} >"logs/$t.log" 2>&1 || rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' | tail -1)
  last=$(grep -E '^#[0-9]+' "logs/$t.log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+' <<<"$last" | tail -1)
  ft=$(grep -oE 'ft: [0-9]+' <<<"$last" | tail -1)
  corp=$(grep -oE 'corp: [0-9]+' <<<"$last" | tail -1)
  crashes=$(find "artifacts/$t" -type f 2>/dev/null | wc -l)
  summary+=("$t: execs=${execs:-?} ${cov:-cov: ?} ${ft:-ft: ?} ${corp:-corp: ?} artifacts=$crashes exit=$rc")
done
printf '%s\n' "${summary[@]}"
