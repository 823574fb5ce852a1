#!/usr/bin/env bash
# Whole-server load benchmark: SIPp (CPU 0) against facd, Kamailio and a
# trivial C responder (each pinned to CPU 1), same scenario, same run, on
# 127.0.0.1 only. Prints calls/s, failed calls, p50/p99 INVITE->200 and
# server CPU microseconds per call, then facd's ratios to the anchors; then
# facd's resident memory and start-up time with 100,000 agents.
#
#   benches/sipp-load.sh                 # RATES="5000 10000 20000 30000 35000" DUR=20
#   QUICK=1 benches/sipp-load.sh         # one low rate for 3 s (smoke run)
#   SERVERS="facd" RATES=20000 benches/sipp-load.sh
#   FACD_SYNC=false ...                  # durability off (journal written, never fsynced)
#
# Needs: sipp (sip-tester), kamailio, cc, python3, taskset. Installs the
# Debian packages it is missing (run as root). Anchors: ../shared/anchors/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ANCHORS=${ANCHORS:-$ROOT/../shared/anchors/kamailio}
OUT=$ROOT/target/sipp-load
RATES=${RATES:-"5000 10000 20000 30000 35000"}
DUR=${DUR:-20}
SERVERS=${SERVERS:-"facd kamailio trivial"}
if [ -n "${QUICK:-}" ]; then RATES=${RATES_QUICK:-2000}; DUR=3; fi
mkdir -p "$OUT"
rm -f "$OUT"/*.csv "$OUT"/*.log

need=()
command -v sipp >/dev/null || need+=(sip-tester)
command -v kamailio >/dev/null || need+=(kamailio)
command -v taskset >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; fi
sysctl -qw net.core.rmem_max=8388608 net.core.wmem_max=8388608 2>/dev/null || true

PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; pkill -f "kamailio -f $OUT/" 2>/dev/null || true; }
trap cleanup EXIT

cargo build --release --quiet
FACD=$ROOT/target/release/facd
SCEN=$ROOT/sip-fixtures/sipp/fac_load.xml
CSV=$ROOT/sip-fixtures/sipp/load_agents.csv
TICK=$(getconf CLK_TCK)

# CPU seconds (utime+stime) of a process and its children threads/processes.
cpu_of() { # pids...
  local t=0
  for p in "$@"; do
    [ -r /proc/$p/stat ] || continue
    t=$((t + $(awk '{print $14+$15}' /proc/$p/stat)))
  done
  echo "$t"
}

wait_options() { # port -> seconds until an OPTIONS is answered (or fails after 10 s)
  python3 - "$1" <<'PY'
import socket, sys, time
port = int(sys.argv[1]); t0 = time.monotonic()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); s.settimeout(0.01)
lp = s.getsockname()[1]; n = 0
while time.monotonic() - t0 < 10:
    n += 1
    m = (f"OPTIONS sip:ping@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{lp};branch=z9hG4bK-w{n};rport\r\n"
         f"From: <sip:w@127.0.0.1>;tag=w\r\nTo: <sip:ping@127.0.0.1>\r\nCall-ID: w{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
    s.sendto(m.encode(), ("127.0.0.1", port))
    try:
        d, _ = s.recvfrom(65536)
        if d.startswith(b"SIP/2.0 200"):
            print(f"{time.monotonic() - t0:.3f}"); sys.exit(0)
    except socket.timeout:
        pass
print("timeout"); sys.exit(1)
PY
}

facd_config() { # port agents queues_per_agent file
  python3 - "$@" <<'PY'
import sys
port, agents, per, path = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
sync = sys.argv[5] if len(sys.argv) > 5 else "true"
out = [f'[sip]\nlisten = ["udp:127.0.0.1:{port}"]\ndomain = "bench.local"\nconfirm_ms = 5000\n',
       '[auth]\nrequired = false\n', f'[storage]\ndir = "{path}.data"\nsync = {sync}\n']
for q in range(8000, 8005):
    out.append(f'[[queues]]\nnumber = "{q}"\nname = "Q{q}"\n')
for a in range(1000, 1000 + agents):
    qs = ", ".join(f'"{8000 + i}"' for i in range(per))
    out.append(f'[[agents]]\nextension = "{a}"\nname = "Agent {a}"\nqueues = [{qs}]\n')
open(path, "w").write("\n".join(out))
PY
}

start_server() { # name port -> sets SPID, SPIDS
  local name=$1 port=$2
  case $name in
    facd)
      rm -rf "$OUT/facd.toml.data"
      facd_config "$port" 1000 5 "$OUT/facd.toml" "${FACD_SYNC:-true}"
      RUST_LOG=warn taskset -c 1 "$FACD" --config "$OUT/facd.toml" >"$OUT/facd.out" 2>"$OUT/facd.err" &
      SPID=$!; PIDS+=("$SPID") ;;
    kamailio)
      sed "s/127.0.0.1:5070/127.0.0.1:$port/; s|unix:/tmp/kamailio_ctl|unix:$OUT/kamailio_ctl|" "$ANCHORS/kamailio.cfg" >"$OUT/kamailio.cfg"
      mkdir -p "$OUT/kamrun"
      taskset -c 1 kamailio -f "$OUT/kamailio.cfg" -A WORKERS=2 -DD -E -m 256 -M 16 -P "$OUT/kam.pid" -Y "$OUT/kamrun" >"$OUT/kamailio.log" 2>&1 &
      SPID=$!; PIDS+=("$SPID") ;;
    trivial)
      cc -O2 -o "$OUT/trivial_responder" "$ANCHORS/trivial_responder.c"
      taskset -c 1 "$OUT/trivial_responder" "$port" >/dev/null 2>&1 &
      SPID=$!; PIDS+=("$SPID") ;;
  esac
  wait_options "$port" >/dev/null || { echo "$name did not answer OPTIONS on $port" >&2; exit 1; }
}

server_pids() { echo "$SPID $(pgrep -P "$SPID" 2>/dev/null | tr '\n' ' ')"; }

run_sipp() { # port rate dur csv tag -> prints "ok failed p50 p99 sipp_cpu"
  local port=$1 rate=$2 dur=$3 csv=$4 tag=$5
  local m=$((rate * dur)) l=$((rate * 2 + 100))
  local before_cpu
  (cd "$OUT" && taskset -c 0 sipp "127.0.0.1:$port" -sf "$SCEN" -inf "$csv" -i 127.0.0.1 -p 0 \
      -r "$rate" -m "$m" -l "$l" -nostdin -max_recv_loops 10000 -max_sched_loops 10000 \
      -buff_size 4194304 -trace_stat -stf "$tag.stat.csv" -trace_rtt -rtt_freq 1 \
      -timeout $((dur + 30)) -timeout_error >"$tag.sipp.log" 2>&1) || true
  python3 - "$OUT/$tag.stat.csv" "$OUT" "$tag" <<'PY'
import csv, glob, sys
stat, out, tag = sys.argv[1:4]
rows = list(csv.reader(open(stat), delimiter=";"))
h, last = rows[0], rows[-1]
col = lambda n: last[h.index(n)]
ok, failed = int(col("SuccessfulCall(C)")), int(col("FailedCall(C)"))
rtts = []
for f in glob.glob(f"{out}/fac_load_*_rtt.csv"):
    for r in list(csv.reader(open(f), delimiter=";"))[1:]:
        if len(r) >= 3 and r[2].strip() == "inv":
            rtts.append(float(r[1]))
rtts.sort()
pct = lambda p: rtts[min(len(rtts) - 1, int(len(rtts) * p))] if rtts else float("nan")
print(ok, failed, f"{pct(0.5):.2f}", f"{pct(0.99):.2f}")
PY
  rm -f "$OUT"/fac_load_*_rtt.csv
}

port_of() { case $1 in facd) echo 15060;; kamailio) echo 15070;; trivial) echo 15080;; esac; }

declare -A CPU_US
printf '%-9s %7s %9s %8s %8s %9s %10s\n' server rate "calls/s" failed "p50 ms" "p99 ms" "cpu us/call" | tee "$OUT/summary.txt"
for srv in $SERVERS; do
  port=$(port_of "$srv")
  start_server "$srv" "$port"
  if [ "$srv" = facd ]; then
    # Log every agent in once, so that each code of the anchors' CSV applies.
    { echo SEQUENTIAL; for a in $(seq 1000 1999); do echo "$a;*38"; done; } >"$OUT/login.csv"
    run_sipp "$port" 2000 1 "$OUT/login.csv" login >/dev/null
  fi
  for rate in $RATES; do
    pids=$(server_pids)
    c0=$(cpu_of $pids); t0=$(date +%s.%N)
    read -r ok failed p50 p99 < <(run_sipp "$port" "$rate" "$DUR" "$CSV" "$srv-$rate")
    c1=$(cpu_of $pids); t1=$(date +%s.%N)
    us=$(python3 -c "print(f'{($c1-$c0)/$TICK*1e6/max($ok,1):.1f}')")
    cps=$(python3 -c "print(round($ok/$DUR))")
    CPU_US[$srv-$rate]=$us
    printf '%-9s %7s %9s %8s %8s %9s %10s\n' "$srv" "$rate" "$cps" "$failed" "$p50" "$p99" "$us" | tee -a "$OUT/summary.txt"
  done
  kill "$SPID" 2>/dev/null || true; wait "$SPID" 2>/dev/null || true
  pkill -f "kamailio -f $OUT/" 2>/dev/null || true
  sleep 1
done

echo | tee -a "$OUT/summary.txt"
for rate in $RATES; do
  f=${CPU_US[facd-$rate]:-}; k=${CPU_US[kamailio-$rate]:-}; t=${CPU_US[trivial-$rate]:-}
  [ -n "$f" ] || continue
  line="rate $rate: facd cpu/call"
  [ -n "$k" ] && line+=" = $(python3 -c "print(f'{$f/$k:.2f}')")x kamailio"
  [ -n "$t" ] && line+=", $(python3 -c "print(f'{$f/$t:.2f}')")x trivial responder"
  echo "$line" | tee -a "$OUT/summary.txt"
done

if [[ " $SERVERS " == *" facd "* ]]; then
  rm -rf "$OUT/facd-100k.toml.data"
  facd_config 15061 100000 5 "$OUT/facd-100k.toml"
  t0=$(date +%s.%N)
  RUST_LOG=warn "$FACD" --config "$OUT/facd-100k.toml" >/dev/null 2>"$OUT/facd-100k.err" &
  BIG=$!; PIDS+=("$BIG")
  up=$(wait_options 15061)
  rss=$(awk '/VmRSS/{print $2/1024 " MiB"}' /proc/$BIG/status)
  hwm=$(awk '/VmHWM/{print $2/1024 " MiB"}' /proc/$BIG/status)
  echo "100,000 agents x 5 queues: first OPTIONS answered after ${up} s (from exec incl. config parse; script start-up overhead included), RSS $rss, peak $hwm" | tee -a "$OUT/summary.txt"
  kill "$BIG"; wait "$BIG" 2>/dev/null || true
fi
echo "summary: $OUT/summary.txt"
