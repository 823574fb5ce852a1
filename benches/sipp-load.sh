#!/usr/bin/env bash
# Whole-server SIP load benchmark: a load client (pinned to CPU 0) against
# facd, Kamailio and a trivial C responder (each pinned to CPU 1), the same
# scenario at the same fixed rates, in the same run, on 127.0.0.1 only.
# Prints per rate: successful / failed calls, calls/s achieved, p50/p99
# INVITE->200, server CPU us per call, client CPU us per call; then facd's
# CPU-per-call ratios to the anchors, the highest rate each server held with
# 0 failed calls, facd's start-up time and resident memory with 100,000
# agents x 5 queues and 1,000,000 x 2 (MEM_SETS), and the targets. See benches/README.md.
#
#   benches/sipp-load.sh                      # RATES="10000:sipp 10000 20000 30000" DUR=20
#   RATES="10000 20000" DUR=10 WIRE=1 benches/sipp-load.sh   # the README's run
#   QUICK=1 benches/sipp-load.sh              # smoke run: one low rate, 3 s
#   SERVERS="kamailio trivial" MEM=0 benches/sipp-load.sh   # anchors only
#   MEM=only benches/sipp-load.sh             # only start-up time and memory
#   WORKLOAD=noop benches/sipp-load.sh        # the old load: most calls change nothing
#   DRIVER=sipp benches/sipp-load.sh          # SIPp drives every rate
#
# Drivers (DRIVER, default "gen"; a rate may name its own: "10000:sipp"):
#   sipp  SIPp with sip-fixtures/sipp/fac_load.xml: the reference client. On
#         one CPU of a small VM it tops out near 10,000 calls/s of this
#         scenario whatever the server (55-85 us of its own CPU per call), so
#         it cannot show a server at 20,000/s.
#   gen   examples/sip_load.rs: the same messages from the same CSV, one
#         thread, sendmmsg/recvmmsg, about a third of SIPp's CPU per call.
#         The default rates measure 10,000/s with both, as a cross-check
#         that the servers' CPU per call does not depend on the client.
#
# Workloads (WORKLOAD, default "changes"):
#   changes  every call changes the state of the agent who dials it: each of
#            1000 agents (1000..1999, in queue 8000 and two of 8001..8004, all
#            queues auto_ready) dials in turn *388000 (login 8000), *378000*1
#            (not ready there, reason 1), *368000 (ready), *398000 (logout),
#            *38 (login everywhere), *37*2 (not ready everywhere, reason 2),
#            *36 (ready everywhere), *39 (logout everywhere): 8000 rows, the
#            agents interleaved, so an agent's next code comes 1000 calls
#            later; each run is rounded up to whole rounds of 8000 calls so
#            every agent ends logged out and the next run starts clean.
#            Journaled, evented; the headline.
#   noop     the CSV of sip-fixtures/sipp/load_agents.csv after a login pass:
#            every agent dials the same code every call, so after the first
#            round nothing changes (nothing journaled or published).
#
# Output: target/sipp-load/summary.txt (machine-readable), report.txt (the
# printed tables), runs/<server>-<rate>/ (SIPp logs of every run).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-$ROOT/target/sipp-load}
if [ -z "${ANCHORS:-}" ]; then
  for d in "$ROOT/../shared/anchors/kamailio" /work/shared/anchors/kamailio; do
    [ -f "$d/kamailio.cfg" ] && { ANCHORS=$(cd "$d" && pwd); break; }
  done
fi
ANCHORS=${ANCHORS:-/work/shared/anchors/kamailio}
RATES=${RATES:-"10000:sipp 10000 20000 30000"}
DRIVER=${DRIVER:-gen}               # sipp or gen (see above)
DUR=${DUR:-20}
SERVERS=${SERVERS:-"facd kamailio trivial"}
MEM=${MEM:-1}                       # 1: memory/start-up at the end; 0: skip; only: nothing else
# Memory/start-up sets, each on a fresh facd: AGENTSxQUEUES[@SECONDS of load]
# (issue 13: 100,000 x 5 as before, 5 s; 1,000,000 x 2 through 10 s).
MEM_SETS=${MEM_SETS:-"${MEM_AGENTS:-100000}x${MEM_QUEUES:-5}@5 1000000x2@10"}
MEM_RATE=${MEM_RATE:-10000}
STARTUP_CPUS=${STARTUP_CPUS:-0-$(( $(nproc) - 1 ))}   # CPUs facd may start on (a real start uses the machine); the load then runs on SERVER_CPU
MEM_DUR=${MEM_DUR:-10}                 # for a set without @SECONDS
TARGET_RATE=${TARGET_RATE:-20000}   # where facd's CPU per call is compared to Kamailio's
SIPP_CPU=${SIPP_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
GAP=${GAP:-2}                       # seconds of quiet between runs
FACD_SYNC=${FACD_SYNC:-true}        # [storage] sync (fdatasync before answering)
export FACD_BACKEND=${FACD_BACKEND:-journal}  # [storage] backend: journal (ours) or redb
export FACD_GROUP_COMMIT_MS=${FACD_GROUP_COMMIT_MS:-2}  # [storage] group_commit_ms (facd's default)
FACD_LOG=${FACD_LOG:-warn}          # RUST_LOG for facd
WIRE=${WIRE:-0}                     # 1: also time INVITE->200 on the wire (tcpdump on lo, mid-run window)
WIRE_SECS=${WIRE_SECS:-3}           # ... for this many seconds, from 2 s into each run
QUIET_PCT=${QUIET_PCT:-30}          # before each run, wait until CPUs 0+1 are less busy than this (% of one CPU)
QUIET_WAIT=${QUIET_WAIT:-120}       # ... but at most this many seconds (0: do not wait)
QUIET_WAITED=0
if [ -n "${QUICK:-}" ] && [ "${QUICK}" != 0 ]; then
  RATES=${QUICK_RATE:-"1000:sipp 1000"}; DUR=3; MEM_RATE=1000; MEM_DUR=3; MEM_SETS="10000x5@3"
fi
if [ "$MEM" = only ]; then RATES=""; fi

WORKLOAD=${WORKLOAD:-changes}       # changes (every call a real state change) or noop (see above)
SCEN=$ROOT/sip-fixtures/sipp/fac_load.xml
[ -f "$SCEN" ] || SCEN=$ANCHORS/fac_uac.xml
CSV=$ROOT/sip-fixtures/sipp/load_agents.csv
[ -f "$CSV" ] || CSV=$ANCHORS/agents.csv
case "$WORKLOAD" in changes|noop) ;; *) echo "sipp-load: WORKLOAD must be changes or noop" >&2; exit 2 ;; esac

