#!/usr/bin/env bash
# Run one atheris harness for a bounded time: fuzz/run.sh HARNESS SECONDS
#   HARNESS: fuzz_wire, fuzz_addresses, fuzz_hostconfig, fuzz_trace, fuzz_ndp or fuzz_pcap
# New corpus entries go to a temporary directory (the committed seeds in
# fuzz/corpus/HARNESS are read, never written); a crashing input is saved
# under $FUZZ_ARTIFACTS (default /tmp/failoverd-fuzz/HARNESS/) and the exit
# status is non-zero. PYTHON picks the interpreter (default: the project's venv).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 HARNESS [SECONDS]   (harnesses: $(cd "$here" && ls fuzz_*.py | sed 's/\.py$//' | tr '\n' ' '))" >&2
    exit 64
fi
harness=${1%.py}
seconds=${2:-60}
if [ ! -f "$here/$harness.py" ]; then
    echo "$0: no harness $here/$harness.py" >&2
    exit 64
fi
case $seconds in (*[!0-9]*|'') echo "$0: SECONDS must be a whole number" >&2; exit 64;; esac
python=${PYTHON:-$here/../.venv/bin/python}
[ -x "$python" ] || python=python3
artifacts=${FUZZ_ARTIFACTS:-/tmp/failoverd-fuzz/$harness}
mkdir -p "$artifacts" "$here/corpus/$harness"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$here/.."
status=0
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$python" "$here/$harness.py" \
    -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$work" "$here/corpus/$harness" || status=$?
if [ $status -ne 0 ]; then
    echo "$0: $harness failed (status $status); crashing input(s) in $artifacts/" >&2
fi
exit $status
