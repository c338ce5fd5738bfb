#!/usr/bin/env bash
# Self-test of §10 (docs/PROTOCOL.md) with Python participants only, against a broker you started:
#   interop/python/selftest-signing.sh HOST PORT WORKDIR [unkeyed]
# Keyed racers in the middle of a key rotation (some {k1 writes, k2 reads}, some {k2 writes, k1 reads}) race for
# handoffs of two keyed initiators (one signs with k1, one signs with k2 and encrypts); before they may claim, an
# unkeyed attacker forges an envelope, clears waiting handoffs (bare, and with a made-up claimer) and replaces one
# with garbage. Checks: the forged one is dead-lettered (signature-invalid), the cleared ones are restored (a late
# racer still finds them), every genuine handoff is merged exactly once, nothing is left waiting.
# With `unkeyed`, nobody has keys: the attacker forges nothing and makes no claim (both would succeed without keys),
# and the bare clears and the replacement must still be repaired (§10.6 applies to unkeyed participants too).
set -euo pipefail
HOST=$1 PORT=$2 DIR=$3 MODE=${4:-keyed}
PY=/usr/bin/python3
CLIENT="$(cd "$(dirname "$0")" && pwd)/handoff_client.py"
mkdir -p "$DIR"
cd "$DIR"
rm -f ./*.json go ready-* ./*.stderr
PREFIX="selftest-$(date +%s%N | tail -c 9)"
LABEL="race/é"
common=(--host "$HOST" --port "$PORT" --prefix "$PREFIX" --timeout 20)
key() { "$PY" -c "import base64,os;print(base64.b64encode(os.urandom($1)).decode())"; }
K1=$(key 32) K2=$(key 40)
printf '# rotation step 1: k1 writes, k2 reads\nk1 %s\nk2 %s\n' "$K1" "$K2" > keys-a.txt
printf '# rotation step 2: k2 writes, k1 reads\nk2 %s\nk1 %s\n' "$K2" "$K1" > keys-b.txt

GENUINE=10 FORGED=1 CLAIMS=2
keyed() { if [ "$MODE" = keyed ]; then echo --keys "$1" ${2:-}; fi; }
if [ "$MODE" != keyed ]; then FORGED=0 CLAIMS=0; fi
EXPECT=$((GENUINE + FORGED))
pids=()
for i in 0 1 2 3; do
  keys=keys-a.txt; [ $((i % 2)) -eq 1 ] && keys=keys-b.txt
  "$PY" "$CLIENT" race "${common[@]}" $(keyed "$keys") --label "$LABEL" --expect "$EXPECT" --deadline 60 \
    --ready-file "ready-$i" --go-file go --claim-jitter 20 --out "racer-$i.json" 2> "racer-$i.stderr" &
  pids+=($!)
done
for i in 0 1 2 3; do while [ ! -e "ready-$i" ]; do sleep 0.05; done; done

"$PY" "$CLIENT" initiate "${common[@]}" $(keyed keys-a.txt) --label "$LABEL" --data '{"source":"python","n":{i}}' \
  --count 5 --start 0 --out initiate-a.json
"$PY" "$CLIENT" initiate "${common[@]}" $(keyed keys-b.txt --encrypt) --label "$LABEL" --data '{"source":"python","n":{i}}' \
  --count 5 --start 5 --out initiate-b.json
sleep 0.5
"$PY" "$CLIENT" attack "${common[@]}" --label "$LABEL" --forge "$FORGED" --bare-clear 2 --forged-claim "$CLAIMS" --replace 1 \
  --out attack.json
sleep 1.0  # the restores (0-100 ms each)
"$PY" "$CLIENT" dump "${common[@]}" $(keyed keys-a.txt) --out dump-after-attack.json
# A racer that subscribes only now finds the restored handoffs (rounds opened by a restore: held 250 ms).
"$PY" "$CLIENT" race "${common[@]}" $(keyed keys-a.txt) --label "$LABEL" --expect "$EXPECT" --deadline 60 \
  --ready-file ready-late --go-file go --out racer-late.json 2> racer-late.stderr &
pids+=($!)
while [ ! -e ready-late ]; do sleep 0.05; done
touch go
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
"$PY" "$CLIENT" dead-letters "${common[@]}" --label "$LABEL" --out dead-letters.json
"$PY" "$CLIENT" dump "${common[@]}" $(keyed keys-a.txt) --out dump-end.json

"$PY" - "$EXPECT" <<'CHECK' || status=1
import json, sys, glob
expect = int(sys.argv[1])
a, b, attack = (json.load(open(f)) for f in ("initiate-a.json", "initiate-b.json", "attack.json"))
genuine = {h["id"]: h for h in a["handoffs"] + b["handoffs"]}
forged = {f["id"] for f in attack["forged"]}
attacked = [e["id"] for e in attack["bareCleared"] + attack["forgedClaims"] + attack["replaced"]]
racers = {f: json.load(open(f)) for f in sorted(glob.glob("racer-*.json"))}
problems = []
for name, r in racers.items():
    if not r["complete"]:
        problems.append(f"{name}: incomplete ({len(r['handoffs'])} of {expect})")
for hid, h in genuine.items():
    merges = [(n, r["handoffs"][hid]) for n, r in racers.items() if r["handoffs"].get(hid, {}).get("merged")]
    if len(merges) != 1:
        problems.append(f"genuine {hid}: merged {len(merges)} times")
    elif merges[0][1]["data"] != h["data"]:
        problems.append(f"genuine {hid}: merged {merges[0][1]['data']} instead of {h['data']}")
    winners = {r["handoffs"][hid]["winner"] for r in racers.values() if hid in r["handoffs"]}
    if len(winners) != 1:
        problems.append(f"genuine {hid}: racers disagree on the winner: {winners}")
for hid in forged:
    for n, r in racers.items():
        e = r["handoffs"].get(hid)
        if e is None or e["merged"] or e["purpose"] != "dead-letter" or e.get("rejection") != "signature-invalid":
            problems.append(f"forged {hid}: {n} saw {e}")
letters = json.load(open("dead-letters.json"))
for hid in forged:
    if letters.get(hid, {}).get("reason") != "signature-invalid":
        problems.append(f"forged {hid}: dead letter {letters.get(hid)}")
for e in attack["replaced"]:
    if letters.get(e["id"], {}).get("reason") != "malformed":
        problems.append(f"replaced {e['id']}: dead letter {letters.get(e['id'])}")
after = {e["topic"].rsplit("/", 1)[1]: e for e in json.load(open("dump-after-attack.json")) if "/handoffs/" in e["topic"]}
restored = [hid for hid in attacked if hid in after and "header" in after[hid]]
for hid in attacked:
    if hid not in restored:
        problems.append(f"attacked {hid}: not restored after the attack ({after.get(hid)})")
late = racers["racer-late.json"]["handoffs"]
for hid in genuine:
    if hid not in late:
        problems.append(f"late racer never saw {hid}")
left = [e["topic"] for e in json.load(open("dump-end.json")) if "/handoffs/" in e["topic"]]
if left:
    problems.append(f"still waiting at the end: {left}")
restores = {n: r.get("restores", []) for n, r in racers.items()}
print(json.dumps({
    "genuine": len(genuine), "forged": len(forged), "attacked": attacked, "restoredAfterAttack": restored,
    "mergesPerRacer": {n: sum(e["merged"] for e in r["handoffs"].values()) for n, r in racers.items()},
    "restoresPerRacer": {n: len(v) for n, v in restores.items()},
    "deadLetters": {k: v["reason"] for k, v in letters.items()},
    "problems": problems,
}, indent=2))
sys.exit(1 if problems else 0)
CHECK
echo "selftest: $([ $status -eq 0 ] && echo passed || echo FAILED) (files in $DIR)"
exit $status
