#!/usr/bin/env bash
# gap.sh BIN GAP [preload]: 10 single 61-token prefills, GAP apart; prints worker prefill step ms + faults
BIN=$1 GAP=$2 PRE=${3:-}
W=/tmp/s9dbg; rm -rf $W; mkdir -p $W
SYNAPSE_LOG=debug LD_PRELOAD=$PRE $BIN up --model /tmp/synapse-bench-load/stories15m-f16.gguf --name s15m --port 18396 --min-warm 1 --max-workers 1 --worker-threads 1 --log-dir $W > $W/up.log 2>&1 & UP=$!
for i in $(seq 100); do curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:18396/readyz | grep -q 200 && break; sleep 0.1; done; sleep 1
WK=$(pgrep -f "$BIN worker"); P=$(python3 -c "print(' '.join(['hello']*60))")
f0=$(awk '{print $10}' /proc/$WK/stat)
for i in $(seq 10); do curl -s -o /dev/null http://127.0.0.1:18396/v1/completions -H 'Content-Type: application/json' -d "{\"model\":\"s15m\",\"prompt\":\"$P\",\"max_tokens\":1,\"stream\":true}"; sleep $GAP; done
f1=$(awk '{print $10}' /proc/$WK/stat)
kill $UP; wait $UP
echo "gap $GAP pre=${PRE:+mlock}: faults/req $(( (f1-f0)/10 )) prefill ms: $(grep -h "61 tokens" $W/*.log | awk '{print $(NF-1)}' | tr '\n' ' ')"
