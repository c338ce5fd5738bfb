#!/usr/bin/env bash
# Stops and disables the system ejabberd service of Debian's `ejabberd` package, which its postinst starts where an
# init system allows it (it listens on 5222, 5269, 5280, 5443 and 1883, and registers with the system epmd on 4369).
# The tests (ClusterTestKit) start private nodes on free ports with their own epmd and need none of it.
# In a container without systemd whose policy-rc.d refuses service starts (Docker images), the package starts nothing
# and this script does nothing. Quiet and idempotent when there is nothing to stop. As root it runs the commands
# directly, otherwise through sudo.
set -euo pipefail

command -v dpkg-query >/dev/null 2>&1 || exit 0
status=$(dpkg-query -W -f='${Status}' ejabberd 2>/dev/null || true)
[ "$status" = "install ok installed" ] || exit 0

if [ "$(id -u)" -eq 0 ]; then
    run_as_root=()
elif command -v sudo >/dev/null 2>&1; then
    run_as_root=(sudo)
else
    run_as_root=()
fi

if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    if systemctl is-active --quiet ejabberd || systemctl is-enabled --quiet ejabberd 2>/dev/null; then
        echo "Stopping and disabling the system ejabberd service (the tests run their own nodes)"
        "${run_as_root[@]}" systemctl disable --now ejabberd
    fi
else
    # No systemd: the package's `invoke-rc.d ejabberd start` ran the SysV script unless policy-rc.d refused it. The
    # system node runs as the user ejabberd; the tests' nodes run as the user running the tests.
    if pgrep -u ejabberd -x beam.smp >/dev/null 2>&1; then
        echo "Stopping the system ejabberd (the tests run their own nodes)"
        "${run_as_root[@]}" /etc/init.d/ejabberd stop || true
    fi
    if compgen -G '/etc/rc[2345].d/S*ejabberd' >/dev/null && command -v update-rc.d >/dev/null 2>&1; then
        echo "Disabling the system ejabberd's boot start"
        "${run_as_root[@]}" update-rc.d ejabberd disable >/dev/null 2>&1 || true
    fi
fi
