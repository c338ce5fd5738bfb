#!/usr/bin/env bash
# THE test command of swift-handoff: installs missing system packages, builds everything including the tests and
# fails on any compiler warning in this repository's own files (warnings of dependencies do not count), then runs
# `swift test` twice (all but ClusterTests, then ClusterTests alone), each ending with its summary line. Exits with the
# first failing run's status.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$repo"

bash scripts/install-deps.sh

# An incremental build prints no warnings for files it does not recompile: mark this repository's own Swift files as
# changed so that every run compiles them, and sees their warnings, again.
for folder in Sources Tests Examples Benchmarks; do
    if [ -d "$folder" ]; then
        find "$folder" -name '*.swift' -not -path '*/.build*' -exec touch {} +
    fi
done

build_log=$(mktemp)
trap 'rm -f "$build_log"' EXIT

echo "== swift build --build-tests"
set +e
swift build --build-tests 2>&1 | tee "$build_log"
build_status=${PIPESTATUS[0]}
set -e
if [ "$build_status" -ne 0 ]; then
    echo "error: swift build --build-tests failed (status $build_status)" >&2
    exit "$build_status"
fi

# Warnings about this repository's own files: `<repo>/{Sources,Tests,Examples,Benchmarks}/…: warning: …`.
# The compiler prints each diagnostic several times (once per compile job and in its excerpt); count each once.
own_warnings=$(awk -v prefix="$repo/" '
    index($0, prefix) == 1 && $0 ~ /: warning:/ {
        rest = substr($0, length(prefix) + 1)
        if (rest ~ /^(Sources|Tests|Examples|Benchmarks)\//) print
    }' "$build_log" | sort -u)
if [ -n "$own_warnings" ]; then
    echo >&2
    echo "error: the build printed warnings for this repository's files (the project builds with zero warnings):" >&2
    echo "$own_warnings" >&2
    exit 1
fi

# Two runs: the clustered-broker tests (two ejabberd nodes, a Redis server, 16 successors racing) run alone after the
# others, since on a 2-core machine they would starve the timing-sensitive tests running beside them.
# Each run's output is also kept, so that the end of the output names every failure of both runs (a CI log may only
# show its last lines).
main_log=$(mktemp)
cluster_log=$(mktemp)
trap 'rm -f "$build_log" "$main_log" "$cluster_log"' EXIT

echo "== swift test (all but ClusterTests)"
set +e
swift test --skip ClusterTests 2>&1 | tee "$main_log"
test_status=${PIPESTATUS[0]}
echo "== swift test --filter ClusterTests"
swift test --filter ClusterTests 2>&1 | tee "$cluster_log"
cluster_status=${PIPESTATUS[0]}
set -e

summarize() { # name, status, log (grep finding nothing is not a failure here)
    echo "== $1: status $2"
    { grep -E '^(✘|error:|Fatal error|.*: error: )' "$3" || true; } | { grep -v '^✘ Suite' || true; } | head -40
    { grep -E '^(✔|✘) Test run with' "$3" || true; } | tail -1
}
echo
echo "== summary"
summarize "swift test --skip ClusterTests" "$test_status" "$main_log"
summarize "swift test --filter ClusterTests" "$cluster_status" "$cluster_log"
if [ "$test_status" -ne 0 ]; then exit "$test_status"; fi
exit "$cluster_status"
