#!/usr/bin/env python3
"""Fan-out throughput of the web edge alone (not a test; run by hand).

Starts a bench broker (a ROUTER that authenticates anyone and then sends
EVENTS events of about 200 bytes, each to every session, one ZeroMQ
message per event as the real fan-out does), an edge (EDGE_MAIN, or
built here without sanitizers) and CLIENTS raw WebSocket clients spread
over a few processes that only count bytes. Prints deliveries per second.

    /usr/bin/python3 tests/edge/bench_fanout.py [CLIENTS] [EVENTS]
"""
import base64
import json
import multiprocessing
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import time

try:
    import msgpack
    import zmq
except ImportError:
    #  Debian's python3-* packages live with /usr/bin/python3, not pyenv's
    if sys.executable != "/usr/bin/python3" and os.path.exists("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    raise

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CLIENT_PROCS = 4


def build(tmp):
    if os.environ.get("EDGE_MAIN"):
        return os.environ["EDGE_MAIN"]
    out = os.path.join(tmp, "edge_main")
    sources = ["tests/edge/edge_main.c"] + ["edge/" + f for f in sorted(os.listdir(
        os.path.join(ROOT, "edge"))) if f.endswith(".c")] + ["proto/" + f for f in sorted(
        os.listdir(os.path.join(ROOT, "proto"))) if f.endswith(".c")]
    subprocess.run(["gcc", "-std=c11", "-D_GNU_SOURCE", "-O2", "-g", "-Iinclude", "-Iedge"]
                   + sources + ["-lwebsockets", "-lczmq", "-lzmq", "-lmsgpackc", "-o", out],
                   cwd=ROOT, check=True)
    return out


def client_proc(port, count, expect_bytes, ready, go, results):
    """Opens count sockets, authenticates, then counts bytes until each has
    expect_bytes (or 60 s pass)"""
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall(("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n\r\n" % key).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        payload = b'{"op":"auth","rid":1,"token":"t"}'
        mask = os.urandom(4)
        s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask
                  + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        s.recv(4096)                    # the auth reply
        s.setblocking(False)
        socks.append(s)
        sel.register(s, selectors.EVENT_READ, [0])
    ready.release()
    go.wait()
    done, deadline = 0, time.time() + 60
    while done < count and time.time() < deadline:
        for key, _ in sel.select(timeout=1):
            try:
                data = key.fileobj.recv(1 << 20)
            except BlockingIOError:
                continue
            key.data[0] += len(data)
            if not data or key.data[0] >= expect_bytes:
                sel.unregister(key.fileobj)
                done += 1
    results.put((done, time.time()))
    for s in socks:
        s.close()


def main():
    clients = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    events = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    tmp = tempfile.mkdtemp()
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.SNDHWM, 0)           # no drops: count every delivery
    router.setsockopt(zmq.ROUTER_MANDATORY, 1)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    edge = subprocess.Popen([build(tmp), "--http", "127.0.0.1:0", "--api",
                             "tcp://127.0.0.1:%d" % port, "--per-ip", str(clients + 10),
                             "--queue-msgs", str(events + 10),
                             "--queue-bytes", str(events * 400)],
                            stdout=subprocess.PIPE, text=True)
    line = ""
    while not line.startswith("edge: listening on"):
        line = edge.stdout.readline()
        if not line:
            sys.exit("the edge did not start")
    http_port = int(line.split()[-1])
    fields = {"ev": "message", "ch": 1, "seq": 1, "author": 2, "ts": 1700000000000,
              "body": "x" * 120, "client_msg_id": "c-0000001"}
    event = msgpack.packb(fields)
    text = len(json.dumps(fields, separators=(",", ":")))
    expect = events * (text + (2 if text < 126 else 4))
    ready, go, results = multiprocessing.Semaphore(0), multiprocessing.Event(), multiprocessing.Queue()
    per = clients // CLIENT_PROCS
    procs = [multiprocessing.Process(target=client_proc, args=(http_port, per, expect, ready, go, results))
             for _ in range(CLIENT_PROCS)]
    sids, identity = [], None
    for p in procs:
        p.start()
    authed = 0
    while authed < per * CLIENT_PROCS:
        frames = router.recv_multipart()
        identity, req, sid = frames[0], msgpack.unpackb(frames[1]), msgpack.unpackb(frames[2])
        if req.get("op") == "auth":
            sids.append(sid)
            router.send_multipart([identity, msgpack.packb({"re": 1, "ok": True}),
                                   msgpack.packb([sid]), msgpack.packb([])])
            authed += 1
    for _ in procs:
        ready.acquire()
    started = time.time()
    go.set()
    packed_sids = msgpack.packb(sids)
    for _ in range(events):
        router.send_multipart([identity, event, packed_sids, b"\x90"])
    sent = time.time()
    print("events sent in %.2f s" % (sent - started))
    for p in procs:
        p.join(timeout=90)
    finished = [results.get(timeout=1) for _ in procs]
    done = sum(d for d, _ in finished)
    end = max(t for _, t in finished)
    deliveries = clients * events
    print("%d clients x %d events = %d deliveries in %.2f s: %.0f deliveries/s (%d clients done)"
          % (per * CLIENT_PROCS, events, deliveries, end - started,
             deliveries / (end - started), done))
    with urllib_open("http://127.0.0.1:%d/metrics" % http_port) as text:
        for line in text.splitlines():
            if line.startswith(("chorus_edge_messages_out_total", "chorus_edge_ws_writes_total",
                                "chorus_edge_disconnects_total{reason=\"too_slow\"}")):
                print(line)
    edge.terminate()
    edge.wait()


def urllib_open(url):
    import contextlib
    import urllib.request

    @contextlib.contextmanager
    def opened():
        with urllib.request.urlopen(url, timeout=10) as resp:
            yield resp.read().decode()
    return opened()


if __name__ == "__main__":
    main()
