#!/bin/bash
# The slow proofs (`make test-slow`) as two pytest processes at once: tests/image (the image builds and qemu
# boots, one after the other, sharing one build of each image) and the rest of the slow suite, which mostly
# waits on real processes and so fits beside the emulated guests on two cores. The rest's output is kept in
# build/test-slow-rest.log and printed after the image tests'. Exit status 0 when both pass (5, "no test
# selected", counts as passing), else 1.
#
# Not pytest-xdist's --dist loadgroup: under pytest 9 it does not keep an xdist_group's tests on one worker
# (tried: the image tests were spread over both workers, and each built the same image in the same place).
set -uo pipefail
PYTHON=${1:-.venv/bin/python}
cd "$(dirname "$0")/.."
mkdir -p build
REST_LOG=build/test-slow-rest.log
"$PYTHON" -m pytest -q -m slow --ignore=tests/image -p no:cacheprovider > "$REST_LOG" 2>&1 &
rest_pid=$!
trap 'kill "$rest_pid" 2>/dev/null' INT TERM
"$PYTHON" -m pytest -q -m slow tests/image
image=$?
wait "$rest_pid"
rest=$?
echo "---- the rest of the slow suite (run beside the image tests; $REST_LOG):"
cat "$REST_LOG"
passed() { [ "$1" -eq 0 ] || [ "$1" -eq 5 ]; }
if passed "$image" && passed "$rest"; then
  exit 0
fi
echo "make test-slow: image tests exited $image, the rest exited $rest" >&2
exit 1
