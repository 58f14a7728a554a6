#!/usr/bin/env bash
for r in 1 2; do
 echo "== s8-final"; /tmp/s9/burst.sh /tmp/s8/syn-final
 echo "== head (resident)"; /tmp/s9/burst.sh /tmp/s9/syn-head
 echo "== head (mapped)"; SYNAPSE_WEIGHTS=mapped /tmp/s9/burst.sh /tmp/s9/syn-head
done
