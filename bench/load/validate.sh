#!/usr/bin/env bash
# Does the simulator agree with the real pool? The same scaled trace is replayed against a real
# `synapse up` (bench load --trace) and simulated (bench sim), and p99 TTFT and worker-seconds
# are compared. The simulator's inputs are measured separately, never fitted to the runs it is
# compared with: step times from `bench engine` (engine.sh), the cold-start penalty from
# coldstart.sh, and the per-step overhead and request hop from a calibration run at 2 req/s.
# SIM_ONLY=1 reruns only the simulations and the comparison on the saved real runs; SIM_BIN
# names the binary that simulates (default: $SYN). BRACKET=1 measures the step times again
# right before and right after each policy's real run and simulates that policy with their
# mean (engine_t1_pP_POLICY.json; with SIM_ONLY=1, the saved pair): on a shared machine whose
# speed drifts by a quarter within minutes, inputs measured once at the start can describe a
# different machine than the run. It brackets the calibration run the same way, and the hop
# and step overhead are derived against that mean (engine_t1_p64_calib.json). Each of these
# measurements reports medians of BRACKET_REPS (default 5) repetitions. REPEAT=N (default 1) runs each policy N times in a row (each
# its own real run, bracket and simulation, tagged POLICY_rI) and compares the median real p99
# and worker-seconds with the median simulated ones (repeated_POLICY.json): one real run's p99 on
# this machine moves by more than the 15% the simulator is held to, so a single pair cannot
# tell the simulator's error from the run's. Each real run is also simulated at SIM_SEEDS
# (default 9) heartbeat and tick phases (bench sim --phase-seed 1..N), and the simulator's
# figure is their median (phase 0 alone is kept as sim_phase0; SIM_SEEDS=0 uses it): in a real
# pool those phases are jitter, and whether the policy sees a short burst turns on them.
# The simulator's --corun-slowdown (how much slower a step runs while the other core runs an
# engine thread) is CORUN if set, else corun.json's (bench/load/corun.sh, run first when it is
# missing; with SIM_ONLY=1 and no corun.json, 1: no slowdown).
#   bench/load/validate.sh                   -> results/validation_*.json (repeated_*.json)
. "$(dirname "$0")/lib.sh"
SIM_BIN=${SIM_BIN:-$SYN}
POLICIES=${POLICIES:-"scale-to-zero:10 min-warm:1:10"}
TRACE=${TRACE:-$TRACES/AzureLLMInferenceTrace_code.csv}
SCALE=${SCALE:-"--time-scale 0.25 --token-scale 0.1 --max-context 250 --duration 240"}
MAXW=2
REPEAT=${REPEAT:-1}
SIM_SEEDS=${SIM_SEEDS:-9}
ensure_model
[ -f "$OUT/engine_t1_p64.json" ] || "$(dirname "$0")/engine.sh"
[ -f "$OUT/coldstart_t1.json" ] || "$(dirname "$0")/coldstart.sh" 1
if [ -z "${CORUN:-}" ]; then
    [ -f "$OUT/corun.json" ] || [ -n "${SIM_ONLY:-}" ] || "$(dirname "$0")/corun.sh" >&2
    CORUN=1
    [ -f "$OUT/corun.json" ] &&
        CORUN=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["corun_slowdown"])' "$OUT/corun.json")
fi
log "co-run slowdown $CORUN"

# Step times measured now (BRACKET=1): engine_t1_pP_$1.json for each prompt length in $2.
engine_now() { # $1: name, $2: prompt lengths
    for p in $2; do
        "$SYN" bench engine -m "$MODEL" -t 1 --batch 1,2,4,8,16,32 --prompt "$p" --gen 32 \
            --reps "${BRACKET_REPS:-5}" --json >"$OUT/engine_t1_p${p}_$1.json"
    done
}
# engine_t1_pP_$1.json: the mean of engine_t1_pP_$1_before.json and ..._after.json
engine_mean() { # $1: name, $2: prompt lengths
    for p in $2; do
        python3 - "$OUT/engine_t1_p${p}_$1" <<'PY'
import json, sys
base = sys.argv[1]
a, b = (json.load(open(f"{base}_{w}.json")) for w in ("before", "after"))
m = dict(a)
m["prefill_tokens_per_s"] = (a["prefill_tokens_per_s"] + b["prefill_tokens_per_s"]) / 2
tb = {d["batch"]: d["tokens_per_s"] for d in b["decode"]}
m["decode"] = [dict(d, tokens_per_s=(d["tokens_per_s"] + tb[d["batch"]]) / 2) for d in a["decode"]]
m["sample_us_per_row"] = (a.get("sample_us_per_row", 0) + b.get("sample_us_per_row", 0)) / 2
m["bracketed"] = "mean of the measurements before and after the real run"
json.dump(m, open(f"{base}.json", "w"), indent=1)
PY
    done
}

