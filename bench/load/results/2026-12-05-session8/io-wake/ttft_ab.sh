#!/bin/bash
# TTFT and TPOT at 2 requests/s, 64-token prompts, 32 tokens, one warm stories15m worker of 1 thread; alternating binaries NAME=BIN
for round in 1 2 3; do
  for arg in "$@"; do
    name=${arg%%=*} B=${arg#*=}
    d=/tmp/s8/ab-$name-$round; rm -rf $d; mkdir -p $d
    ($B up --model /tmp/synapse-bench-load/stories15m-f16.gguf --name s15m --port 18402 --min-warm 1 --max-workers 1 --worker-threads 1 --log-dir $d > $d/up.log 2>&1 &)
    sleep 3
    echo "round $round $name load $(cut -d' ' -f1 /proc/loadavg)"
    /work/main/synapse bench load --url http://127.0.0.1:18402 --model s15m --rate 2 --duration 20 --prompt-tokens 64 --output-tokens 32 -q --json $d/load.json 2>&1 | grep -E "TTFT|TPOT"
    pkill -f "$B up"; sleep 1.5
  done
done
