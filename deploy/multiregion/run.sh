#!/usr/bin/env bash
# Run the multi-region example on loopback (ports of east.conf / west.conf).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
exec python deploy/multiregion/example.py "$@"
