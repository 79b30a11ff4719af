"""The web edge inside a real chorusd, and a second edge in its own process:
real-time delivery over WebSocket, across edges, REST sends seen on the
WebSocket, reconnect + sync from a checkpoint; then the edge's own suite
(tests/edge/test_edge.py) against the same server."""
import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request

import websockets

from chorus_harness import Server, free_port, run

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WAIT = 10


def http(base, method, path, body=None, token=None):
    req = urllib.request.Request(base + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=WAIT) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def login(base, handle):
    status, body = http(base, "POST", "/api/v1/login",
                        {"tenant": "demo", "handle": handle, "password": "chorus-demo"})
    assert status == 200, body
    return body["token"]


class Ws:
    """A WebSocket session speaking the JSON protocol."""

    def __init__(self, ws):
        self.ws, self.rid, self.events = ws, 0, []

    @classmethod
    async def open(cls, base, token):
        ws = await websockets.connect(base.replace("http", "ws") + "/ws",
                                      subprotocols=["chorus.v1"], open_timeout=WAIT,
                                      max_size=8 * 1024 * 1024)
        self = cls(ws)
        assert (await self.call("auth", token=token))["ok"]
        return self

    async def call(self, op, **fields):
        self.rid += 1
        await self.ws.send(json.dumps(dict(fields, op=op, rid=self.rid)))
        deadline = time.time() + WAIT
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), deadline - time.time()))
            if msg.get("re") == self.rid:
                return msg
            if "ev" in msg:
                self.events.append(msg)

    async def event(self, where):
        deadline = time.time() + WAIT
        while True:
            for i, e in enumerate(self.events):
                if where(e):
                    return self.events.pop(i)
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), deadline - time.time()))
            if "ev" in msg:
                self.events.append(msg)


def start_second_edge(server):
    port = free_port()
    proc = subprocess.Popen([os.environ.get("CHORUSD", "build/chorusd"), "--stages", "edge",
                             "--edge-api", server.api, "--http", "127.0.0.1:%d" % port,
                             "--data", os.path.join(server.data_dir, "edge2")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = "http://127.0.0.1:%d" % port
    deadline = time.time() + WAIT
    while time.time() < deadline:
        try:
            urllib.request.urlopen(base + "/", timeout=1).read()
            return proc, base
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("second edge did not start")


def general(base, token):
    status, body = http(base, "GET", "/api/v1/channels", token=token)
    assert status == 200, body
    return next(c for c in body["channels"] if c["name"] == "general")


async def realtime_across_edges(server, base2):
    base1 = "http://127.0.0.1:%d" % server.http_port
    alice_token, bob_token = login(base1, "alice"), login(base2, "bob")
    ch = general(base1, alice_token)["id"]
    alice = await Ws.open(base1, alice_token)
    bob = await Ws.open(base2, bob_token)
    ack = await alice.call("send", ch=ch, body="across edges", client_msg_id="x-edge-1")
    assert ack["ok"], ack
    got = await bob.event(lambda e: e["ev"] == "message" and e["seq"] == ack["seq"])
    assert got["body"] == "across edges", "bob on edge 2 gets alice's message from edge 1"
    # a REST send is seen on the WebSocket, and the REST ack comes after it is saved
    status, rest_ack = http(base2, "POST", "/api/v1/channels/%d/messages" % ch,
                            {"client_msg_id": "x-rest-1", "body": "over REST"}, token=bob_token)
    assert status == 200 and rest_ack["seq"] == ack["seq"] + 1, rest_ack
    got = await alice.event(lambda e: e["ev"] == "message" and e["seq"] == rest_ack["seq"])
    assert got["body"] == "over REST"
    status, again = http(base2, "POST", "/api/v1/channels/%d/messages" % ch,
                         {"client_msg_id": "x-rest-1", "body": "over REST"}, token=bob_token)
    assert status == 200 and again["seq"] == rest_ack["seq"] and again["duplicate"], again
    # bob drops his socket, misses messages, and catches up from his checkpoint
    checkpoint = rest_ack["seq"]
    await bob.ws.close()
    missed = []
    for i in range(25):
        reply = await alice.call("send", ch=ch, body="missed %d" % i, client_msg_id="x-m-%d" % i)
        missed.append(reply["seq"])
    bob = await Ws.open(base2, bob_token)
    synced = await bob.call("sync", channels={str(ch): checkpoint})
    entry = next(c for c in synced["channels"] if c["ch"] == ch)
    assert [m["seq"] for m in entry["messages"]] == missed, "exactly the missed messages, in order"
    # history over REST pages back with stable cursors
    status, page = http(base1, "GET", "/api/v1/channels/%d/messages?before=%d&limit=5" % (ch, missed[0]),
                        token=alice_token)
    assert status == 200 and [m["seq"] for m in page["messages"]] == list(range(missed[0] - 5, missed[0]))
    # the unauthenticated socket can do nothing but authenticate
    anon = await websockets.connect(base1.replace("http", "ws") + "/ws", subprotocols=["chorus.v1"])
    await anon.send(json.dumps({"op": "history", "rid": 1, "ch": ch}))
    reply = json.loads(await asyncio.wait_for(anon.recv(), WAIT))
    assert reply["error"] == "not_authed", reply
    await anon.close()
    await alice.ws.close()
    await bob.ws.close()


def test_realtime_across_two_edges_rest_and_sync():
    with Server(args=["--seed-demo"]) as server:
        proc, base2 = start_second_edge(server)
        try:
            seed_done(server)
            asyncio.run(realtime_across_edges(server, base2))
        finally:
            proc.terminate()
            proc.wait(timeout=WAIT)


def seed_done(server):
    base = "http://127.0.0.1:%d" % server.http_port
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            token = login(base, "dave")
            if general(base, token)["head"] >= 1200:
                return
        except (AssertionError, OSError, StopIteration):
            pass
        time.sleep(0.3)
    raise RuntimeError("the demo workspace was not seeded")


def test_edge_suite_against_real_server():
    with Server(args=["--seed-demo", "--rate", "200", "--burst", "400",
                      "--ws-queue-bytes", "262144"]) as server:
        seed_done(server)
        base = "http://127.0.0.1:%d" % server.http_port
        ch = general(base, login(base, "alice"))["id"]
        env = dict(os.environ, CHORUS_HTTP=base, CHORUS_TENANT="demo",
                   CHORUS_USER1="alice:chorus-demo", CHORUS_USER2="bob:chorus-demo",
                   CHORUS_CHANNEL=str(ch))
        result = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "edge", "test_edge.py")],
                                env=env, timeout=600, capture_output=True, text=True)
        print(result.stderr[-3000:])
        assert result.returncode == 0, "the edge suite failed against the real server"


if __name__ == "__main__":
    run([test_realtime_across_two_edges_rest_and_sync, test_edge_suite_against_real_server])
