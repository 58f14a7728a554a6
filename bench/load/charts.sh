#!/usr/bin/env bash
# Draws the load and cost charts (PNG, gnuplot) from what the other scripts left in results/:
# latency CDFs and throughput against rate (batching.sh), cost against SLO attainment
# (traces.sh), pool size against arrivals (traces.sh timelines), real against simulated pool
# (validate.sh). Writes the small .dat files it plots next to the results, and the PNGs to
# bench/load/charts/.
. "$(dirname "$0")/lib.sh"
CHARTS=${CHARTS:-$ROOT/bench/load/charts}
GP=$ROOT/bench/load/gp
mkdir -p "$CHARTS"
python3 - "$OUT" "$WORK" <<'PY'
import csv, datetime, glob, json, os, re, sys
out, work = sys.argv[1:]

def cdf(values, path):
    v = sorted(x * 1e3 for x in values if x > 0)
    with open(path, "w") as f:
        for i, x in enumerate(v):
            f.write(f"{x:.4f} {(i + 1) / len(v):.5f}\n")

# batching: rate sweep and CDFs
for seqs in (16, 1):
    rows = []
    for p in glob.glob(f"{out}/batching_seqs{seqs}_rate*.json"):
        j = json.load(open(p))
        rows.append((j["rate"], j["rps"], j["goodput_rps"], j["ttft"]["p99_ms"], j["tpot"]["p99_ms"],
                     j["output_tokens_per_s"]))
    with open(f"{out}/rate_seqs{seqs}.dat", "w") as f:
        for r in sorted(rows):
            f.write(" ".join(f"{x:.4f}" for x in r) + "\n")
    for p in glob.glob(f"{out}/batching_seqs{seqs}_rate*.csv"):
        rate = re.search(r"rate([0-9.]+)\.csv", p).group(1)
        ok = [r for r in csv.DictReader(open(p)) if r["outcome"] == "ok"]
        cdf([float(r["ttft_s"]) for r in ok], f"{out}/cdf_ttft_s{seqs}r{rate}.dat")
        cdf([float(r["tpot_s"]) for r in ok], f"{out}/cdf_tpot_s{seqs}r{rate}.dat")

# traces: cost against attainment
for p in glob.glob(f"{out}/traces_*_cold*.json"):
    tr, cold = re.search(r"traces_(\w+)_cold(\w+)\.json", p).groups()
    j = json.load(open(p))
    with open(f"{out}/cost_{tr}_cold{cold}.dat", "w") as f:
        for q in j["policies"]:
            f.write(f"{q['policy']} {100 * q['slo_attainment']:.3f} {q['cost_per_mtok']:.5f}\n")

# traces: pool size against arrivals, 10 s bins, from the timelines
tl = f"{work}/traces_code_coldmeasured.timeline.csv"
if os.path.exists(tl):
    bins = {}
    for r in csv.DictReader(open(tl)):
        b = bins.setdefault(r["policy"], {})
        k = int(float(r["t"]) // 10)
        a, w = b.get(k, (0, 0))
        b[k] = (a + int(r["arrivals"]), max(w, int(r["alive"]) + int(r["starting"])))
    for pol, b in bins.items():
        tag = pol.replace(":", "_")
        with open(f"{out}/pool_{tag}.dat", "w") as f:
            for k in sorted(b):
                f.write(f"{k * 10 / 60:.3f} {b[k][0] / 10:.3f} {b[k][1]}\n")

# validation: real pool size from the log, simulated from the timeline
ts = lambda s: datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
    tzinfo=datetime.timezone.utc).timestamp()
for p in glob.glob(f"{out}/validation_real_*.log"):
    tag = re.search(r"validation_real_(.+)\.log", p).group(1)
    vj = f"{out}/validation_{tag}.json"
    if not os.path.exists(vj):
        continue
    t0 = json.load(open(vj))["t0_unix"]
    events = []
    for line in open(p):
        m = re.match(r"(\S+) INFO  pool: scaling: start (\d+) worker", line)
        if m:
            events.append((ts(m.group(1)) - t0, int(m.group(2))))
        m = re.match(r"(\S+) INFO  pool: worker \S+ \(pid \d+\) exited", line)
        if m:
            events.append((ts(m.group(1)) - t0, -1))
    n = 0
    with open(f"{out}/valpool_{tag}_real.dat", "w") as f:
        for t, d in sorted(events):
            n += d
            f.write(f"{max(t, -5):.3f} {n}\n")
    sim_tl = f"{out}/validation_sim_{tag}.timeline.csv"
    if os.path.exists(sim_tl):
        with open(f"{out}/valpool_{tag}_sim.dat", "w") as f:
            for r in csv.DictReader(open(sim_tl)):
                f.write(f"{float(r['t']):.3f} {int(r['alive']) + int(r['starting'])}\n")
PY
cdfs=""; titles=""
for s in 16 1; do
    for r in 10 20; do
        if [ -f "$OUT/cdf_ttft_s${s}r${r}.dat" ]; then
            cdfs="$cdfs s${s}r${r}"
            titles="$titles ${s}_seqs,_${r}_req/s"
        fi
    done
done
gnuplot -e "RES='$OUT'; OUTDIR='$CHARTS'; CDFS='$cdfs'; TITLES='$titles'" "$GP/latency_cdf.gp"
gnuplot -e "RES='$OUT'; OUTDIR='$CHARTS'" "$GP/throughput_vs_rate.gp"
gnuplot -e "RES='$OUT'; OUTDIR='$CHARTS'; COLDS='measured 10 60'" "$GP/cost_vs_slo.gp"
gnuplot -e "RES='$OUT'; OUTDIR='$CHARTS'; POOLS='always-on_1 scale-to-zero_30 min-warm_1_30 predictive_0_30'; POOL_TITLES='always-on:1 scale-to-zero:30 min-warm:1:30 predictive:0:30'" "$GP/pool_vs_arrivals.gp"
vals=$(cd "$OUT" && ls valpool_*_real.dat 2>/dev/null | sed 's/valpool_//; s/_real.dat//' | tr '\n' ' ')
[ -n "$vals" ] && gnuplot -e "RES='$OUT'; OUTDIR='$CHARTS'; VALS='$vals'" "$GP/validation_pool.gp"
ls -la "$CHARTS"
