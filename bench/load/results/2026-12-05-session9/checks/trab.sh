#!/usr/bin/env bash
P=18399
run() { BIN=$1; W=$(mktemp -d /tmp/s9tr.XXXX)
$BIN up --model /tmp/synapse-bench-load/stories15m-f16.gguf --name s15m --port $P --min-warm 1 --max-workers 2 --idle-timeout 10 --max-seqs 16 --worker-threads 1 --max-queue 4096 --log-dir $W > $W/up.log 2>&1 & UP=$!
for i in $(seq 100); do curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$P/readyz | grep -q 200 && break; sleep 0.1; done; sleep 0.5
$BIN bench load --url http://127.0.0.1:$P --model s15m --trace /work/shared/traces/azure-llm-2023/AzureLLMInferenceTrace_code.csv --time-scale 0.5 --token-scale 0.1 --max-context 250 --duration ${DUR:-60} -q --json $W/l.json >/dev/null 2>&1
python3 -c "
import json; d=json.load(open('$W/l.json')); t=d['ttft']; print('$2', 'n', d['ok'], 'ttft p50 %.1f p90 %.1f p99 %.1f ms' % (t['p50_ms'], t['p90_ms'], t['p99_ms']))"
kill $UP; wait $UP; rm -rf $W; }
for r in 1 2; do run /tmp/s8/syn-final "s8-final(mapped)"; run /tmp/s9/syn-val2 "head(resident)"; SYNAPSE_WEIGHTS=mapped run /tmp/s9/syn-val2 "head(mapped)"; done
