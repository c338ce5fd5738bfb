#!/usr/bin/env python3
"""An independent client of the swift-handoff MQTT protocol, written from docs/PROTOCOL.md alone.

It shares no code with the Swift implementation: it exists to prove that the document is enough to
interoperate, and to race Swift participants for the same handoffs.

    handoff_client.py initiate --port P --label L --data JSON [--count N] [--vsn V]
    handoff_client.py race     --port P --label L --expect N --out results.json [--seconds S]
    handoff_client.py dead     --port P --label L --out dead.json

Needs paho-mqtt (Debian: python3-paho-mqtt), MQTT 5.
"""
import argparse
import hashlib
import json
import sys
import threading
import time
import uuid
from datetime import datetime, timezone

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

UNRESERVED = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def label_level(label: str) -> str:
    """§3: percent-encode every UTF-8 byte outside A-Z a-z 0-9 - . _ ~ with uppercase hex."""
    return "".join(chr(b) if b in UNRESERVED else "%%%02X" % b for b in label.encode("utf-8"))


def now_rfc3339() -> str:
    """§4: RFC 3339 UTC with exactly three fractional digits."""
    t = datetime.now(timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (t.microsecond // 1000)


def encode_envelope(handoff_id: str, label: str, vsn: int, instance: str, data: bytes) -> bytes:
    """§4: one line of JSON header, a newline, then the data bytes."""
    header = {
        "format": "swift-handoff/1",
        "id": handoff_id,
        "label": label,
        "vsn": vsn,
        "createdAt": now_rfc3339(),
        "origin": {"instance": instance, "host": "python"},
        "contentType": "application/json",
        "length": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    return json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n" + data


def decode_envelope(payload: bytes) -> dict:
    """§4: returns the header with `data` (bytes); raises ValueError for anything that is not an envelope."""
    newline = payload.find(b"\n", 0, 65537)
    if newline < 0:
        raise ValueError("malformed: no header line")
    header = json.loads(payload[:newline].decode("utf-8"))
    if header.get("format") != "swift-handoff/1":
        raise ValueError("unsupported-format")
    data = payload[newline + 1:]
    if len(data) != header["length"]:
        raise ValueError("truncated" if len(data) < header["length"] else "malformed: extra bytes")
    if hashlib.sha256(data).hexdigest() != header["sha256"]:
        raise ValueError("integrity-failure")
    header["data"] = data
    return header


def user_properties(message) -> dict:
    props = getattr(message, "properties", None)
    return dict(getattr(props, "UserProperty", []) or []) if props else {}


class Participant:
    """One MQTT 5 connection taking part in the protocol under `prefix`."""

    def __init__(self, host: str, port: int, prefix: str):
        self.instance = "py-" + uuid.uuid4().hex[:12]
        self.prefix = prefix
        self.lock = threading.Condition()
        self.acked = set()
        self.subscribed = set()
        self.client = mqtt.Client(client_id="handoff-" + self.instance, protocol=mqtt.MQTTv5)
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.handlers = []
        self.client.connect(host, port, keepalive=30, clean_start=True)
        self.client.loop_start()

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()

    def handoff_topic(self, label: str, handoff_id: str) -> str:
        return "%s/handoffs/%s/%s" % (self.prefix, label_level(label), handoff_id)

    def _on_publish(self, client, userdata, mid):
        with self.lock:
            self.acked.add(mid)
            self.lock.notify_all()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self.lock:
            self.subscribed.add(mid)
            self.lock.notify_all()

    def _on_message(self, client, userdata, message):
        for handler in self.handlers:
            handler(message)

    def _wait(self, collection: set, mid: int, seconds: float = 30):
        with self.lock:
            if not self.lock.wait_for(lambda: mid in collection, timeout=seconds):
                raise TimeoutError("no acknowledgement for mid %d" % mid)

    def publish(self, topic: str, payload: bytes, retain: bool, props: dict = None, wait: bool = True):
        properties = None
        if props:
            properties = Properties(PacketTypes.PUBLISH)
            properties.UserProperty = list(props.items())
        info = self.client.publish(topic, payload, qos=1, retain=retain, properties=properties)
        if wait:
            self._wait(self.acked, info.mid)

    def subscribe(self, topic_filter: str):
        # QoS 1, No Local 0 (we must see our own claims), Retain Handling 0 (§6).
        result, mid = self.client.subscribe(topic_filter, options=SubscribeOptions(qos=1, noLocal=False))
        self._wait(self.subscribed, mid)

    def initiate(self, label: str, vsn: int, data: bytes) -> str:
        """§4: a retained QoS 1 publish; stored once the PUBACK arrives."""
        handoff_id = str(uuid.uuid4())
        self.publish(self.handoff_topic(label, handoff_id), encode_envelope(handoff_id, label, vsn, self.instance, data), retain=True)
        return handoff_id


def command_initiate(args):
    participant = Participant(args.host, args.port, args.prefix)
    ids = [participant.initiate(args.label, args.vsn, args.data.encode("utf-8")) for _ in range(args.count)]
    participant.close()
    print(json.dumps(ids))


def command_race(args):
    """§5: watch a label, claim every handoff seen, merge only those whose verdict names us."""
    participant = Participant(args.host, args.port, args.prefix)
    prefix = "%s/handoffs/%s/" % (args.prefix, label_level(args.label))
    rounds = {}  # id -> "open" | verdict dict
    merged = {}
    to_claim = []
    state = threading.Condition()

    def on_message(message):
        if not message.topic.startswith(prefix):
            return
        handoff_id = message.topic[len(prefix):]
        with state:
            if message.payload:
                try:
                    envelope = decode_envelope(message.payload)
                except ValueError:
                    return  # not ours to judge in this test
                rounds[handoff_id] = {"open": True, "envelope": envelope}
                if envelope["origin"]["instance"] != participant.instance:
                    to_claim.append(handoff_id)
                state.notify_all()
            else:
                claimer = user_properties(message).get("handoff-claim-by")
                purpose = user_properties(message).get("handoff-claim-purpose", "merge")
                current = rounds.get(handoff_id)
                if not claimer or not current or not current.get("open"):
                    return  # not a claim, or a round we did not see open
                current["open"] = False
                current["winner"] = claimer
                if claimer == participant.instance and purpose == "merge":
                    merged[handoff_id] = json.loads(current["envelope"]["data"])
                state.notify_all()

    participant.handlers.append(on_message)
    participant.subscribe(prefix + "+")
    deadline = time.time() + args.seconds
    last_message = [time.time()]

    def touch(message):
        last_message[0] = time.time()

    participant.handlers.append(touch)
    claim_props = {"handoff-claim-by": participant.instance, "handoff-claim-purpose": "merge"}
    while time.time() < deadline:
        with state:
            decided = sum(1 for r in rounds.values() if not r.get("open"))
            if decided >= args.expect or (rounds and time.time() - last_message[0] > args.idle):
                break
            batch, to_claim[:] = list(to_claim), []
            if not batch:
                state.wait(0.05)
        for handoff_id in batch:
            participant.publish(prefix + handoff_id, b"", retain=True, props=claim_props, wait=False)
    time.sleep(0.3)
    participant.close()
    with state:
        result = {
            "instance": participant.instance,
            "verdicts": {k: r.get("winner") for k, r in rounds.items() if not r.get("open")},
            "merged": merged,
        }
    with open(args.out, "w") as out:
        json.dump(result, out)


def command_dead(args):
    """§7: read the dead letters of a label (retained, reason in user properties)."""
    participant = Participant(args.host, args.port, args.prefix)
    letters = {}
    prefix = "%s/dead-letters/%s/" % (args.prefix, label_level(args.label))

    def on_message(message):
        if message.topic.startswith(prefix) and message.payload:
            letters[message.topic[len(prefix):]] = user_properties(message)

    participant.handlers.append(on_message)
    participant.subscribe(prefix + "+")
    time.sleep(1.0)
    participant.close()
    with open(args.out, "w") as out:
        json.dump(letters, out)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("initiate", "race", "dead"):
        p = sub.add_parser(name)
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--prefix", default="handoff")
        p.add_argument("--label", required=True)
        if name == "initiate":
            p.add_argument("--data", required=True)
            p.add_argument("--vsn", type=int, default=1)
            p.add_argument("--count", type=int, default=1)
        else:
            p.add_argument("--out", required=True)
        if name == "race":
            p.add_argument("--expect", type=int, required=True)
            p.add_argument("--seconds", type=float, default=60)
            p.add_argument("--idle", type=float, default=3.0, help="stop after this long without a message")
    args = parser.parse_args()
    {"initiate": command_initiate, "race": command_race, "dead": command_dead}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