# 1. calibration: one warm worker, 2 requests/s, 64-token prompts, 32 output tokens. With
# BRACKET=1 the step times it is measured against are taken right before and right after it
# (engine_t1_p64_calib.json): the overhead is the small difference of two ~1 ms figures, and
# step times from minutes earlier moved it from 0.002 to 0.34 ms between two series.
calibrate() {
    log "calibration run"
    start_up calib 18305 --min-warm 1 --max-workers 1 --worker-threads 1
    "$SYN" bench load --url http://127.0.0.1:18305 --model s15m --rate 2 --duration 30 \
        --prompt-tokens 64 --output-tokens 32 -q --json "$OUT/validation_calibration.json" \
        --requests >&2
    stop_up
}
if [ -z "${SIM_ONLY:-}" ]; then
    [ -n "${BRACKET:-}" ] && { log "step times before the calibration"; measure engine_now calib_before 64; }
    measure calibrate
    annotate "$OUT/validation_calibration.json" "load_average_before=$M_LA" \
        "other_sessions_cpu_share=$M_OTHERS"
    [ -n "${BRACKET:-}" ] && { log "step times after the calibration"; measure engine_now calib_after 64; }
fi
CAL_ENG=$OUT/engine_t1_p64.json
if [ -n "${BRACKET:-}" ] && [ -f "$OUT/engine_t1_p64_calib_before.json" ]; then
    engine_mean calib 64
    CAL_ENG=$OUT/engine_t1_p64_calib.json
fi
read -r HOP_MS OVER_MS COLD_S < <(python3 - "$OUT" "$CAL_ENG" <<'PY'
import json, statistics as st, sys
out = sys.argv[1]
eng = json.load(open(sys.argv[2]))
cal = json.load(open(f"{out}/validation_calibration.json"))
cols = cal["request_columns"]
rows = [r for r in cal["requests"] if r[cols.index("outcome")] == "ok"]
P = st.median(r[cols.index("prompt_tokens")] for r in rows)
ttft = st.median(r[cols.index("ttft_s")] for r in rows)
tpot = st.median(r[cols.index("tpot_s")] for r in rows)
dec1 = 1.0 / next(d["tokens_per_s"] for d in eng["decode"] if d["batch"] == 1)
prefill = P / eng["prefill_tokens_per_s"] * 1.0
# the simulator adds sampling per row itself (sample_us_per_row of the engine run): the
# overhead left is the rest of what one decode step costs in the worker beyond the engine's
sample = eng.get("sample_us_per_row", 0.0) * 1e-6
over = max(0.0, tpot - dec1 - sample)
hop = max(0.0, ttft - prefill - over - sample)
cold = json.load(open(f"{out}/coldstart_t1.json"))["cold_penalty_s"]
print(f"{hop * 1e3:.3f} {over * 1e3:.3f} {cold:.4f}")
PY
)
log "calibrated: hop $HOP_MS ms, step overhead $OVER_MS ms, cold-start penalty $COLD_S s"

