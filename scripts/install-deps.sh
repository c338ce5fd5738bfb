#!/usr/bin/env bash
# Installs what building and testing swift-handoff needs on Debian/Ubuntu, when it is missing:
#   libmosquitto-dev mosquitto mosquitto-clients openssl pkg-config python3 (the tests' TCP proxy) python3-paho-mqtt
#   python3-cryptography (the independent Python client of the interoperability tests; AES-GCM of PROTOCOL.md §10)
#   redis-server (the Redis claim arbiter tests, PROTOCOL.md §11)
#   ejabberd (the 2-node loopback cluster of ClusterTestKit/ClusterTests; its mod_mqtt is the clustered broker)
# Idempotent: runs apt-get (update first) only when a package is missing. As root it calls apt-get directly,
# otherwise through sudo. It also checks that `swift` is installed (it cannot install Swift itself).
set -euo pipefail

packages=(libmosquitto-dev mosquitto mosquitto-clients openssl pkg-config python3 python3-paho-mqtt python3-cryptography redis-server ejabberd)

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
    for package in "${packages[@]}"; do
        status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
        if [ "$status" != "install ok installed" ]; then
            missing+=("$package")
        fi
    done
else
    # Not Debian/Ubuntu: only say what to install.
    for program in mosquitto mosquitto_pub mosquitto_sub openssl pkg-config; do
        if ! PATH=$PATH:/usr/sbin:/usr/local/sbin:/opt/homebrew/sbin command -v "$program" >/dev/null 2>&1; then
            echo "error: $program not found. On macOS: brew install mosquitto openssl pkg-config" >&2
            exit 1
        fi
    done
fi

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        run_as_root=()
    elif command -v sudo >/dev/null 2>&1; then
        run_as_root=(sudo)
    else
        echo "error: missing packages: ${missing[*]}; run as root: apt-get install ${missing[*]}" >&2
        exit 1
    fi
    echo "Installing ${missing[*]}"
    "${run_as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${run_as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

# The ejabberd package starts a system ejabberd (ports 5222, 5269, 5280, 1883 and epmd's 4369) where an init system
# runs; the tests start their own private nodes and need none of it: stop and disable it.
bash "$(dirname "${BASH_SOURCE[0]}")/stop-system-ejabberd.sh"

if ! command -v swift >/dev/null 2>&1; then
    echo "error: swift not found. Install a Swift 6 toolchain (https://www.swift.org/install/, e.g. with swiftly) and put its usr/bin on PATH." >&2
    exit 1
fi
