#!/usr/bin/env bash
# facd nodes on one PostgreSQL behind Kamailio's dispatcher (a benchmark,
# not a test): SIPp -> Kamailio (contrib/kamailio/dispatcher.cfg, hashing by
# the From user) -> 1 or 2 facd nodes (`[storage] backend = "postgres"`) ->
# one PostgreSQL started here in a throw-away cluster (fsync on,
# synchronous_commit on). Every call is a real state change (the
# "changes" workload of benches/sipp-load.sh: 1000 agents, 8 codes each).
#
# Prints, per node count and rate: calls OK / failed, changes/s, p50/p99
# INVITE->200 (SIPp, ms), and where the time went: CPU seconds of facd (all
# nodes), PostgreSQL and Kamailio per 1000 changes, facd's commit
# transactions per second and changes per transaction (group commit).
#
#   benches/pg-cluster.sh                         # NODES="1 2" RATES="500 1000 2000 3000" DUR=10
#   NODES=2 RATES=1000 DUR=5 benches/pg-cluster.sh
#   DIRECT=1 NODES=1 benches/pg-cluster.sh         # SIPp straight to one node, no Kamailio
#
# Needs: sipp, kamailio, postgresql (Debian packages; installed if missing),
# the release binary (built if missing). Loopback only. Output in
# target/pg-cluster/ (report.txt, runs/<nodes>-<rate>/ with SIPp's logs).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-$ROOT/target/pg-cluster}
NODES=${NODES:-"1 2"}
RATES=${RATES:-"500 1000 2000 3000"}
DUR=${DUR:-10}
DIRECT=${DIRECT:-0}
BIN=${FACD_BIN:-$ROOT/target/release/facd}
SCEN=$ROOT/sip-fixtures/sipp/fac_load.xml

die() { echo "pg-cluster: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }

PIDS=()
cleanup() {
  trap - EXIT INT TERM
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  [ -n "${PGBIN:-}" ] && [ -d "$OUT/pg/data" ] &&
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$OUT/pg/data" -m immediate stop >/dev/null 2>&1
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

need=()
command -v sipp >/dev/null || need+=(sip-tester)
command -v kamailio >/dev/null || need+=(kamailio)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get install -y -qq "${need[@]}" >/dev/null || die "cannot install ${need[*]}"
fi
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release --bin facd) || die "cannot build facd"

rm -rf "$OUT"; mkdir -p "$OUT/runs" "$OUT/pg"
REPORT=$OUT/report.txt

freeport() { python3 -c 'import socket,sys
s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM if sys.argv[1]=="udp" else socket.SOCK_STREAM)
s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "$1"; }

# ---------------------------------------------------------------- PostgreSQL
PGPORT=$(freeport tcp)
chown -R postgres:postgres "$OUT/pg"
runuser -u postgres -- "$PGBIN/initdb" -D "$OUT/pg/data" -U postgres -A trust -E UTF8 --locale=C >"$OUT/pg/initdb.log" 2>&1 ||
  die "initdb failed (see $OUT/pg/initdb.log)"
mkdir -p "$OUT/pg/sock"; chown postgres:postgres "$OUT/pg/sock"
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$OUT/pg/data" -l "$OUT/pg/log" -w \
  -o "-p $PGPORT -k $OUT/pg/sock -c listen_addresses=127.0.0.1 -c max_connections=100 -c shared_buffers=128MB" start >/dev/null ||
  die "PostgreSQL did not start (see $OUT/pg/log)"
psql() { runuser -u postgres -- "$PGBIN/psql" -X -A -t -h 127.0.0.1 -p "$PGPORT" -U postgres "$@"; }
pg_cpu() { # CPU seconds of every process of the cluster
  local pm; pm=$(head -1 "$OUT/pg/data/postmaster.pid")
  python3 - "$pm" <<'PY'
import os, sys
pm = sys.argv[1]; tick = os.sysconf("SC_CLK_TCK"); total = 0
for p in os.listdir("/proc"):
    if not p.isdigit(): continue
    try:
        st = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    if p == pm or st[1] == pm:
        total += int(st[11]) + int(st[12])
print(f"{total / tick:.2f}")
PY
}
cpu_of() { # pids...: their CPU seconds
  python3 - "$@" <<'PY'
import os, sys
tick = os.sysconf("SC_CLK_TCK"); total = 0
for p in sys.argv[1:]:
    try:
        st = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        total += int(st[11]) + int(st[12]) + int(st[13]) + int(st[14])
    except OSError:
        pass
print(f"{total / tick:.2f}")
PY
}

