#!/usr/bin/env bash
# burst.sh BIN: fresh stack (stories15m, 1 worker, 1 thread); 3 bursts of 16 requests (250-token prompts, 8 out), 2 s apart
BIN=$1; W=$(mktemp -d /tmp/s9burst.XXXX)
$BIN up --model /tmp/synapse-bench-load/stories15m-f16.gguf --name s15m --port 18397 --min-warm 1 --max-workers 1 --worker-threads 1 --max-seqs 16 --log-dir $W > $W/up.log 2>&1 & UP=$!
for i in $(seq 100); do curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:18397/readyz | grep -q 200 && break; sleep 0.1; done; sleep 0.5
for b in 1 2 3; do
$BIN bench load --url http://127.0.0.1:18397 --model s15m --rate 2000 --duration 0.008 --prompt-tokens 250 --output-tokens 8 -q --json $W/b.json >/dev/null 2>&1
python3 -c "
import json; d=json.load(open('$W/b.json')); t=d['ttft']; print('burst $b: n', d['ok'], 'ttft p50 %.1f max %.1f ms' % (t['p50_ms'], t['max_ms']))"
sleep ${GAP:-2}
done
kill $UP; wait $UP; rm -rf $W
