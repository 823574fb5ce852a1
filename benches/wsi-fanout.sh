#!/usr/bin/env bash
# WSI and feature-key fan-out benchmark (issue 6 item 7, issue 13 item 4;
# not a test): SIPp drives RATE star-code calls/s that each change one
# agent's state in queue 8000, while examples/wsi_fanout.rs holds SUBS
# WebSocket subscribers (WALLBOARDS on queue 8000, the rest on one desk
# agent's extension each, plus STALLED that never read) and FKEYS SIP
# subscriptions with Event: as-feature-event (the phones' ACD key; the 10
# probe agents' first, the rest spread over the load's agents), and sends
# probe star codes to time 200 OK -> WSI event and 200 OK -> NOTIFY. The
# same run is done twice on a fresh facd: without subscribers (baseline) and
# with both kinds; facd's CPU during the SIPp load is compared as a ratio
# and per call.
#
# The load's agents are in queues 8000 and 8001 and toggle 8000 only; their
# ACD key shows one state for all queues (ready anywhere = ready), so with
# FKEYS > 0 both phases first put them not ready in 8001 (*378001), else
# their keys would never change.
#
#   benches/wsi-fanout.sh                       # RATE=5000 DUR=20 SUBS=1000 WALLBOARDS=10 STALLED=5 FKEYS=100
#   RATE=1000 DUR=5 SUBS=100 FKEYS=100 benches/wsi-fanout.sh
#   FKEYS=0 WALLBOARDS=2 CLIENT_CPU=0 benches/wsi-fanout.sh   # WSI only
#
# Builds into CARGO_TARGET_DIR (default target/). Output:
# target/wsi-fanout/report.txt and the logs of each phase.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-$ROOT/target/wsi-fanout}
RATE=${RATE:-5000}
DUR=${DUR:-20}
SUBS=${SUBS:-1000}
WALLBOARDS=${WALLBOARDS:-10}
STALLED=${STALLED:-5}
FKEYS=${FKEYS:-100}
PROBE_RATE=${PROBE_RATE:-50}
FACD_SYNC=${FACD_SYNC:-true}
SIPP_CPU=${SIPP_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0,1}     # the subscribers' process (not pinned by default)
TOKEN=bench-admin-token

log() { echo "== $*" >&2; }
die() { echo "wsi-fanout: $*" >&2; exit 1; }
command -v sipp >/dev/null || die "needs sipp (apt-get install -y sip-tester)"
mkdir -p "$OUT"
REPORT=$OUT/report.txt

log "building facd and the client (release)"
(cd "$ROOT" && cargo build --release --quiet --bin facd --example wsi_fanout) || die "build failed"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
FACD=$TARGET/release/facd
CLIENT=$TARGET/release/examples/wsi_fanout

freeport() { python3 -c 'import socket,sys;s=socket.socket(socket.AF_INET,getattr(socket,sys.argv[1]));s.bind(("127.0.0.1",0));print(s.getsockname()[1])' "$1"; }

cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
rss_mb() { awk '$1 == "VmRSS:" {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

# Agents 1000..1999 (queue 8000 and 8001) for SIPp, probes 2000..2009 (8000).
# park.csv: the load's agents not ready in 8001 (see the header).
python3 - "$OUT" "$FACD_SYNC" "$TOKEN" <<'EOF'
import sys
out, sync, token = sys.argv[1:4]
o = ['[sip]\nlisten = ["udp:127.0.0.1:SIPPORT"]\ndomain = "127.0.0.1"\nconfirm_ms = 2000\nudp_recv_buffer_bytes = 4194304\n',
     '[auth]\nrequired = false\n', f'[storage]\ndir = "DATADIR"\nsync = {sync}\n',
     '[http]\nlisten = "127.0.0.1:HTTPPORT"\n',
     f'[[api_users]]\nname = "admin"\ntoken = "{token}"\nrole = "admin"\n']
for q in (8000, 8001):
    o.append(f'[[queues]]\nnumber = "{q}"\nname = "Bench {q}"\n')
for a in range(1000, 2000):
    o.append(f'[[agents]]\nextension = "{a}"\nname = "Agent {a}"\nqueues = ["8000", "8001"]\n')
for a in range(2000, 2010):
    o.append(f'[[agents]]\nextension = "{a}"\nname = "Probe {a}"\nqueues = ["8000"]\n')
open(f"{out}/facd.toml.in", "w").write("\n".join(o))
with open(f"{out}/login.csv", "w") as f:
    f.write("SEQUENTIAL\n")
    for a in range(1000, 2000):
        f.write(f"{a};*38\n")
with open(f"{out}/park.csv", "w") as f:
    f.write("SEQUENTIAL\n")
    for a in range(1000, 2000):
        f.write(f"{a};*378001\n")
# Each call changes state: every agent alternates not ready / ready in 8000.
with open(f"{out}/toggle.csv", "w") as f:
    f.write("SEQUENTIAL\n")
    for code in ("*378000", "*368000"):
        for a in range(1000, 2000):
            f.write(f"{a};{code}\n")
EOF

FACD_PID=
CLIENT_PID=
cleanup() {
  [ -n "$CLIENT_PID" ] && kill "$CLIENT_PID" 2>/dev/null
  [ -n "$FACD_PID" ] && kill "$FACD_PID" 2>/dev/null
  wait 2>/dev/null
}
trap cleanup EXIT

sipp_run() { # dir csv rate calls
  local d=$1 csv=$2 rate=$3 calls=$4
  mkdir -p "$d"
  (cd "$d" && timeout -k 5 $((calls / rate * 3 + 60)) taskset -c "$SIPP_CPU" sipp "127.0.0.1:$SIP_PORT" \
      -sf "$ROOT/sip-fixtures/sipp/fac_load.xml" -inf "$csv" -i 127.0.0.1 -p "$(freeport SOCK_DGRAM)" \
      -r "$rate" -m "$calls" -l $((rate * 2 + 100)) -nostdin -max_recv_loops 10000 -max_sched_loops 10000 \
      -buff_size 4194304 -trace_stat -stf stat.csv -fd 1 -timeout $((calls / rate * 3 + 30)) -timeout_error \
      >sipp.log 2>&1)
  python3 - "$d/stat.csv" <<'EOF'
import csv, sys
rows = list(csv.reader(open(sys.argv[1]), delimiter=";"))
h, last = rows[0], rows[-1]
print(last[h.index("SuccessfulCall(C)")], last[h.index("FailedCall(C)")])
EOF
}

phase() { # name subs wallboards stalled fkeys
  local name=$1 subs=$2 walls=$3 stalled=$4 fkeys=$5 d=$OUT/$1
  rm -rf "$d"; mkdir -p "$d"
  SIP_PORT=$(freeport SOCK_DGRAM); HTTP_PORT=$(freeport SOCK_STREAM)
  sed -e "s/SIPPORT/$SIP_PORT/" -e "s/HTTPPORT/$HTTP_PORT/" -e "s#DATADIR#$d/data#" "$OUT/facd.toml.in" >"$d/facd.toml"
  RUST_LOG=warn taskset -c "$SERVER_CPU" "$FACD" --config "$d/facd.toml" >"$d/facd.out" 2>"$d/facd.err" &
  FACD_PID=$!
  for _ in $(seq 100); do grep -q "^facd listening" "$d/facd.out" 2>/dev/null && break; sleep 0.1; done
  grep -q "^facd listening" "$d/facd.out" || die "facd did not start (see $d/facd.err)"
  read -r ok failed < <(sipp_run "$d/login" "$OUT/login.csv" 1000 1000)
  log "$name: login pass ok=$ok failed=$failed"
  if [ "$FKEYS" -gt 0 ]; then
    read -r ok failed < <(sipp_run "$d/park" "$OUT/park.csv" 1000 1000)
    log "$name: not ready in 8001 pass ok=$ok failed=$failed"
  fi
  rm -f "$d/ready" "$d/stop"
  HTTP=127.0.0.1:$HTTP_PORT SIP=127.0.0.1:$SIP_PORT TOKEN=$TOKEN SUBS=$subs WALLBOARDS=$walls STALLED=$stalled FKEYS=$fkeys \
    DUR=$((DUR + 2)) PROBE_RATE=$PROBE_RATE READY_FILE=$d/ready STOP_FILE=$d/stop \
    taskset -c "$CLIENT_CPU" "$CLIENT" >"$d/client.out" 2>"$d/client.err" &
  CLIENT_PID=$!
  for _ in $(seq 600); do [ -f "$d/ready" ] && break; kill -0 "$CLIENT_PID" 2>/dev/null || break; sleep 0.1; done
  [ -f "$d/ready" ] || die "$name: the client did not get ready (see $d/client.err)"
  local rss0 c0 c1 rss1
  rss0=$(rss_mb "$FACD_PID"); c0=$(cpu_ticks "$FACD_PID")
  read -r ok failed < <(sipp_run "$d/load" "$OUT/toggle.csv" "$RATE" $((RATE * DUR)))
  c1=$(cpu_ticks "$FACD_PID"); rss1=$(rss_mb "$FACD_PID")
  touch "$d/stop"
  wait "$CLIENT_PID"; CLIENT_PID=
  kill "$FACD_PID"; wait "$FACD_PID" 2>/dev/null; FACD_PID=
  local tck; tck=$(getconf CLK_TCK)
  echo "$name ok=$ok failed=$failed facd_cpu_s=$(python3 -c "print(round(($c1-$c0)/$tck,2))") rss_before_mb=$rss0 rss_after_mb=$rss1 $(tr '\n' ' ' <"$d/client.out" | sed 's/READY //')" \
    | tee -a "$OUT/summary.txt"
}

: >"$OUT/summary.txt"
{
  echo "facd WSI fan-out benchmark  $(date -u +%FT%TZ)  $(nproc --all) CPUs  load avg $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)  RATE=$RATE DUR=$DUR SUBS=$SUBS WALLBOARDS=$WALLBOARDS STALLED=$STALLED FKEYS=$FKEYS PROBE_RATE=$PROBE_RATE sync=$FACD_SYNC"
} | tee "$REPORT"
phase baseline 0 0 0 0 | tee -a "$REPORT"
phase fanout "$SUBS" "$WALLBOARDS" "$STALLED" "$FKEYS" | tee -a "$REPORT"
python3 - "$OUT/summary.txt" "$FKEYS" <<'EOF' | tee -a "$REPORT"
import sys
runs = {l.split()[0]: dict(x.split("=", 1) for x in l.split()[1:] if "=" in x) for l in open(sys.argv[1])}
fkeys = int(sys.argv[2])
b, f = runs.get("baseline", {}), runs.get("fanout", {})
try:
    print(f"facd CPU during the load, with subscribers / without: {float(f['facd_cpu_s']) / float(b['facd_cpu_s']):.2f}x "
          f"({f['facd_cpu_s']} s / {b['facd_cpu_s']} s)")
except (KeyError, ValueError, ZeroDivisionError):
    print("CPU ratio: n/a")
def per_call(r):
    try:
        return f"{float(r['facd_cpu_s']) * 1e6 / (int(r['ok']) + int(r.get('sent', 0))):.1f}"
    except (KeyError, ValueError, ZeroDivisionError):
        return "n/a"
print(f"facd CPU per call (SIPp ok + probes): {per_call(f)} us with subscribers, {per_call(b)} us without")
print(f"200 OK -> event at a subscriber: p50 {f.get('p50_ms')} ms, p99 {f.get('p99_ms')} ms, max {f.get('max_ms')} ms "
      f"({f.get('samples')} samples; target p99 <= 50 ms)")
if fkeys > 0:
    # Each SIPp call changes one of 1,000 agents' key (CSV in order).
    try:
        expected = f"~{int(f['ok']) * int(f['fk_on_load']) // 1000}"
    except (KeyError, ValueError):
        expected = "n/a"
    print(f"200 OK -> NOTIFY on a feature-key subscription: p50 {f.get('fk_p50_ms')} ms, p99 {f.get('fk_p99_ms')} ms, "
          f"max {f.get('fk_max_ms')} ms ({f.get('fk_samples')} samples, {f.get('fk_missed')} missed; target p99 <= 50 ms)")
    print(f"feature-key subscriptions {f.get('fk_subs')} ({f.get('fk_on_probes')} on probe agents, {f.get('fk_on_load')} on the load's); "
          f"NOTIFYs of the load's changes {f.get('fk_load_notifies')} (expected {expected}); repeated states {f.get('fk_repeats')}; "
          f"unclaimed probe-agent NOTIFYs {f.get('fk_unmatched')}; ended by facd early {f.get('fk_closed_early')}; "
          f"errors {f.get('fk_errors')}; unsubscribed at the end {f.get('fk_unsubscribed')}")
print(f"sessions that lagged (got a snapshot) {f.get('lagged_sessions')}; closed by facd before the end (not counting STALLED) {f.get('closed_early')}; missed events among those that kept up {f.get('repeated_states_kept_up')}; "
      f"wallboard deltas min {f.get('wallboard_deltas_min')} max {f.get('wallboard_deltas_max')} "
      f"(SIPp ok {f.get('ok')} + probes {f.get('sent')})")
EOF
echo "load avg at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on this machine skews absolute figures; the ratio is within one run)" | tee -a "$REPORT"