# ---------------------------------------------------------------- facd config, workload
facd_config() { # path port http_port dir url
  python3 - "$@" <<'PY'
import sys
path, port, http, d, url = sys.argv[1:]
o = [f'[sip]\nlisten = ["udp:127.0.0.1:{port}"]\ndomain = "127.0.0.1"\nconfirm_ms = 50\nudp_recv_buffer_bytes = 4194304\n',
     '[auth]\nrequired = false\n',
     '[limits]\nexempt_sources = ["127.0.0.1"]\n',
     f'[storage]\ndir = "{d}"\nbackend = "postgres"\nurl = "{url}"\n',
     f'[http]\nlisten = "127.0.0.1:{http}"\n',
     '[[reasons]]\ncode = 1\nname = "BREAK"\n', '[[reasons]]\ncode = 2\nname = "LUNCH"\n']
for q in range(8000, 8005):
    o.append(f'[[queues]]\nnumber = "{q}"\nname = "Bench {q}"\nauto_ready = true\nwrap_up_secs = 0\n')
for i in range(1000):
    ext = 1000 + i
    qs = [8000] + [8001 + (i + k) % 4 for k in range(2)]
    o.append(f'[[agents]]\nextension = "{ext}"\nname = "Agent {ext}"\nqueues = [{", ".join(repr(str(q)).replace(chr(39), chr(34)) for q in qs)}]\n')
open(path, "w").write("\n".join(o))
PY
}
CSV=$OUT/changes.csv
python3 - "$CSV" <<'PY'
import sys
codes = ["*388000", "*378000*1", "*368000", "*398000", "*38", "*37*2", "*36", "*39"]
with open(sys.argv[1], "w") as f:
    f.write("SEQUENTIAL\n")
    for c in codes:
        for a in range(1000, 2000):
            f.write(f"{a};{c}\n")
PY

parse() { # run dir: "ok failed p50 p99"
  python3 - "$1" <<'PY'
import csv, glob, sys
d = sys.argv[1]
try:
    rows = list(csv.reader(open(f"{d}/stat.csv"), delimiter=";"))
    h, last = rows[0], rows[-1]
    ok, failed = int(last[h.index("SuccessfulCall(C)")]), int(last[h.index("FailedCall(C)")])
except (OSError, IndexError, ValueError):
    ok = failed = 0
inv = []
for f in glob.glob(f"{d}/*_rtt.csv"):
    for r in csv.reader(open(f), delimiter=";"):
        if len(r) >= 3 and r[2].strip() == "inv":
            try: inv.append(float(r[1]))
            except ValueError: pass
inv.sort()
pct = lambda p: inv[max(0, min(len(inv) - 1, int(round(p * len(inv) + 0.5)) - 1))] if inv else float("nan")
print(ok, failed, f"{pct(.5):.1f}", f"{pct(.99):.1f}")
PY
}

printf '%-6s %-6s %8s %7s %9s %8s %8s %11s %10s %10s %9s %10s\n' nodes rate ok failed changes/s p50ms p99ms facd_cpu/1k pg_cpu/1k kam_cpu/1k pg_tx/s changes/tx | tee "$REPORT"

