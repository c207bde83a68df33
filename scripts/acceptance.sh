#!/bin/bash
# The four acceptance runs of the README's "Measured figures", one after another.
# A benchmark: run it alone (no tests, builds or other benchmarks beside it).
cd "$(dirname "$0")/.."
for args in "RUNTIME=docker" "RUNTIME=docker SCENARIO=json" "RUNTIME=local" "RUNTIME=local SCENARIO=json"; do
  echo "=== make bench REPLICAS=4 $args  $(date +%T)"
  start=$(date +%s)
  make bench REPLICAS=4 $args 2>&1 | tail -40
  echo "=== wall $(( $(date +%s) - start )) s"
done
