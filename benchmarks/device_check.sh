#!/usr/bin/env bash
# One command for a GPU machine (one H100/H200, <= 8 minutes): MFU of both training phases at the coinrun
# preset, generation frames/s (eager and compiled), loader windows/s, a short convergence check and, with
# --lam-data DIR, the preset's LAM trained on CoinRun with its NMI and oracle gap, as a table; with OUT set, also
# $OUT/device_check.txt and .json. Extra arguments go to benchmarks/device_check.py (--dry: CPU, seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
exec env PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" timeout 480 "$PYTHON" benchmarks/device_check.py "$@"
