#!/usr/bin/env bash
# Runs the project's mosquitto (broker/mosquitto.conf) in the foreground, for trying the library by
# hand. It generates test certificates and a config derived from broker/mosquitto.conf into
# ./run/broker (gitignored), then execs mosquitto; stop it with Ctrl-C (a graceful stop saves the
# store, so retained messages survive into the next run).
#
# The derived config keeps every line of broker/mosquitto.conf except that:
#   - `listener 1883|1884|8883` become `listener PORT ADDRESS` with the ports and address below;
#   - paths under /mosquitto/config/ and /mosquitto/data/ move into ./run/broker/ and
#     ./run/broker/data/ (passwd and acl are copied there, certificates generated in certs/);
#   - when run as root, `user root` is added (mosquitto would otherwise switch to the `mosquitto`
#     user, which cannot read ./run/broker).
#
# usage: scripts/broker.sh [--plain-port N] [--auth-port N] [--tls-port N] [--bind ADDRESS] [--dir DIR]
#        defaults: 1883, 1884, 8883, 127.0.0.1, ./run/broker
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
plain_port=1883
auth_port=1884
tls_port=8883
bind=127.0.0.1
dir=$repo/run/broker

while [ $# -gt 0 ]; do
    case $1 in
        --plain-port) plain_port=$2; shift 2 ;;
        --auth-port) auth_port=$2; shift 2 ;;
        --tls-port) tls_port=$2; shift 2 ;;
        --bind) bind=$2; shift 2 ;;
        --dir) dir=$2; shift 2 ;;
        -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
done

mosquitto=$(PATH=$PATH:/usr/sbin:/usr/local/sbin command -v mosquitto || true)
if [ -z "$mosquitto" ]; then
    echo "error: mosquitto not found. Install it: apt-get install mosquitto (Debian/Ubuntu), brew install mosquitto (macOS)" >&2
    exit 1
fi

mkdir -p "$dir/data"
dir=$(cd "$dir" && pwd)
bash "$repo/scripts/make-certs.sh" "$dir/certs"
cp "$repo/broker/passwd" "$repo/broker/acl" "$dir/"

awk -v plain="$plain_port" -v auth="$auth_port" -v tls="$tls_port" -v bind="$bind" -v dir="$dir" '
    $1 == "listener" && $2 == "1883" { print "listener " plain " " bind; next }
    $1 == "listener" && $2 == "1884" { print "listener " auth " " bind; next }
    $1 == "listener" && $2 == "8883" { print "listener " tls " " bind; next }
    {
        gsub("/mosquitto/config/", dir "/")
        gsub("/mosquitto/data/", dir "/data/")
        print
    }
' "$repo/broker/mosquitto.conf" >"$dir/mosquitto.conf"
if [ "$(id -u)" -eq 0 ]; then
    printf '\n# Added by scripts/broker.sh: stay root, the files above belong to root.\nuser root\n' >>"$dir/mosquitto.conf"
fi

cat <<EOF
swift-handoff test broker (config: $dir/mosquitto.conf)
  plain, anonymous:        mqtt://$bind:$plain_port
  users + ACL:             mqtt://handoff:handoff-secret@$bind:$auth_port   (also restricted:restricted-secret)
  TLS, anonymous:          mqtts://$bind:$tls_port   CA: $dir/certs/ca.crt
  client certificate:      $dir/certs/client.crt $dir/certs/client.key
  store:                   $dir/data/
EOF
exec "$mosquitto" -c "$dir/mosquitto.conf"
