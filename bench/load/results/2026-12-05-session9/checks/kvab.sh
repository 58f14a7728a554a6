#!/usr/bin/env bash
# kvab.sh: TTFT at 1 req/s (Poisson), 250-token prompts, 16 out, stories15m, 1 worker 1 thread; binaries alternate
P=18398
run() { BIN=$1; W=$(mktemp -d /tmp/s9kv.XXXX)
$BIN up --model /tmp/synapse-bench-load/stories15m-f16.gguf --name s15m --port $P --min-warm 1 --max-workers 1 --worker-threads 1 --max-seqs 16 --log-dir $W > $W/up.log 2>&1 & UP=$!
for i in $(seq 100); do curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$P/readyz | grep -q 200 && break; sleep 0.1; done; sleep 0.5
$BIN bench load --url http://127.0.0.1:$P --model s15m --rate 1 --duration ${DUR:-30} --prompt-tokens 250 --output-tokens 16 -q --json $W/l.json >/dev/null 2>&1
python3 -c "
import json; d=json.load(open('$W/l.json')); t=d['ttft']; print('$2', 'n', d['ok'], 'ttft p50 %.1f p90 %.1f p99 %.1f ms' % (t['p50_ms'], t['p90_ms'], t['p99_ms']))"
kill $UP; wait $UP; rm -rf $W; }
for r in 1 2; do run /tmp/s9/syn-val2 "resident+kv4k"; run /tmp/syn-kv "resident+kvTHP"; SYNAPSE_WEIGHTS=mapped run /tmp/syn-kv "mapped+kvTHP"; done
