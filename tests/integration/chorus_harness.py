"""Test harness: real chorusd processes, real ZeroMQ sockets, real RocksDB.

Every test starts its own chorusd on a fresh data directory and free
loopback ports, talks to it as an integrator would (DEALER + msgpack), and
stops it by PID. Every wait is bounded.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import msgpack
import zmq

CHORUSD = os.environ.get("CHORUSD", "build/chorusd")
TIMEOUT_S = 10


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One chorusd process (or a set of stages of one)."""

    def __init__(self, data_dir=None, args=(), http=True, api_port=None, env=None):
        self.own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="chorus-test-")
        self.api_port = api_port or free_port()
        self.http_port = free_port()
        self.api = "tcp://127.0.0.1:%d" % self.api_port
        self.args = list(args)
        self.http = http
        self.proc = None
        self.env = dict(os.environ, **(env or {}))
        self.log_path = os.path.join(self.data_dir, "chorusd-%d.log" % int(time.time() * 1000))

    def command(self):
        cmd = [CHORUSD, "--data", self.data_dir, "--api", self.api,
               "--rate", "1000000", "--burst", "1000000"]
        if self.http:
            cmd += ["--http", "127.0.0.1:%d" % self.http_port]
        else:
            cmd += ["--stages", "broker,ingest,membership,persistence,fanout"]
        return cmd + self.args

    def start(self, wait=True):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), stdout=self.log,
                                     stderr=subprocess.STDOUT, env=self.env)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=TIMEOUT_S * 3):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("chorusd exited with %s:\n%s" % (self.proc.returncode, self.tail()))
            try:
                with Client(self.api, timeout_ms=500) as c:
                    if c.call("ping").get("ok"):
                        return
            except TimeoutError:
                pass
            time.sleep(0.05)
        raise RuntimeError("chorusd not ready:\n" + self.tail())

    def tail(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-4000:].decode(errors="replace")
        except OSError:
            return ""

    def admin_token(self):
        with open(os.path.join(self.data_dir, "admin.token")) as f:
            return f.read().strip()

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Stops the server; returns its exit code."""
        if not self.proc:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
            raise RuntimeError("chorusd did not stop on %s" % sig)
        self.log.close()
        self.proc = None
        return code

    def kill(self):
        return self.stop(signal.SIGKILL)

    def cleanup(self):
        if self.proc:
            self.kill()
        if self.own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        code = None
        if self.proc and self.proc.poll() is None:
            code = self.stop()
        self.cleanup()
        if code not in (None, 0) and exc[0] is None:
            raise AssertionError("chorusd exited with %s on SIGTERM:\n%s" % (code, self.tail()))


class Client:
    """An integrator session: one DEALER socket, msgpack requests."""

    def __init__(self, endpoint, timeout_ms=TIMEOUT_S * 1000):
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.timeout_ms = timeout_ms
        self.rid = 0
        self.events = []

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, payload, *extra):
        self.sock.send_multipart([payload] + list(extra))

    def recv(self, timeout_ms=None):
        """Next message as (payload dict, sids, notify); TimeoutError if none."""
        if not self.sock.poll(timeout_ms if timeout_ms is not None else self.timeout_ms):
            raise TimeoutError("no message from chorusd")
        frames = self.sock.recv_multipart()
        assert len(frames) == 3, "server messages have 3 frames, got %d" % len(frames)
        return (msgpack.unpackb(frames[0], raw=False, strict_map_key=False),
                msgpack.unpackb(frames[1]), msgpack.unpackb(frames[2]))

    def reply_for(self, rid, timeout_ms=None):
        deadline = time.time() + (timeout_ms or self.timeout_ms) / 1000.0
        while True:
            left = int((deadline - time.time()) * 1000)
            if left <= 0:
                raise TimeoutError("no reply for rid %d" % rid)
            payload, _, notify = self.recv(left)
            if "re" in payload and payload["re"] == rid:
                return payload
            if "ev" in payload:
                payload["_notify"] = bool(notify)
                self.events.append(payload)

    def call(self, op, **fields):
        self.rid += 1
        request = {"op": op, "rid": self.rid}
        request.update(fields)
        self.send_raw(msgpack.packb(request, use_bin_type=True))
        return self.reply_for(self.rid)

    def ok(self, op, **fields):
        reply = self.call(op, **fields)
        assert reply.get("ok"), "%s failed: %r" % (op, reply)
        return reply

    def next_event(self, timeout_ms=None, kind=None, where=None):
        """Next event (of one kind, matching where), from the backlog or the socket."""
        deadline = time.time() + (timeout_ms or self.timeout_ms) / 1000.0
        while True:
            for i, event in enumerate(self.events):
                if (kind is None or event["ev"] == kind) and (where is None or where(event)):
                    return self.events.pop(i)
            left = int((deadline - time.time()) * 1000)
            if left <= 0:
                raise TimeoutError("no %s event" % (kind or "any"))
            payload, _, notify = self.recv(left)
            if "ev" in payload:
                payload["_notify"] = bool(notify)
                self.events.append(payload)

    def send(self, ch, body, client_msg_id=None, **extra):
        return self.call("send", ch=ch, body=body,
                         client_msg_id=client_msg_id or uuid.uuid4().hex, **extra)

    def send_many(self, ch, bodies, window=64):
        """Pipelined sends; returns acks in order."""
        acks = {}
        rids = []
        pending = {}
        it = iter(enumerate(bodies))
        done = False
        while not done or pending:
            while not done and len(pending) < window:
                try:
                    i, body = next(it)
                except StopIteration:
                    done = True
                    break
                self.rid += 1
                req = {"op": "send", "rid": self.rid, "ch": ch, "body": body,
                       "client_msg_id": uuid.uuid4().hex}
                pending[self.rid] = i
                rids.append(self.rid)
                self.send_raw(msgpack.packb(req))
            if pending:
                payload, _, notify = self.recv()
                if "re" in payload and payload["re"] in pending:
                    assert payload.get("ok"), payload
                    acks[pending.pop(payload["re"])] = payload
                elif "ev" in payload:
                    payload["_notify"] = bool(notify)
                    self.events.append(payload)
        return [acks[i] for i in range(len(bodies))]


class Workspace:
    """A tenant with users, made through the admin API."""

    def __init__(self, server, name=None, users=("alice", "bob", "carol")):
        self.server = server
        self.name = name or "ws" + uuid.uuid4().hex[:8]
        self.users = {}
        with Client(server.api) as admin:
            token = server.admin_token()
            admin.ok("auth", token=token)
            self.tenant = admin.ok("tenant_create", name=self.name)["tenant"]
            for handle in users:
                reply = admin.ok("user_create", tenant=self.name, handle=handle,
                                 display_name=handle.title(), password="secret-" + handle)
                self.users[handle] = reply["user"]

    def login(self, handle):
        client = Client(self.server.api)
        reply = client.ok("login", tenant=self.name, handle=handle, password="secret-" + handle)
        client.token = reply["token"]
        client.user = reply["user"]
        return client

    def uid(self, handle):
        return self.users[handle]["id"]


def run(tests):
    """Runs test functions; prints a closing line ctest and humans can read."""
    passed = failed = 0
    for test in tests:
        start = time.time()
        try:
            test()
            passed += 1
            print("ok   %s (%.1fs)" % (test.__name__, time.time() - start), flush=True)
        except Exception as e:  # noqa: BLE001 - report every failure
            failed += 1
            import traceback
            traceback.print_exc()
            print("FAIL %s: %s" % (test.__name__, e), flush=True)
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)
