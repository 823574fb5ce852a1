#!/usr/bin/env bash
# Instructions and allocations per call of the whole facd process, counted
# with callgrind (exact, unaffected by other load on the machine).
#
# Workload "changes": every call changes the state of the agent who dials it
# (each agent in turn dials *388000, *378000*1, *368000, *398000 in queue
# 8000, auto_ready: login to READY, not ready with a reason, ready, logout),
# durability on. Each run ends its log with the number of journal records,
# which must equal the calls. facd runs under callgrind twice, for CALLS_A and CALLS_B calls of SIPp's fac_load scenario
# over UDP at RATE calls/s; per call = (total B - total A) / (CALLS_B - CALLS_A),
# which removes start-up and shutdown. Each run idles IDLE s (default 40)
# after its calls, so that the transactions' timers expire within it.
#
#   benches/callgrind-call.sh                  # builds target/release/facd
#   FACD_BIN=path benches/callgrind-call.sh    # measures another build
#
# Prints "instructions_per_call N" and "allocations_per_call N" (calls to
# malloc, calloc, realloc, posix_memalign, aligned_alloc, and mimalloc's mi_*alloc*
# entry points, the binary's allocator). Needs valgrind and sipp.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CALLS_A=${CALLS_A:-200}
CALLS_B=${CALLS_B:-1000}
RATE=${RATE:-100}
IDLE=${IDLE:-40}   # seconds idle after the calls, so every transaction's Timer J/K expires inside the run
OUT=${OUT:-$ROOT/target/callgrind-call}
command -v valgrind >/dev/null || { echo "callgrind-call: valgrind is needed" >&2; exit 1; }
command -v sipp >/dev/null || { echo "callgrind-call: sipp is needed (apt-get install sip-tester)" >&2; exit 1; }
if [ -z "${FACD_BIN:-}" ]; then
  (cd "$ROOT" && cargo build --release --quiet)
  FACD_BIN=$ROOT/target/release/facd
fi
rm -rf "$OUT"; mkdir -p "$OUT"
port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# 250 agents in queue 8000, each dialling the four codes in turn.
{
  echo SEQUENTIAL
  for a in $(seq 1000 1249); do
    for c in '*388000' '*378000*1' '*368000' '*398000'; do echo "$a;$c"; done
  done
} >"$OUT/changes.csv"

run() { # calls -> total instructions and allocations, one line
  local calls=$1 sip http dir
  sip=$(port); http=$(port); dir=$OUT/run-$calls
  mkdir -p "$dir/state"
  {
    cat <<TOML
[sip]
listen = ["udp:127.0.0.1:$sip"]
confirm_ms = 2000
[http]
listen = "127.0.0.1:$http"
[auth]
required = false
[limits]
exempt_sources = ["127.0.0.1"]
[storage]
dir = "$dir/state"
sync = true
[[reasons]]
code = 1
name = "BREAK"
[[queues]]
number = "8000"
name = "Sales"
auto_ready = true
TOML
    for a in $(seq 1000 1249); do printf '[[agents]]\nextension = "%s"\nname = "Agent %s"\nqueues = ["8000"]\n' "$a" "$a"; done
  } >"$dir/facd.toml"
  RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" \
    "$FACD_BIN" --config "$dir/facd.toml" >"$dir/facd.log" 2>&1 &
  local pid=$!
  local ok=0
  for _ in $(seq 120); do
    if grep -q "facd listening" "$dir/facd.log" 2>/dev/null; then ok=1; break; fi
    sleep 0.5
  done
  [ $ok = 1 ] || { cat "$dir/facd.log" >&2; kill $pid; echo "callgrind-call: facd did not start" >&2; exit 1; }
  sipp -sf "$ROOT/sip-fixtures/sipp/fac_load.xml" -inf "$OUT/changes.csv" -i 127.0.0.1 \
    -r "$RATE" -m "$calls" -l 200 -nostdin -bg -trace_stat -stf "$dir/stat.csv" \
    "127.0.0.1:$sip" >/dev/null 2>&1 || true
  # sipp -bg returns at once: wait for it to finish its calls.
  while pgrep -f "sipp -sf $ROOT/sip-fixtures/sipp/fac_load.xml.*127.0.0.1:$sip" >/dev/null; do sleep 0.5; done
  sleep "$IDLE"
  kill -TERM $pid; wait $pid || true
  python3 - "$dir/cg.out" "$dir/stat.csv" <<'PY'
import sys, csv
names, total, allocs, appends, cur_cfn = {}, 0, 0, 0, None
# glibc's entry points, and mimalloc's as the Rust allocator calls them.
ALLOC = {"malloc", "calloc", "realloc", "posix_memalign", "aligned_alloc",
         "mi_malloc_aligned", "mi_zalloc_aligned", "mi_realloc_aligned", "mi_malloc", "mi_zalloc", "mi_realloc"}
def name(v):
    v = v.strip()
    if v.startswith("("):
        i = v.index(")")
        k, rest = v[1:i], v[i + 1:].strip()
        if rest:
            names[k] = rest
        return names.get(k, "")
    return v
for line in open(sys.argv[1], errors="replace"):
    if line.startswith(("fn=", "cfn=")):
        n = name(line.split("=", 1)[1])
        cur_cfn = n if line.startswith("cfn=") else None
    elif line.startswith("calls=") and cur_cfn is not None:
        if cur_cfn in ALLOC:
            allocs += int(line[6:].split()[0])
        elif cur_cfn == "facd::engine::record::encode":
            appends += int(line[6:].split()[0])
        cur_cfn = None
    elif line.startswith(("summary:", "totals:")):
        total = max(total, int(line.split()[1]))
rows = list(csv.reader(open(sys.argv[2]), delimiter=";"))
h = rows[0]; last = rows[-1]
ok = int(last[h.index("SuccessfulCall(C)")]); failed = int(last[h.index("FailedCall(C)")])
print(total, allocs, ok, failed, appends)
PY
}
read -r ia aa oka fa ja < <(run "$CALLS_A")
read -r ib ab okb fb jb < <(run "$CALLS_B")
echo "run A: $oka calls ok, $fa failed, $ja journal records, $ia instructions, $aa allocations"
echo "run B: $okb calls ok, $fb failed, $jb journal records, $ib instructions, $ab allocations"
[ "$fa" = 0 ] && [ "$fb" = 0 ] || echo "callgrind-call: warning: failed calls" >&2
# Every call of the workload is a change: one journal record encoded each
# (the core loop hands a turn's records to the store as one batch, and group
# commit batches them again there).
[ "$ja" -ge "$oka" ] && [ "$jb" -ge "$okb" ] || echo "callgrind-call: warning: not every call was a journaled change" >&2
n=$((okb - oka))
echo "instructions_per_call $(( (ib - ia) / n ))"
echo "allocations_per_call $(python3 -c "print(round(($ab - $aa) / $n, 1))")"
