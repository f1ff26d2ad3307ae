#!/usr/bin/env bash
# Renders the mixin into the files shipped under deploy/: the alerting and recording rules, the
# PrometheusRule and the Grafana dashboard. Needs Debian's `jsonnet` (apt-get install jsonnet).
#
#   mixin/generate.sh          # rewrites the files in this repository
#   mixin/generate.sh OUTDIR   # writes them under OUTDIR instead (same relative paths)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/..}"
mkdir -p "$out/deploy/prometheus" "$out/deploy/kubernetes/base" "$out/deploy/grafana"
jsonnet -J "$here" -S -m "$out" "$here/render.jsonnet" >/dev/null