# 2. each policy (REPEAT times in a row): the real pool, then the simulator
for run in $(for p in $POLICIES; do seq -f "$p@%g" 1 "$REPEAT"; done); do
    pol=${run%@*} rep=${run##*@}
    K=0
    idle=${pol##*:}
    case $pol in min-warm:*) K=$(echo "$pol" | cut -d: -f2) ;; esac
    tag=$(echo "$pol" | tr ':' '_')
    [ "$REPEAT" -gt 1 ] && tag=${tag}_r$rep
    real_run() {
        log "real run: $pol"
        start_up "val_$tag" 18306 --min-warm "$K" --max-workers $MAXW --idle-timeout "$idle" \
            --max-seqs 16 --worker-threads 1 --max-queue 4096
        date +%s.%N >"$OUT/validation_real_$tag.t0"
        # shellcheck disable=SC2086
        "$SYN" bench load --url http://127.0.0.1:18306 --model s15m --trace "$TRACE" $SCALE -q \
            --json "$OUT/validation_real_$tag.json" --requests >&2
        sleep "$(awk -v i="$idle" 'BEGIN { print i + 3 }')" # the idle workers exit
        stop_up
        cp "$UP_LOG" "$OUT/validation_real_$tag.log"
    }
    # the step times one policy is simulated with: the series' own, or (BRACKET=1) the mean
    # of two measurements taken just before and just after its real run
    if [ -z "${SIM_ONLY:-}" ]; then
        [ -n "${BRACKET:-}" ] && { log "step times before the run"; measure engine_now "${tag}_before" "64 256"; }
        measure real_run
        echo "$M_LA $M_OTHERS" >"$OUT/validation_real_$tag.machine"
        [ -n "${BRACKET:-}" ] && { log "step times after the run"; measure engine_now "${tag}_after" "64 256"; }
    fi
    ENG64=$OUT/engine_t1_p64.json ENG256=$OUT/engine_t1_p256.json BRACKETED=0
    if [ -n "${BRACKET:-}" ] && [ -f "$OUT/engine_t1_p64_${tag}_before.json" ]; then
        engine_mean "$tag" "64 256"
        ENG64=$OUT/engine_t1_p64_$tag.json ENG256=$OUT/engine_t1_p256_$tag.json BRACKETED=1
        log "simulating with bracketed step times: $(python3 -c "
import json,sys
for f in sys.argv[1:]:
    d=json.load(open(f)); print(f.split('/')[-1], 'batch 1', round(d['decode'][0]['tokens_per_s']), 'batch 16', round(next(x['tokens_per_s'] for x in d['decode'] if x['batch']==16)), end='; ')
" "$OUT/engine_t1_p64_${tag}_before.json" "$OUT/engine_t1_p64_${tag}_after.json")"
    fi
    read -r la others <"$OUT/validation_real_$tag.machine"
    t0=$(cat "$OUT/validation_real_$tag.t0")
    simulate() { # this run's simulation; the arguments are added to bench sim's
        # shellcheck disable=SC2086
        "$SIM_BIN" bench sim --trace "$TRACE" $SCALE --policy "$pol" --max-workers $MAXW \
            --max-seqs 16 --model-json "$ENG64" --model-json "$ENG256" --cold-start "$COLD_S" \
            --hop-ms "$HOP_MS" --step-overhead-ms "$OVER_MS" --cpu-cores 2 --worker-threads 1 \
            --corun-slowdown "$CORUN" "$@"
    }
    simulate --json "$OUT/validation_sim_$tag.json" \
        --timeline "$OUT/validation_sim_$tag.timeline.csv" >&2
    for k in $(seq 1 "$SIM_SEEDS"); do # the same, at other heartbeat and tick phases
        simulate --phase-seed "$k" --json "$OUT/validation_sim_${tag}_s$k.json" >/dev/null
    done
    python3 - "$OUT" "$tag" "$t0" "$la" "$pol" "$HOP_MS" "$OVER_MS" "$COLD_S" "$others" \
        "$BRACKETED" "$SIM_SEEDS" "$CORUN" <<'PY'
import datetime, json, re, statistics as st, sys
out, tag, t0, la, pol, hop, over, cold, others, bracketed, seeds, corun = sys.argv[1:]
t0 = float(t0)
real = json.load(open(f"{out}/validation_real_{tag}.json"))
sim0 = json.load(open(f"{out}/validation_sim_{tag}.json"))["policies"][0]
phases = [json.load(open(f"{out}/validation_sim_{tag}_s{k}.json"))["policies"][0]
          for k in range(1, int(seeds) + 1)]
keys = ("ttft_p99_ms", "ttft_p50_ms", "worker_seconds", "workers_started", "end_s", "slo_attainment")
# the simulator's figure: the median over the phases when there are several, else phase 0
sim = {k: st.median(p[k] for p in phases) for k in keys} if phases else sim0
end = t0 + real["wall_s"]
ws = 0.0
starts = 0
for line in open(f"{out}/validation_real_{tag}.log"):
    m = re.match(r"(\S+) INFO  pool: worker (\S+) \(pid \d+\) exited.* after ([0-9.]+) s", line)
    if not m:
        continue
    t_exit = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()
    life = float(m.group(3))
    spawn = t_exit - life
    if spawn >= t0:        # started by the trace: paid from start to exit
        ws += life
        starts += 1
    else:                  # a warm worker from before the run: paid over the run only
        ws += max(0.0, min(t_exit, end) - t0)
res = {
    "policy": pol, "load_average_before": float(la), "t0_unix": t0,
    "other_sessions_cpu_share": float(others),
    "calibration": {"hop_ms": float(hop), "step_overhead_ms": float(over), "cold_penalty_s": float(cold)},
    "corun_slowdown": float(corun),
    "step_times_bracketed": bracketed == "1",
    "requests": len(real["requests"]) if isinstance(real["requests"], list) else real["requests"],
    "real_ok": real["ok"],
    "real": {"ttft_p99_ms": real["ttft"]["p99_ms"], "ttft_p50_ms": real["ttft"]["p50_ms"],
             "worker_seconds": ws, "workers_started": starts, "wall_s": real["wall_s"],
             "slo_attainment": real["slo_attainment"]},
    "sim": {k: sim[k] for k in keys},
    "sim_phase_seeds": len(phases),
    "sim_phase0": {k: sim0[k] for k in keys},
    "sim_phases": {k: [p[k] for p in phases] for k in ("ttft_p99_ms", "worker_seconds", "workers_started")},
}
res["error_ttft_p99"] = res["sim"]["ttft_p99_ms"] / res["real"]["ttft_p99_ms"] - 1
res["error_worker_seconds"] = res["sim"]["worker_seconds"] / res["real"]["worker_seconds"] - 1
json.dump(res, open(f"{out}/validation_{tag}.json", "w"), indent=1)
print(f"{pol}: p99 TTFT real {res['real']['ttft_p99_ms']:.1f} ms sim {res['sim']['ttft_p99_ms']:.1f} ms "
      f"({100 * res['error_ttft_p99']:+.1f}%); worker-s real {ws:.1f} sim {sim['worker_seconds']:.1f} "
      f"({100 * res['error_worker_seconds']:+.1f}%); starts real {starts} sim {sim['workers_started']}")
if phases:
    pp = res["sim_phases"]["ttft_p99_ms"]
    print(f"  simulated p99 TTFT over {len(phases)} phases {min(pp):.1f}-{max(pp):.1f} ms (median above), "
          f"phase 0 {sim0['ttft_p99_ms']:.1f} ms; starts {min(res['sim_phases']['workers_started'])}-"
          f"{max(res['sim_phases']['workers_started'])}")
PY
done

# 3. with REPEAT > 1: each policy's medians over its runs
[ "$REPEAT" -gt 1 ] || exit 0
for pol in $POLICIES; do
    python3 - "$OUT" "$(echo "$pol" | tr ':' '_')" "$REPEAT" "$pol" <<'PY'
import json, statistics as st, sys
out, base, n, pol = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
runs = [json.load(open(f"{out}/validation_{base}_r{i}.json")) for i in range(1, n + 1)]
res = {"policy": pol, "runs": n}
for side in ("real", "sim"):
    for k in ("ttft_p99_ms", "worker_seconds", "slo_attainment"):
        v = [r[side][k] for r in runs]
        res[f"{side}_{k}"] = v
        res[f"{side}_{k}_median"] = st.median(v)
rp = res["real_ttft_p99_ms"]
res["real_ttft_p99_spread"] = max(rp) / min(rp) - 1
res["error_ttft_p99_of_medians"] = res["sim_ttft_p99_ms_median"] / res["real_ttft_p99_ms_median"] - 1
res["error_worker_seconds_of_medians"] = (res["sim_worker_seconds_median"] /
                                          res["real_worker_seconds_median"] - 1)
json.dump(res, open(f"{out}/repeated_{base}.json", "w"), indent=1)
print(f"{pol}, {n} runs: p99 TTFT real {', '.join(f'{x:.0f}' for x in rp)} ms (spread "
      f"{100 * res['real_ttft_p99_spread']:.0f}%), median {res['real_ttft_p99_ms_median']:.0f} against "
      f"the simulator's {res['sim_ttft_p99_ms_median']:.0f} ({100 * res['error_ttft_p99_of_medians']:+.1f}%); "
      f"worker-s median {res['real_worker_seconds_median']:.1f} / {res['sim_worker_seconds_median']:.1f} "
      f"({100 * res['error_worker_seconds_of_medians']:+.1f}%)")
PY
done
