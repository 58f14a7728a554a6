#!/usr/bin/env python3
"""Markdown tables from bench/load/results (the numbers in docs/BENCHMARKS.md, "Load and cost").

    python3 bench/load/summary.py [RESULTS_DIR]
"""
import glob
import json
import os
import re
import sys

RES = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "results")


def load(p):
    with open(p) as f:
        return json.load(f)


def num(s, pattern):
    return float(re.search(pattern, s).group(1))


def generator():
    rows = sorted((load(p) for p in glob.glob(f"{RES}/generator_rate*.json")), key=lambda j: j["rate"])
    if not rows:
        return
    print("| offered | sent/s | completed/s | send lag p50 / p99 / max (ms) | TTFT p99 (ms) | errors | max conns | load before | others' CPU |")
    print("|---|---|---|---|---|---|---|---|---|")
    for j in rows:
        errs = j["requests"] - j["ok"]
        print(f"| {j['rate']:.0f}/s | {j['send_rps']:.0f} | {j['rps']:.0f} | {j['send_lag_p50_ms']:.2f} / "
              f"{j['send_lag_p99_ms']:.2f} / {j['send_lag_max_ms']:.1f} | {j['ttft']['p99_ms']:.2f} | {errs} | "
              f"{j['max_connections']} | {j.get('load_average_before', 0):.2f} | "
              f"{100 * j.get('other_sessions_cpu_share', 0):.0f}% |")
    print()


def batching(prefix="batching"):
    for seqs in (16, 1):
        rows = sorted((load(p) for p in glob.glob(f"{RES}/{prefix}_seqs{seqs}_rate*.json")),
                      key=lambda j: j["rate"])
        if not rows:
            continue
        print(f"{prefix}, --max-seqs {seqs}:\n")
        print("| rate | done/s | goodput/s | attainment | TTFT p50 / p99 (ms) | TPOT p50 / p99 (ms) | ITL p99 (ms) | errors | load before | others' CPU |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for j in rows:
            errs = j["requests"] - j["ok"]
            print(f"| {j['rate']:.0f} | {j['rps']:.1f} | {j['goodput_rps']:.1f} | {100 * j['slo_attainment']:.0f}% | "
                  f"{j['ttft']['p50_ms']:.0f} / {j['ttft']['p99_ms']:.0f} | {j['tpot']['p50_ms']:.1f} / "
                  f"{j['tpot']['p99_ms']:.1f} | {j['itl']['p99_ms']:.1f} | {errs} | "
                  f"{j.get('load_average_before', 0):.2f} | {100 * j.get('other_sessions_cpu_share', 0):.0f}% |")
        ok = [j["rate"] for j in rows if j["ttft"]["p99_ms"] <= 200 and j["tpot"]["p99_ms"] <= 50 and j["ok"] == j["requests"]]
        print(f"\nhighest rate with TTFT p99 <= 200 ms and TPOT p99 <= 50 ms: {max(ok) if ok else 'none'} req/s\n")


def coldstart():
    for p in sorted(glob.glob(f"{RES}/coldstart_t*.json")):
        j = load(p)
        w, pool = j["worker_cold_start_s"], j["pool_start_to_registered_s"]
        print(f"- {j['threads']} thread(s), {j['starts']} starts (load before {j['load_average_before']:.2f}, "
              f"others' CPU {100 * j.get('other_sessions_cpu_share', 0):.0f}%): worker process start to ready "
              f"median {1e3 * w['median']:.0f} ms ({1e3 * w['min']:.0f}-{1e3 * w['max']:.0f}); pool start to "
              f"registered median {1e3 * pool['median']:.0f} ms; TTFT cold median {1e3 * j['ttft_cold_s']['median']:.0f} ms "
              f"against warm {1e3 * j['ttft_warm_s']['median']:.0f} ms: penalty {1e3 * j['cold_penalty_s']:.0f} ms")
    print()


def validation():
    rows = [load(p) for p in sorted(glob.glob(f"{RES}/validation_*.json"))
            if "real" in load(p) if not p.endswith("calibration.json")]
    if not rows:
        return
    c = rows[0]["calibration"]
    print(f"calibration: hop {c['hop_ms']:.1f} ms, step overhead {c['step_overhead_ms']:.2f} ms, "
          f"cold-start penalty {1e3 * c['cold_penalty_s']:.0f} ms\n")
    print("| policy | requests | p99 TTFT real / sim (ms) | error | worker-s real / sim | error | starts real / sim | p50 TTFT real / sim (ms) | load before | others' CPU |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['policy']} | {r['requests']} | {r['real']['ttft_p99_ms']:.0f} / {r['sim']['ttft_p99_ms']:.0f} | "
              f"{100 * r['error_ttft_p99']:+.1f}% | {r['real']['worker_seconds']:.1f} / {r['sim']['worker_seconds']:.1f} | "
              f"{100 * r['error_worker_seconds']:+.1f}% | {r['real']['workers_started']} / {r['sim']['workers_started']} | "
              f"{r['real']['ttft_p50_ms']:.0f} / {r['sim']['ttft_p50_ms']:.0f} | {r['load_average_before']:.2f} | "
              f"{100 * r.get('other_sessions_cpu_share', 0):.0f}% |")
    print()


def repeated():
    rows = [load(p) for p in sorted(glob.glob(f"{RES}/repeated_*.json"))]
    if not rows:
        return
    print("| policy | runs | p99 TTFT real, each run (ms) | real spread | median real / sim (ms) | error | "
          "worker-s median real / sim | error |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['policy']} | {r['runs']} | {', '.join(f'{x:.0f}' for x in r['real_ttft_p99_ms'])} | "
              f"{100 * r['real_ttft_p99_spread']:.0f}% | {r['real_ttft_p99_ms_median']:.0f} / "
              f"{r['sim_ttft_p99_ms_median']:.0f} | {100 * r['error_ttft_p99_of_medians']:+.1f}% | "
              f"{r['real_worker_seconds_median']:.1f} / {r['sim_worker_seconds_median']:.1f} | "
              f"{100 * r['error_worker_seconds_of_medians']:+.1f}% |")
    print()


def traces():
    for p in sorted(glob.glob(f"{RES}/traces_*_cold*.json")):
        name, cold = re.search(r"traces_(\w+)_cold(\w+)\.json", p).groups()
        j = load(p)
        print(f"{name} trace ({j['requests']} requests, {j['span_s'] / 60:.0f} min), cold start {cold}:\n")
        print("| policy | starts | worker-s | $ | $/M tokens | SLO attainment | TTFT p50 / p99 (ms) | TPOT p99 (ms) |")
        print("|---|---|---|---|---|---|---|---|")
        for q in j["policies"]:
            print(f"| {q['policy']} | {q['workers_started']} | {q['worker_seconds']:.0f} | {q['cost']:.3f} | "
                  f"{q['cost_per_mtok']:.3f} | {100 * q['slo_attainment']:.1f}% | {q['ttft_p50_ms']:.0f} / "
                  f"{q['ttft_p99_ms']:.0f} | {q['tpot_p99_ms']:.1f} |")
        print()


if __name__ == "__main__":
    generator()
    batching("batching")
    batching("batching_t1")
    coldstart()
    validation()
    repeated()
    traces()