die() { echo "sipp-load: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }

# ---------------------------------------------------------------- processes
PIDS=()          # every process this script started (children of this shell)
EXTRA_PIDS=()    # started by a helper (reparented): killed by pid
descendants() { local c; for c in $(pgrep -P "$1" 2>/dev/null); do echo "$c"; descendants "$c"; done; }
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
kill_tree() { # pid...: TERM the processes and their descendants, KILL what is left after 3 s
  local all=() p i
  for p in "$@"; do [ -n "$p" ] && all+=("$p" $(descendants "$p")); done
  [ ${#all[@]} -gt 0 ] || return 0
  kill -TERM "${all[@]}" 2>/dev/null
  for i in $(seq 30); do
    local left=0
    for p in "${all[@]}"; do alive "$p" && [ "$(awk '{print $3}' /proc/$p/stat 2>/dev/null)" != Z ] && left=1; done
    [ $left = 0 ] && break
    sleep 0.1
  done
  kill -KILL "${all[@]}" 2>/dev/null
  for p in "$@"; do wait "$p" 2>/dev/null; done
  return 0
}
forget() { local p=$1 i; for i in "${!PIDS[@]}"; do [ "${PIDS[$i]}" = "$p" ] && unset 'PIDS[i]'; done; }
stop() { [ -n "${1:-}" ] || return 0; kill_tree "$1"; forget "$1"; }
cleanup() {
  trap - EXIT INT TERM
  kill_tree "${PIDS[@]}" "${EXTRA_PIDS[@]}"
}
trap cleanup EXIT
trap 'echo "sipp-load: interrupted" >&2; exit 130' INT
trap 'echo "sipp-load: terminated (watchdog or signal)" >&2; exit 143' TERM

# ---------------------------------------------------------------- prerequisites
need=()
command -v sipp >/dev/null || need+=(sip-tester)
command -v kamailio >/dev/null || [[ " $SERVERS " != *" kamailio "* ]] || need+=(kamailio)
command -v taskset >/dev/null || need+=(util-linux)
command -v cc >/dev/null || need+=(gcc)
command -v tcpdump >/dev/null || [ "$WIRE" != 1 ] || need+=(tcpdump)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get install -y -qq "${need[@]}" >/dev/null || { apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; } ||
    die "cannot install ${need[*]}"
fi
command -v python3 >/dev/null || die "python3 is needed"
[ "$(nproc --all)" -ge 2 ] || log "warning: fewer than 2 CPUs; SIPp and the server share one"
rmem=$(cat /proc/sys/net/core/rmem_max 2>/dev/null || echo 0)
if [ "$rmem" -lt 4194304 ]; then
  sysctl -qw net.core.rmem_max=8388608 net.core.wmem_max=8388608 2>/dev/null ||
    log "warning: net.core.rmem_max=$rmem < 4 MiB and cannot be raised: 4 MiB receive buffers will be clamped"
fi

mkdir -p "$OUT"
rm -rf "$OUT/runs" "$OUT/tmp" "$OUT"/summary.txt "$OUT"/report.txt
mkdir -p "$OUT/runs" "$OUT/tmp" "$OUT/bin"
SUMMARY=$OUT/summary.txt
REPORT=$OUT/report.txt
TICK=$(getconf CLK_TCK)
H=$OUT/bin/helper.py

# ---------------------------------------------------------------- python helper
cat >"$H" <<'PY'
import csv, glob, os, re, socket, subprocess, sys, time

def freeports(kind, n):
    t = socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
    socks = []
    for _ in range(int(n)):
        s = socket.socket(socket.AF_INET, t)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    print(" ".join(str(s.getsockname()[1]) for s in socks))

def options(port, lport, n):
    return (f"OPTIONS sip:ping@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bK-probe{os.getpid()}x{n};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p{n}\r\nTo: <sip:ping@127.0.0.1>\r\n"
            f"Call-ID: probe-{os.getpid()}-{n}@127.0.0.1\r\nCSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n").encode()

def wait_answer(port, timeout, every=0.002, alive=lambda: True):
    """Send OPTIONS every `every` s until a 200 comes back; seconds taken or None."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(every)
    lport = s.getsockname()[1]
    t0 = time.monotonic(); n = 0
    while time.monotonic() - t0 < timeout:
        if not alive():
            return None
        n += 1
        try:
            s.sendto(options(port, lport, n), ("127.0.0.1", port))
        except OSError:
            pass
        end = time.monotonic() + every
        while True:
            left = end - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                d, _ = s.recvfrom(65536)
            except (socket.timeout, ConnectionRefusedError, OSError):
                break
            if d.startswith(b"SIP/2.0 200"):
                return time.monotonic() - t0
    return None

def probe(port, timeout):
    t = wait_answer(int(port), float(timeout), every=0.05)
    if t is None:
        sys.exit(1)
    print(f"{t:.3f}")

def startup(port, pidfile, out, err, *cmd):
    """Exec cmd, OPTIONS it every 2 ms from the start; print 'pid seconds'."""
    env = dict(os.environ)
    t0 = time.monotonic()
    p = subprocess.Popen(list(cmd), stdout=open(out, "w"), stderr=open(err, "w"), env=env,
                         stdin=subprocess.DEVNULL)
    open(pidfile, "w").write(str(p.pid))
    t = wait_answer(int(port), 60.0, every=0.002, alive=lambda: p.poll() is None)
    if t is None:
        p.kill()
        print(f"{p.pid} fail")
        sys.exit(1)
    print(f"{p.pid} {time.monotonic() - t0:.3f}")

def facdconf(path, port, http_port, datadir, agents, per, sync, confirm_ms):
    agents, per = int(agents), int(per)
    o = [f'[sip]\nlisten = ["udp:127.0.0.1:{port}"]\ndomain = "127.0.0.1"\n'
         f'confirm_ms = {confirm_ms}\nudp_recv_buffer_bytes = 4194304\n',
         '[auth]\nrequired = false\n',
         # SIPp is one source far above the per-source rate: exempt it.
         '[limits]\nexempt_sources = ["127.0.0.1"]\n',
         f'[storage]\ndir = "{datadir}"\nsync = {sync}\nbackend = "{os.environ.get("FACD_BACKEND", "journal")}"\n'
         f'group_commit_ms = {os.environ.get("FACD_GROUP_COMMIT_MS", "2")}\n',
         f'[http]\nlisten = "127.0.0.1:{http_port}"\n']
    o.append('[[reasons]]\ncode = 1\nname = "BREAK"\n')
    o.append('[[reasons]]\ncode = 2\nname = "LUNCH"\n')
    for q in range(8000, 8005):
        o.append(f'[[queues]]\nnumber = "{q}"\nname = "Bench {q}"\nauto_ready = true\nwrap_up_secs = 0\n')
    for i in range(agents):
        ext = 1000 + i
        if per >= 5:
            qs = [8000, 8001, 8002, 8003, 8004]
        else:   # queue 8000 and (per-1) others
            qs = [8000] + [8001 + (i + k) % 4 for k in range(per - 1)]
        ql = ", ".join(f'"{q}"' for q in qs)
        o.append(f'[[agents]]\nextension = "{ext}"\nname = "Agent {ext}"\nqueues = [{ql}]\n')
    open(path, "w").write("\n".join(o))

CHANGE_CODES = ["*388000", "*378000*1", "*368000", "*398000", "*38", "*37*2", "*36", "*39"]

def changescsv(path, first, n):
    """The changes workload: every row changes its agent's state (queues auto_ready)."""
    with open(path, "w") as f:
        f.write("SEQUENTIAL\n")
        for code in CHANGE_CODES:
            for a in range(int(first), int(first) + int(n)):
                f.write(f"{a};{code}\n")

def logincsv(path, first, n):
    with open(path, "w") as f:
        f.write("SEQUENTIAL\n")
        for a in range(int(first), int(first) + int(n)):
            f.write(f"{a};*38\n")

def pct(v, p):
    if not v:
        return float("nan")
    k = max(0, min(len(v) - 1, int(round(p * len(v) + 0.5)) - 1))   # nearest rank
    return v[k]

def parse(d, calls):
    """One client run: print 'ok failed cps p50 p99 pmax retrans client_cpu_s detail'."""
    calls = int(calls)
    try:
        u, s = open(f"{d}/time.txt").read().split()[-2:]
        cpu = float(u) + float(s)
    except (OSError, ValueError):
        cpu = float("nan")
    if os.path.exists(f"{d}/result.txt"):      # DRIVER=gen: its own line
        try:
            ok, failed, cps, p50, p99, pmax, retrans, detail = open(f"{d}/result.txt").read().split()
        except ValueError:
            ok, failed, cps, p50, p99, pmax, retrans, detail = 0, calls, "nan", "nan", "nan", "nan", 0, "no-result"
        if int(ok) + int(failed) < calls:
            detail = (detail if detail != "-" else "") + f",not-run:{calls - int(ok) - int(failed)}"
        print(ok, failed, cps, p50, p99, pmax, retrans, f"{cpu:.3f}", detail.strip(",") or "-")
        return
    ok = failed = retrans = 0; elapsed = float("nan"); detail = []
    try:
        rows = list(csv.reader(open(f"{d}/stat.csv"), delimiter=";"))
        h, last = rows[0], rows[-1]
        c = lambda n: last[h.index(n)]
        ok, failed = int(c("SuccessfulCall(C)")), int(c("FailedCall(C)"))
        retrans = int(c("Retransmissions(C)"))
        ep = lambda x: float(x.split("\t")[-1])
        elapsed = ep(c("CurrentTime")) - ep(c("StartTime"))
        for i, n in enumerate(h):
            if n.startswith("Failed") and n.endswith("(C)") and n != "FailedCall(C)" and last[i] not in ("", "0"):
                detail.append(f"{n[6:-3]}:{last[i]}")
        for n in ("OutOfCallMsgs(C)", "DeadCallMsgs(C)", "FatalErrors(C)"):
            if n in h and last[h.index(n)] not in ("", "0"):
                detail.append(f"{n[:-3]}:{last[h.index(n)]}")
    except (OSError, IndexError, ValueError) as e:
        detail.append(f"no-stat:{type(e).__name__}")
    created = ok + failed
    if created < calls:
        detail.append(f"not-run:{calls - created}")
    inv = []
    for f in glob.glob(f"{d}/*_rtt.csv"):
        for r in csv.reader(open(f), delimiter=";"):
            if len(r) >= 3 and r[2].strip() == "inv":
                try:
                    inv.append(float(r[1]))
                except ValueError:
                    pass
    inv.sort()
    # what SIPp got instead of what it expected (first line of each), most frequent first
    seen = {}
    for f in glob.glob(f"{d}/errors.log*"):
        for line in open(f, errors="replace"):
            m = re.search(r"received '([^\r\n']*)", line)
            if m:
                k = "got " + m.group(1)[:60]
            elif "Aborting" in line or "timeout" in line.lower():
                k = re.sub(r"'[^']*'", "'…'", line.strip())[:80]
            else:
                continue
            seen[k] = seen.get(k, 0) + 1
    with open(f"{d}/failures.txt", "w") as f:
        for k, v in sorted(seen.items(), key=lambda kv: -kv[1])[:10]:
            f.write(f"{v} x {k}\n")
    cps = ok / elapsed if elapsed == elapsed and elapsed > 0 else float("nan")
    print(ok, failed, f"{cps:.0f}", f"{pct(inv, .5):.1f}", f"{pct(inv, .99):.1f}",
          f"{inv[-1] if inv else float('nan'):.1f}", retrans, f"{cpu:.3f}", ",".join(detail) or "-")

def wire(pcap):
    """INVITE -> 200 as seen on the wire (tcpdump on lo): print 'n p50_us p99_us
    max_us unanswered'. The delay between SIPp's INVITE entering the loopback and
    the server's 200 leaving it: the server's own latency, without SIPp's
    scheduler (whose response times come in whole milliseconds)."""
    import struct
    inv, ok = {}, {}
    try:
        data = open(pcap, "rb").read()
    except OSError:
        print("0 nan nan nan 0"); return
    if len(data) < 24:
        print("0 nan nan nan 0"); return
    magic = struct.unpack("<I", data[:4])[0]
    div = 1e9 if magic == 0xa1b23c4d else 1e6
    link = struct.unpack("<I", data[20:24])[0]
    cid = re.compile(rb"\r\n(?:Call-ID|i)[ \t]*:[ \t]*([^\r\n]+)", re.I)
    cseq = re.compile(rb"\r\nCSeq[ \t]*:[ \t]*[0-9]+[ \t]+INVITE", re.I)
    i = 24
    while i + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack("<IIII", data[i:i + 16])
        pkt = data[i + 16:i + 16 + incl]
        i += 16 + incl
        t = sec + frac / div
        off = 14 if link == 1 else (16 if link == 113 else 0)
        ip = pkt[off:]
        if not ip:
            continue
        if ip[0] >> 4 == 4:
            ip = ip[(ip[0] & 15) * 4:]
        elif ip[0] >> 4 == 6:
            ip = ip[40:]
        p = ip[8:]
        m = cid.search(p)
        if not m:
            continue
        k = m.group(1).strip()
        if p.startswith(b"INVITE "):
            inv.setdefault(k, t)
        elif p.startswith(b"SIP/2.0 200") and cseq.search(p):
            ok.setdefault(k, t)
    d = sorted((ok[k] - t) * 1e6 for k, t in inv.items() if k in ok and ok[k] >= t)
    # INVITEs of the last 100 ms may have their 200 after the capture ended.
    last = max(inv.values(), default=0)
    unanswered = sum(1 for k, t in inv.items() if k not in ok and t < last - 0.1)
    print(len(d), f"{pct(d, .5):.0f}", f"{pct(d, .99):.0f}", f"{d[-1] if d else float('nan'):.0f}", unanswered)

def kv(line):
    return dict(x.split("=", 1) for x in line.split()[1:])

def fmt(x, nd=1):
    try:
        return f"{float(x):.{nd}f}"
    except ValueError:
        return x

def table(summary, label):
    runs = [kv(l) for l in open(summary) if l.startswith("run ")]
    runs = [r for r in runs if r.get("label", r["rate"]) == label]
    drv = runs[0].get("driver", "sipp") if runs else "?"
    print(f"\nrate {label.split(':')[0]} calls/s x {runs[0]['dur'] if runs else '?'} s, driven by {drv}")
    print(f"  {'server':<9}{'ok':>9}{'failed':>8}{'calls/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}"
          f"{'srv us/call':>12}{'client us/call':>15}{'retrans':>9}{'other%':>7}{'RSS MB':>8}"
          f"{'wire p50/p99/max us':>22}  notes")
    for r in runs:
        print(f"  {r['server']:<9}{r['ok']:>9}{r['failed']:>8}{r['cps']:>9}{fmt(r['p50_ms']):>8}{fmt(r['p99_ms']):>8}"
              f"{fmt(r['max_ms']):>8}{fmt(r['server_us_per_call']):>12}{fmt(r.get('client_us_per_call', r.get('sipp_us_per_call', 'nan'))):>15}"
              f"{r['retrans']:>9}{r.get('other_cpu_pct', '-'):>7}{r.get('rss_mb', 'na').replace('na', '-'):>8}"
              f"{(r['wire_p50_us'] + '/' + r['wire_p99_us'] + '/' + r['wire_max_us']) if 'wire_p99_us' in r else '-':>22}"
              f"  {'' if r['detail'] == '-' else r['detail']}")

def report(summary, rates, target_rate):
    lines = open(summary).read().splitlines()
    runs = [kv(l) for l in lines if l.startswith("run ") and not kv(l)["server"].endswith("-mem")]
    mems = [kv(l) for l in lines if l.startswith("mem ")]
    rates = rates.split()
    by = {(r["server"], r.get("label", r["rate"])): r for r in runs}
    drv = lambda label: by.get(("facd", label), by.get(("kamailio", label), {})).get("driver", "?")
    servers = []
    for r in runs:
        if r["server"] not in servers:
            servers.append(r["server"])
    out = []
    def f(x):
        try:
            v = float(x)
            return v if v == v else None
        except (TypeError, ValueError):
            return None
    if runs:
        print("\nCPU per call, facd / anchor (same run; lower is better)")
        for rate in rates:
            fa = f(by.get(("facd", rate), {}).get("server_us_per_call"))
            parts = []
            for a in ("kamailio", "trivial"):
                an = f(by.get((a, rate), {}).get("server_us_per_call"))
                ratio = fa / an if fa is not None and an else None
                parts.append(f"{a} {ratio:.2f}x" if ratio is not None else f"{a} n/a")
                out.append(f"ratio rate={rate} server_cpu_facd_over_{a}={'%.3f' % ratio if ratio is not None else 'na'}")
            print(f"  {rate.split(':')[0]:>6} calls/s ({drv(rate)}): " + ", ".join(parts))
        print("\nHighest rate held: 0 failed calls, all completed, >= 95% of the rate achieved")
        held = {}
        for s in servers:
            best = None
            for rate in rates:
                r = by.get((s, rate))
                if (r and r["failed"] == "0" and int(r["ok"]) == int(r["calls"])
                        and float(r["cps"]) >= 0.95 * int(r["rate"])):
                    if best is None or int(r["rate"]) > int(best.split(":")[0]):
                        best = rate
            held[s] = best
            cps = by[(s, best)]["cps"] if best else "-"
            print(f"  {s:<9} {best.split(':')[0] if best else 'none':>6}" + (f"  (achieved {cps} calls/s, {by[(s, best)].get('driver', '?')})" if best else ""))
            out.append(f"held server={s} max_rate_0_failed={best or 'none'} achieved_cps={cps}")
    print("\nTargets")
    def tgt(name, value, limit, ok, unit=""):
        v = "n/a" if value is None else (f"{value:.0f}" if value >= 100 else f"{value:.3g}") + unit
        st = "n/a" if value is None else ("PASS" if ok else "FAIL")
        print(f"  {name:<52} {v:>10}  (target {limit})  {st}")
        out.append(f"target name={name.split()[0]} value={'na' if value is None else '%.4g' % value} status={st}")
    if runs:
        fa = f(by.get(("facd", target_rate), {}).get("server_us_per_call"))
        ka = f(by.get(("kamailio", target_rate), {}).get("server_us_per_call"))
        r = fa / ka if fa is not None and ka else None
        tgt(f"cpu_vs_kamailio facd/Kamailio CPU per call @{target_rate}", r, "<= 0.8x", r is not None and r <= 0.8, "x")
        if ("facd", rates[-1]) in by or any(s == "facd" for s, _ in by):
            h = held.get("facd")
            mx = max(int(x.split(":")[0]) for x in rates)
            h = int(h.split(":")[0]) if h else None
            tgt(f"zero_failed highest rate with 0 failed (of {mx})", float(h) if h else 0.0, f"= {mx}",
                h is not None and h == mx)
            p99s = [f(by[("facd", x)]["p99_ms"]) for x in rates if ("facd", x) in by]
            p99s = [p for p in p99s if p is not None]
            w = max(p99s) if p99s else None
            tgt("p99_invite facd worst p99 INVITE->200 over all rates", w, "<= 10 ms", w is not None and w <= 10, " ms")
            ws = [f(by[("facd", x)].get("wire_p99_us")) for x in rates if ("facd", x) in by]
            ws = [x / 1000 for x in ws if x is not None]
            if ws:
                tgt("p99_wire facd worst p99 INVITE->200 on the wire (tcpdump)", max(ws), "<= 10 ms",
                    max(ws) <= 10, " ms")
    for m in mems:
        # Issue 13: 100,000 x 5 in <= 1 s and <= 200 MB; 1,000,000 x 2 in
        # <= 3 s and <= 1 GB (through the load, peak included).
        big = int(m["agents"]) >= 1000000
        s_lim, mb_lim = (3.0, 1024) if big else (1.0, 200)
        shape = f"{m['agents']}x{m['queues_per_agent']}"
        su = f(m.get("startup_s"))
        tgt(f"startup_{shape} facd start-up, {m['agents']} agents x {m['queues_per_agent']} queues", su, f"<= {s_lim:g} s",
            su is not None and su <= s_lim, " s")
        rss = f(m.get("rss_after_load_mb"))
        tgt(f"rss_{shape} facd VmRSS after start-up + {m.get('load_dur', '?')} s load", rss, f"<= {mb_lim} MB",
            rss is not None and rss <= mb_lim, " MB")
        peak = max([x for x in (f(m.get("hwm_after_load_mb")), f(m.get("hwm_start_mb"))) if x is not None], default=None)
        tgt(f"rss_peak_{shape} facd peak RSS (VmHWM, incl. config parsing)", peak, f"<= {mb_lim} MB",
            peak is not None and peak <= mb_lim, " MB")
    with open(summary, "a") as fh:
        fh.write("\n".join(out) + "\n")

if __name__ == "__main__":
    globals()[sys.argv[1]](*sys.argv[2:])
PY

freeport() { python3 "$H" freeports "$1" 1; }

# ---------------------------------------------------------------- watchdog
n_srv=$(wc -w <<<"$SERVERS"); n_rate=$(wc -w <<<"$RATES")
MAX_SECS=${MAX_SECS:-$(( n_srv * n_rate * (DUR + 45 + QUIET_WAIT) + 900 + 2 * QUIET_WAIT ))}
( sleep "$MAX_SECS"; echo "sipp-load: watchdog: over $MAX_SECS s, stopping" >&2; kill -TERM $$ ) &
WATCHDOG=$!; PIDS+=("$WATCHDOG")

# ---------------------------------------------------------------- servers
declare -A PORT PID
cpu_ticks() { # pid: utime+stime (clock ticks) of the process and all its descendants
  local t=0 p
  for p in "$1" $(descendants "$1"); do
    [ -r "/proc/$p/stat" ] || continue
    # fields after the ")" of comm: utime is field 14, stime 15 of the whole line
    t=$(( t + $(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12 + $13}') ))
  done
  echo "$t"
}

cpu_busy() { # busy clock ticks (all but idle and iowait) of CPUs SIPP_CPU and SERVER_CPU
  awk -v a="cpu$SIPP_CPU" -v b="cpu$SERVER_CPU" '$1 == a || $1 == b {t += $2+$3+$4+$7+$8+$9} END {print t}' /proc/stat
}

wait_quiet() { # wait (at most QUIET_WAIT s) until CPUs SIPP_CPU+SERVER_CPU are < QUIET_PCT % busy over 1 s
  local t0=$SECONDS b0 b1 pct
  while :; do
    b0=$(cpu_busy); sleep 1; b1=$(cpu_busy)
    pct=$(( (b1 - b0) * 100 / TICK ))
    [ "$pct" -lt "$QUIET_PCT" ] && break
    if [ $((SECONDS - t0)) -ge "$QUIET_WAIT" ]; then
      log "CPUs $SIPP_CPU,$SERVER_CPU still ${pct}% busy with other work after ${QUIET_WAIT}s: measuring anyway (noisy)"; break
    fi
    [ $((SECONDS - t0)) -lt 2 ] && log "CPUs $SIPP_CPU,$SERVER_CPU ${pct}% busy with other work: waiting up to ${QUIET_WAIT}s for quiet"
    sleep 2
  done
  QUIET_WAITED=$((QUIET_WAITED + SECONDS - t0))
}

answers() { python3 "$H" probe "$1" "${2:-10}" >/dev/null; }

FACD=${FACD_BIN:-$ROOT/target/release/facd}
build_facd() {
  [ -n "${FACD_BIN:-}" ] && { [ -x "$FACD" ] || die "FACD_BIN=$FACD is not executable"; return 0; }
  log "cargo build --release"
  (cd "$ROOT" && cargo build --release --quiet) >"$OUT/build.log" 2>&1 || { log "facd build failed (see $OUT/build.log)"; return 1; }
}
GEN=${GEN_BIN:-$ROOT/target/release/examples/sip_load}
build_gen() {
  [ -n "${GEN_BIN:-}" ] && { [ -x "$GEN" ] || die "GEN_BIN=$GEN is not executable"; return 0; }
  log "cargo build --release --example sip_load"
  (cd "$ROOT" && cargo build --release --quiet --example sip_load) >>"$OUT/build.log" 2>&1 || die "sip_load build failed (see $OUT/build.log)"
}

start_facd() { # name agents queues_per_agent -> PID[name] PORT[name]
  local name=$1 agents=$2 per=$3 port http d=$OUT/tmp/$1
  rm -rf "$d"; mkdir -p "$d"
  port=$(freeport udp); http=$(freeport tcp)
  python3 "$H" facdconf "$d/facd.toml" "$port" "$http" "$d/data" "$agents" "$per" "$FACD_SYNC" 2000
  RUST_LOG=$FACD_LOG taskset -c "$SERVER_CPU" "$FACD" --config "$d/facd.toml" >"$OUT/$name.out" 2>"$OUT/$name.err" &
  PID[$name]=$!; PIDS+=("${PID[$name]}"); PORT[$name]=$port
  local i
  for i in $(seq 200); do
    grep -q "^facd listening on" "$OUT/$name.out" 2>/dev/null && break
    alive "${PID[$name]}" || break
    sleep 0.1
  done
  grep -q "^facd listening on udp:127.0.0.1:$port" "$OUT/$name.out" 2>/dev/null ||
    { log "$name did not print its listening line (see $OUT/$name.err)"; tail -5 "$OUT/$name.err" >&2; return 1; }
}

start_server() { # name -> PID[name], PORT[name]; 1 if it does not answer OPTIONS
  local name=$1 port
  case $name in
    facd)
      build_facd || return 1
      start_facd facd 1000 3 || return 1 ;;
    kamailio)
      local d=$OUT/tmp/kamailio; mkdir -p "$d/run"; port=$(freeport udp)
      sed -e "s/^listen=udp:127\.0\.0\.1:5070/listen=udp:127.0.0.1:$port/" \
          -e "s|unix:/tmp/kamailio_ctl|unix:$d/kamailio_ctl|" "$ANCHORS/kamailio.cfg" >"$d/kamailio.cfg"
      grep -q "listen=udp:127.0.0.1:$port" "$d/kamailio.cfg" && grep -q "unix:$d/kamailio_ctl" "$d/kamailio.cfg" ||
        { log "cannot rewrite kamailio.cfg (listen/ctl lines changed?)"; return 1; }
      # The anchor routes *36..*39 with an optional queue; the changes workload
      # also dials not-ready reasons (*378000*1, *37*2): let the same route take
      # them (it stores the code per agent and queue as for any other), so that
      # Kamailio does the same job and answers 200, not 404.
      python3 - "$d/kamailio.cfg" <<'PYCFG'
import sys
p = sys.argv[1]
s = open(p).read()
old = '$rU =~ "^\\*3[6-9][0-9]*$"'
if old not in s:
    sys.exit("the anchor's FAC regex changed")
open(p, "w").write(s.replace(old, '$rU =~ "^\\*3[6-9][0-9]*(\\*[0-9]+)?$"'))
PYCFG
      [ $? = 0 ] || { log "cannot extend kamailio.cfg's FAC route to reason codes"; return 1; }
      taskset -c "$SERVER_CPU" kamailio -f "$d/kamailio.cfg" -A WORKERS=2 -DD -E -m 256 -M 16 \
        -P "$d/kamailio.pid" -Y "$d/run" >"$OUT/kamailio.log" 2>&1 &
      PID[$name]=$!; PIDS+=("${PID[$name]}"); PORT[$name]=$port ;;
    trivial)
      cc -O2 -o "$OUT/bin/trivial_responder" "$ANCHORS/trivial_responder.c" || return 1
      port=$(freeport udp)
      taskset -c "$SERVER_CPU" "$OUT/bin/trivial_responder" "$port" >"$OUT/trivial.log" 2>&1 &
      PID[$name]=$!; PIDS+=("${PID[$name]}"); PORT[$name]=$port ;;
    *) die "unknown server $name" ;;
  esac
  answers "${PORT[$name]}" 15 || { log "$name does not answer OPTIONS on 127.0.0.1:${PORT[$name]}"; return 1; }
  log "$name pid ${PID[$name]} answers on udp:127.0.0.1:${PORT[$name]}"
}

# ---------------------------------------------------------------- SIPp
run_sipp() { # dir port rate calls csv [driver]: one client run in dir (SIPp: stat, rtt, errors, sipp.log; gen: result.txt, gen.log; both: time.txt, rc)
  local d=$1 port=$2 rate=$3 calls=$4 csv=$5 drv=${6:-sipp}
  mkdir -p "$d"; cp "$SCEN" "$d/fac_load.xml"; cp "$csv" "$d/agents.csv"
  rm -f "$d/result.txt"
  local lport cport
  read -r lport cport < <(python3 "$H" freeports udp 2)
  local tmo=$(( calls / rate * 3 + 60 ))   # generous: a slowed-down client still finishes
  if [ "$drv" = gen ]; then
    (
      cd "$d" || exit 1
      TIMEFORMAT='%3U %3S'
      { time timeout -k 5 $((tmo + 30)) taskset -c "$SIPP_CPU" "$GEN" "127.0.0.1:$port" --csv agents.csv \
          --local "127.0.0.1:$lport" --rate "$rate" --calls "$calls" --limit $((rate * 2 + 100)) \
          --timeout "$tmo" --out result.txt >gen.log 2>&1; echo $? >rc; } 2>time.txt
    ) &
    local gp=$!; PIDS+=("$gp"); wait "$gp"; forget "$gp"
    return
  fi
  (
    cd "$d" || exit 1
    TIMEFORMAT='%3U %3S'
    { time timeout -k 5 $((tmo + 30)) taskset -c "$SIPP_CPU" sipp "127.0.0.1:$port" -sf fac_load.xml -inf agents.csv \
        -i 127.0.0.1 -p "$lport" -cp "$cport" -r "$rate" -m "$calls" -l $((rate * 2 + 100)) -nostdin \
        -max_recv_loops 10000 -max_sched_loops 10000 -buff_size 4194304 \
        -trace_stat -stf stat.csv -fd 1 -trace_rtt -rtt_freq 1000 \
        -trace_err -error_file errors.log -max_log_size 1048576 \
        -timeout "$tmo" -timeout_error >sipp.log 2>&1; echo $? >rc; } 2>time.txt
  ) &
  local sp=$!; PIDS+=("$sp"); wait "$sp"; forget "$sp"
}

measure() { # server rate calls csv tag [driver [label]] -> appends a "run" line to the summary
  local s=$1 rate=$2 calls=$3 csv=$4 tag=$5 d=$OUT/runs/$5 drv=${6:-$DRIVER} label=${7:-$2}
  local pid=${PID[$s]} port=${PORT[$s]}
  if ! alive "$pid" || ! answers "$port" 3; then
    log "$s (pid $pid) is down or not answering: skipping rate $rate"
    echo "run server=$s rate=$rate label=$label driver=$drv dur=$((calls / rate)) calls=$calls ok=0 failed=$calls cps=0 p50_ms=nan p99_ms=nan max_ms=nan server_us_per_call=nan client_us_per_call=nan retrans=0 client_rc=na detail=server-down" >>"$SUMMARY"
    return 1
  fi
  local c0 c1 ok failed cps p50 p99 pmax retrans scpu detail rc
  local b0 b1 w0 w1
  wait_quiet
  b0=$(cpu_busy); w0=$EPOCHREALTIME
  c0=$(cpu_ticks "$pid")
  local wp=""
  if [ "$WIRE" = 1 ]; then
    mkdir -p "$d"; rm -f "$d/wire.pcap"
    # On SIPp's CPU, so that the server's CPU is not shared; INVITEs and responses only.
    ( sleep 2; exec taskset -c "$SIPP_CPU" timeout "$WIRE_SECS" tcpdump -i lo -nn -q -s 512 -B 32768 \
        --time-stamp-precision=nano -w "$d/wire.pcap" \
        "udp port $port and (udp[8:4] = 0x494e5649 or udp[8:4] = 0x5349502f)" >"$d/tcpdump.log" 2>&1 ) &
    wp=$!; PIDS+=("$wp")
  fi
  run_sipp "$d" "$port" "$rate" "$calls" "$csv" "$drv"
  c1=$(cpu_ticks "$pid")
  local wire=""
  if [ -n "$wp" ]; then
    wait "$wp" 2>/dev/null; forget "$wp"
    local wn w50 w99 wmax wun
    read -r wn w50 w99 wmax wun < <(python3 "$H" wire "$d/wire.pcap")
    rm -f "$d/wire.pcap"
    wire=" wire_n=$wn wire_p50_us=$w50 wire_p99_us=$w99 wire_max_us=$wmax wire_unanswered=$wun"
  fi
  b1=$(cpu_busy); w1=$EPOCHREALTIME
  read -r ok failed cps p50 p99 pmax retrans scpu detail < <(python3 "$H" parse "$d" "$calls")
  rc=$(cat "$d/rc" 2>/dev/null || echo na)
  local us sus
  us=$(python3 -c "import sys; ok=$ok; print('%.2f' % (($c1-$c0)/$TICK*1e6/ok) if ok else 'nan')")
  sus=$(python3 -c "ok=$ok; print('%.2f' % ($scpu*1e6/ok) if ok else 'nan')")
  # CPU time of CPUs SIPP_CPU and SERVER_CPU not spent by SIPp or the server: other
  # processes (builds...), interrupts; in % of one CPU over the run. A noise gauge.
  local bg
  bg=$(python3 -c "print('%.0f' % max(0.0, 100 * (($b1 - $b0) / $TICK - ($c1 - $c0) / $TICK - $scpu) / ($w1 - $w0)))")
  [ -n "${KEEP_RTT:-}" ] || rm -f "$d"/*_rtt.csv
  local rss=na
  [[ $s == facd* ]] && rss=$(vm "$pid" VmRSS)
  echo "run server=$s rate=$rate label=$label driver=$drv dur=$((calls / rate)) calls=$calls ok=$ok failed=$failed cps=$cps p50_ms=$p50 p99_ms=$p99 max_ms=$pmax server_us_per_call=$us client_us_per_call=$sus retrans=$retrans client_rc=$rc server_cpu_ticks=$((c1 - c0)) other_cpu_pct=$bg rss_mb=$rss$wire detail=$detail" >>"$SUMMARY"
  log "$tag ($drv): ok=$ok failed=$failed cps=$cps p99=${p99}ms server=${us}us/call client=${sus}us/call rc=$rc other-cpu=${bg}%${wire}"
}

login_pass() { # name: every agent 1000..1999 dials *38 once (not measured)
  local s=$1 d=$OUT/runs/$1-login
  python3 "$H" logincsv "$OUT/tmp/login.csv" 1000 1000
  run_sipp "$d" "${PORT[$s]}" 1000 1000 "$OUT/tmp/login.csv"
  local r; r=$(python3 "$H" parse "$d" 1000)
  rm -f "$d"/*_rtt.csv
  echo "login server=$s ok=$(cut -d' ' -f1 <<<"$r") failed=$(cut -d' ' -f2 <<<"$r") detail=$(cut -d' ' -f9 <<<"$r")" >>"$SUMMARY"
  log "$s login pass (*38 x 1000, not measured): ok/failed = $(cut -d' ' -f1-2 <<<"$r")"
}

vm() { awk -v k="$2:" '$1 == k {printf "%.1f", $2 / 1024}' "/proc/$1/status" 2>/dev/null; }

# ---------------------------------------------------------------- header
{
  echo "facd SIP load benchmark  $(date -u +%FT%TZ)  host $(hostname)  $(nproc --all) CPUs  load avg $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')  sipp $(sipp -v 2>&1 | grep -o 'v[0-9][^ -]*' | head -1)  kamailio $(kamailio -v 2>/dev/null | grep -o '[0-9]\+\.[0-9]\+\.[0-9]\+' | head -1)"
  echo "workload $WORKLOAD  scenario $SCEN  csv $CSV  rates: $RATES (driver $DRIVER unless named)  duration ${DUR}s  client on CPU $SIPP_CPU, servers on CPU $SERVER_CPU  facd storage.sync=$FACD_SYNC storage.backend=$FACD_BACKEND storage.group_commit_ms=$FACD_GROUP_COMMIT_MS"
} | tee "$REPORT"
{
  echo "# facd sipp-load summary: one record per line, 'kind key=value ...'"
  echo "meta workload=$WORKLOAD date=$(date -u +%FT%TZ) commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo na) cpus=$(nproc --all) loadavg=$(cut -d' ' -f1 /proc/loadavg) dur=$DUR rates=${RATES// /,} driver=$DRIVER client_cpu=$SIPP_CPU server_cpu=$SERVER_CPU facd_sync=$FACD_SYNC facd_backend=$FACD_BACKEND"
} >"$SUMMARY"

# ---------------------------------------------------------------- load runs
case "$DRIVER" in sipp|gen) ;; *) die "DRIVER must be sipp or gen" ;; esac
if [ "$DRIVER" = gen ] || [[ " $RATES " == *":gen "* ]]; then build_gen; fi
UP=()
if [ -n "$RATES" ]; then
  for s in $SERVERS; do
    if start_server "$s"; then UP+=("$s"); else
      log "$s unavailable: measured without it"; echo "down server=$s" >>"$SUMMARY"
      [ -n "${PID[$s]:-}" ] && stop "${PID[$s]}"
    fi
  done
  [ ${#UP[@]} -gt 0 ] || die "no server answers"
  ROWS=1
  if [ "$WORKLOAD" = changes ]; then
    CSV=$OUT/tmp/changes.csv
    python3 "$H" changescsv "$CSV" 1000 1000
    ROWS=$(( $(wc -l <"$CSV") - 1 ))
  else
    for s in "${UP[@]}"; do [ "$s" = facd ] && login_pass facd; done
  fi
  sleep "$GAP"
  # Servers interleaved per rate, so that background noise hits them alike.
  for spec in $RATES; do
    rate=${spec%%:*}; drv=$DRIVER; [[ $spec == *:* ]] && drv=${spec#*:}
    # Whole rounds of the CSV (changes: every agent ends where it started).
    calls=$(( (rate * DUR + ROWS - 1) / ROWS * ROWS ))
    for s in "${UP[@]}"; do
      measure "$s" "$rate" "$calls" "$CSV" "$s-$rate-$drv" "$drv" "$spec"
      sleep "$GAP"
    done
    python3 "$H" table "$SUMMARY" "$spec" | tee -a "$REPORT"
  done
  if [ -n "${PID[facd]:-}" ] && alive "${PID[facd]}"; then
    echo "rss server=facd agents=1000 vmrss_mb=$(vm "${PID[facd]}" VmRSS) vmhwm_mb=$(vm "${PID[facd]}" VmHWM)" >>"$SUMMARY"
    echo "facd (1000 agents) after the load runs: VmRSS $(vm "${PID[facd]}" VmRSS) MB, VmHWM $(vm "${PID[facd]}" VmHWM) MB" | tee -a "$REPORT"
  fi
  for s in "${UP[@]}"; do stop "${PID[$s]}"; done
fi

# ---------------------------------------------------------------- memory and start-up
mem_run() { # agents queues_per_agent: start-up, then MEM_DUR s of load at MEM_RATE
  local MEM_AGENTS=$1 MEM_QUEUES=$2
  if build_facd; then
    d=$OUT/tmp/facd-mem; rm -rf "$d"; mkdir -p "$d"
    port=$(freeport udp); http=$(freeport tcp)
    python3 "$H" facdconf "$d/facd.toml" "$port" "$http" "$d/data" "$MEM_AGENTS" "$MEM_QUEUES" "$FACD_SYNC" 2000
    log "start-up with $MEM_AGENTS agents x $MEM_QUEUES queues ($(du -h "$d/facd.toml" | cut -f1) of TOML)"
    # The helper execs facd and sends OPTIONS every 2 ms until one is answered.
    python3 "$H" startup "$port" "$d/pid" "$OUT/facd-mem.out" "$OUT/facd-mem.err" \
      env RUST_LOG="$FACD_LOG" taskset -c "$STARTUP_CPUS" "$FACD" --config "$d/facd.toml" >"$d/startup.txt" &
    hp=$!; PIDS+=("$hp")
    for i in $(seq 50); do [ -s "$d/pid" ] && break; sleep 0.05; done
    [ -s "$d/pid" ] && EXTRA_PIDS+=("$(cat "$d/pid")")
    wait "$hp"; forget "$hp"
    read -r mpid su <"$d/startup.txt" || true
    if [ "${su:-fail}" != fail ] && [ -n "${mpid:-}" ] && alive "$mpid"; then
      rss0=$(vm "$mpid" VmRSS); hwm0=$(vm "$mpid" VmHWM)
      # The load, like every other run, on the server's one CPU (every thread).
      taskset -a -cp "$SERVER_CPU" "$mpid" >/dev/null || log "cannot pin facd-mem to CPU $SERVER_CPU"
      PID[facd-mem]=$mpid; PORT[facd-mem]=$port
      if [ "$WORKLOAD" = changes ]; then
        MCSV=$OUT/tmp/changes.csv
        python3 "$H" changescsv "$MCSV" 1000 1000
        mcalls=$(( (MEM_RATE * MEM_DUR + 7999) / 8000 * 8000 ))
      else
        login_pass facd-mem
        MCSV=$CSV; mcalls=$((MEM_RATE * MEM_DUR))
      fi
      measure facd-mem "$MEM_RATE" "$mcalls" "$MCSV" "facd-mem-$MEM_RATE" || true
      rss1=$(vm "$mpid" VmRSS); hwm1=$(vm "$mpid" VmHWM)
      ml=$(grep "^run server=facd-mem " "$SUMMARY" | tail -1)
      echo "mem agents=$MEM_AGENTS queues_per_agent=$MEM_QUEUES startup_s=$su rss_start_mb=$rss0 hwm_start_mb=$hwm0 load_rate=$MEM_RATE load_dur=$MEM_DUR rss_after_load_mb=$rss1 hwm_after_load_mb=$hwm1" >>"$SUMMARY"
      {
        echo
        echo "facd with $MEM_AGENTS agents x $MEM_QUEUES queues (fresh storage dir):"
        echo "  exec -> first answered OPTIONS: $su s"
        echo "  after start-up:        VmRSS $rss0 MB, VmHWM $hwm0 MB"
        echo "  after ${MEM_DUR}s at $MEM_RATE calls/s: VmRSS $rss1 MB, VmHWM $hwm1 MB  ($(sed 's/.* ok=\([0-9]*\) failed=\([0-9]*\).*/ok \1, failed \2/' <<<"$ml"))"
      } | tee -a "$REPORT"
      kill_tree "$mpid"
    else
      log "facd with $MEM_AGENTS agents did not answer (see $OUT/facd-mem.err)"; tail -5 "$OUT/facd-mem.err" >&2
      echo "mem agents=$MEM_AGENTS queues_per_agent=$MEM_QUEUES startup_s=fail" >>"$SUMMARY"
      [ -n "${mpid:-}" ] && kill_tree "$mpid"
    fi
  fi
}
if [ "$MEM" != 0 ] && [[ " $SERVERS " == *" facd "* || "$MEM" = only ]]; then
  for set in $MEM_SETS; do
    shape=${set%@*}; secs=$MEM_DUR; [ "$shape" != "$set" ] && secs=${set#*@}
    MEM_DUR=$secs mem_run "${shape%x*}" "${shape#*x}"
  done
fi

echo "quiet waited=$QUIET_WAITED" >>"$SUMMARY"
python3 "$H" report "$SUMMARY" "$RATES" "$TARGET_RATE" | tee -a "$REPORT"
echo "waited ${QUIET_WAITED}s in total for other work on CPUs $SIPP_CPU,$SERVER_CPU to calm down (QUIET_PCT=$QUIET_PCT, QUIET_WAIT=$QUIET_WAIT)" | tee -a "$REPORT"
echo "load avg at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on this machine skews absolute figures; ratios within one run are what counts)" | tee -a "$REPORT"
echo "summary: $SUMMARY  report: $REPORT  SIPp logs: $OUT/runs/" | tee -a "$REPORT"