for n in $NODES; do
  db=bench_n${n}_$$
  psql -c "CREATE DATABASE $db" >/dev/null || die "cannot create $db"
  url="postgres://postgres@127.0.0.1:$PGPORT/$db"
  NODE_PIDS=(); NODE_PORTS=()
  for i in $(seq 1 "$n"); do
    port=$(freeport udp); http=$(freeport tcp)
    cfg=$OUT/node$n-$i.toml
    facd_config "$cfg" "$port" "$http" "$OUT/data-n$n-$i" "$url"
    RUST_LOG=warn "$BIN" --config "$cfg" >"$OUT/node$n-$i.out" 2>"$OUT/node$n-$i.log" &
    NODE_PIDS+=($!); PIDS+=($!); NODE_PORTS+=("$port")
    for _ in $(seq 100); do grep -q "listening" "$OUT/node$n-$i.out" 2>/dev/null && break; sleep 0.1; done
    grep -q "listening" "$OUT/node$n-$i.out" || die "facd node $i did not start (see $OUT/node$n-$i.log)"
  done
  if [ "$DIRECT" = 1 ]; then
    target=${NODE_PORTS[0]}; KPID=""
  else
    kport=$(freeport udp)
    : >"$OUT/dispatcher-$n.list"
    for p in "${NODE_PORTS[@]}"; do echo "1 sip:127.0.0.1:$p" >>"$OUT/dispatcher-$n.list"; done
    mkdir -p "$OUT/kam$n"
    kamailio -f "$ROOT/contrib/kamailio/dispatcher.cfg" -DD -E -m 256 -M 16 \
      -A "LISTEN=udp:127.0.0.1:$kport" -A "DS_LIST=\"$OUT/dispatcher-$n.list\"" \
      -P "$OUT/kam$n/pid" -Y "$OUT/kam$n" >"$OUT/kamailio-$n.log" 2>&1 &
    KPID=$!; PIDS+=("$KPID"); target=$kport
    sleep 3   # the first OPTIONS probes mark every node active
  fi
  for rate in $RATES; do
    calls=$(( (rate * DUR + 7999) / 8000 * 8000 ))
    d=$OUT/runs/$n-$rate; mkdir -p "$d"; cp "$SCEN" "$d/fac_load.xml"; cp "$CSV" "$d/agents.csv"
    f0=$(cpu_of "${NODE_PIDS[@]}"); p0=$(pg_cpu); k0=$( [ -n "$KPID" ] && cpu_of $(pgrep -P "$KPID") "$KPID" || echo 0)
    s0=$(psql -d "$db" -c "SELECT coalesce(max(seq), 0) FROM facd_changes")
    t0=$(date +%s.%N)
    (cd "$d" && timeout $(( calls / rate * 3 + 90 )) sipp "127.0.0.1:$target" -sf fac_load.xml -inf agents.csv \
        -i 127.0.0.1 -p "$(freeport udp)" -r "$rate" -m "$calls" -l $((rate * 2 + 100)) -nostdin \
        -buff_size 4194304 -trace_stat -stf stat.csv -fd 1 -trace_rtt -rtt_freq 1000 \
        -trace_err -error_file errors.log -timeout $(( calls / rate * 3 + 60 )) -timeout_error >sipp.log 2>&1)
    t1=$(date +%s.%N)
    f1=$(cpu_of "${NODE_PIDS[@]}"); p1=$(pg_cpu); k1=$( [ -n "$KPID" ] && cpu_of $(pgrep -P "$KPID") "$KPID" || echo 0)
    # Changes committed, and in how many transactions (a group commit's
    # rows share their xmin).
    read -r ch tx < <(psql -d "$db" -F ' ' -c "SELECT count(*), count(DISTINCT xmin::text) FROM facd_changes WHERE seq > $s0")
    read -r ok failed p50 p99 < <(parse "$d")
    python3 - "$n" "$rate" "$ok" "$failed" "$p50" "$p99" "$t0" "$t1" "$f0" "$f1" "$p0" "$p1" "$k0" "$k1" "$ch" "$tx" <<'PY' | tee -a "$REPORT"
import sys
n, rate, ok, failed, p50, p99 = sys.argv[1:7]
t0, t1, f0, f1, p0, p1, k0, k1, ch, tx = map(float, sys.argv[7:])
secs = max(t1 - t0, 1e-9); ch = max(ch, 1)
per_k = lambda a, b: f"{(b - a) / ch * 1000:.2f}"
print(f"{n:<6} {rate:<6} {ok:>8} {failed:>7} {ch / secs:>9.0f} {p50:>8} {p99:>8} {per_k(f0, f1):>11} {per_k(p0, p1):>10} {per_k(k0, k1):>10} {tx / secs:>9.0f} {ch / max(tx, 1):>10.1f}")
PY
    sleep 2
  done
  for p in "${NODE_PIDS[@]}" $KPID; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
done
echo "report: $REPORT" >&2
