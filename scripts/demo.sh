#!/usr/bin/env bash
# THE demo of swift-handoff: an IoT edge gateway hands its state to its standby on a real SIGTERM.
#
# Installs what is missing (scripts/install-deps.sh: libmosquitto-dev, mosquitto, openssl, ... with apt-get), builds
# the edge gateway example, and runs handoff-demo: a private mosquitto from broker/mosquitto.conf on free loopback
# ports, the edge-gateway primary and standby and the simulated sensors as real processes, SIGTERM to the primary,
# then what was handed off, how long it took, and per sensor the readings sent and counted.
# Exits 0 only when every reading was counted exactly once.
#
# With --crash the primary is killed instead (SIGKILL, no handoff): both gateways checkpoint their state on the
# broker every 500 ms, the broker publishes the dead primary's MQTT Will after 1 s, and the standby merges the
# primary's last checkpoint and takes over. Then it prints the readings recovered from that checkpoint, the readings
# lost (counted by the primary after it), that none was counted twice, and the time from SIGKILL to the merge.
# Exits 0 only when none was counted twice and no more were lost than one checkpoint interval of sensor traffic.
#
# Options are passed to handoff-demo (--crash, --sensors N, --rate PER_SECOND, --before SECONDS, --after SECONDS;
# with --crash also --checkpoint-ms MILLISECONDS, --will-delay SECONDS).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$repo"

bash scripts/install-deps.sh

echo "== building the edge gateway example (swift build; the first build takes a few minutes)"
for product in edge-gateway edge-sensors handoff-demo; do
    swift build --quiet --product "$product"
done
bin=$(swift build --show-bin-path)

echo "== running handoff-demo"
echo
exec "$bin/handoff-demo" "$@"
