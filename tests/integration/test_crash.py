"""Crash test: SIGKILL chorusd at random moments while clients send.

A ledger outside the server records every send: acked (with its seq) or
unknown (sent, no ack). After each restart and at the end, every acked
message must be stored exactly once with its acked seq, every channel's seqs
must run 1..head without gaps, unknown sends retried with the same
client_msg_id must land exactly once, and no message may exist that the
ledger does not know.
"""
import os
import random
import signal
import threading
import time
import uuid

import msgpack
import zmq

from chorus_harness import Server, Workspace, run

KILLS = int(os.environ.get("CHORUS_CRASH_KILLS", "20"))


class Sender(threading.Thread):
    """Streams pipelined sends to several channels; survives server deaths."""

    def __init__(self, server, ws, handle, channels, ledger, lock, reads=False):
        super().__init__(daemon=True)
        self.reads = reads
        self.server, self.ws, self.handle = server, ws, handle
        self.channels, self.ledger, self.lock = channels, ledger, lock
        self.stop = threading.Event()
        self.rid = 0

    def connect(self):
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.server.api)
        self.rid += 1
        sock.send(msgpack.packb({"op": "login", "rid": self.rid, "tenant": self.ws.name,
                                 "handle": self.handle, "password": "secret-" + self.handle}))
        if not sock.poll(3000):
            sock.close()
            return None
        reply = msgpack.unpackb(sock.recv_multipart()[0], strict_map_key=False)
        if not reply.get("ok"):
            sock.close()
            return None
        return sock

    def run(self):
        while not self.stop.is_set():
            sock = self.connect()
            if sock is None:
                time.sleep(0.1)
                continue
            self.stream(sock)
            sock.close()

    def stream(self, sock):
        pending = {}
        while not self.stop.is_set():
            while len(pending) < 8:
                self.rid += 1
                ch = random.choice(self.channels)
                cmid = uuid.uuid4().hex
                body = "%s %s" % (self.handle, cmid)
                with self.lock:
                    self.ledger["unknown"][cmid] = (ch, body, self.handle)
                pending[self.rid] = (cmid, time.time())
                sock.send(msgpack.packb({"op": "send", "rid": self.rid, "ch": ch,
                                         "client_msg_id": cmid, "body": body}))
                if self.reads and random.random() < 0.3:
                    self.rid += 1
                    pending[self.rid] = (None, time.time())
                    sock.send(msgpack.packb({"op": "read", "rid": self.rid, "ch": ch,
                                             "seq": 1 << 40}))  # clamped to the head
            if not sock.poll(200):
                oldest = min(t for _, t in pending.values())
                if time.time() - oldest > 1.5:
                    return  # the server is gone: pending stay unknown
                continue
            payload = msgpack.unpackb(sock.recv_multipart()[0], strict_map_key=False)
            if payload.get("re") in pending:
                cmid, _ = pending.pop(payload["re"])
                if cmid is None:
                    if payload.get("ok"):
                        key = (self.handle, payload["ch"])
                        with self.lock:
                            reads = self.ledger.setdefault("reads", {})
                            reads[key] = max(reads.get(key, 0), payload["read_seq"])
                    continue
                if payload.get("ok"):
                    with self.lock:
                        ch, body, handle = self.ledger["unknown"].pop(cmid)
                        assert cmid not in self.ledger["acked"]
                        self.ledger["acked"][cmid] = (ch, payload["seq"], body, handle)


def verify(ws, channels, ledger):
    """Checks the store against the ledger; resends unknown sends first."""
    clients = {h: ws.login(h) for h in ("alice", "bob", "carol")}
    for cmid, (ch, body, handle) in list(ledger["unknown"].items()):
        reply = clients[handle].ok("send", ch=ch, body=body, client_msg_id=cmid)
        ledger["acked"][cmid] = (ch, reply["seq"], body, handle)
        del ledger["unknown"][cmid]
        again = clients[handle].ok("send", ch=ch, body=body, client_msg_id=cmid)
        assert again["seq"] == reply["seq"] and again["duplicate"]
    expected = {}
    for cmid, (ch, seq, body, _) in ledger["acked"].items():
        assert (ch, seq) not in expected, "two acks for one seq"
        expected[(ch, seq)] = body
    reader = clients["alice"]
    for ch in channels:
        stored = []
        after = 0
        while True:
            if after:
                page = reader.ok("history", ch=ch, after=after, limit=200)
            else:
                page = reader.ok("history", ch=ch, before=201, limit=200)
            msgs = page["messages"]
            stored += msgs
            if not msgs or not page["has_more_after"]:
                break
            after = msgs[-1]["seq"]
        seqs = [m["seq"] for m in stored]
        assert seqs == list(range(1, len(seqs) + 1)), "gap or duplicate in channel %d" % ch
        for m in stored:
            assert expected.get((ch, m["seq"])) == m["body"], \
                "message %d/%d is not the acked one (or was never sent)" % (ch, m["seq"])
        acked_here = sum(1 for (c, _) in expected if c == ch)
        assert acked_here == len(stored), "acked %d, stored %d" % (acked_here, len(stored))
    for (handle, ch), read_seq in ledger.get("reads", {}).items():
        listed = {c["id"]: c for c in clients[handle].ok("channel_list")["channels"]}
        assert listed[ch]["read_seq"] >= read_seq, "a read position went back"
    for c in clients.values():
        c.close()


def test_sigkill_under_load():
    server = Server(http=False).start()
    try:
        ws = Workspace(server)
        alice = ws.login("alice")
        channels = [alice.ok("channel_create", name="crash%d" % i)["channel"]["id"] for i in range(3)]
        for handle in ("bob", "carol"):
            c = ws.login(handle)
            for ch in channels:
                c.ok("channel_join", ch=ch)
            c.close()
        alice.close()
        ledger = {"acked": {}, "unknown": {}}
        lock = threading.Lock()
        senders = [Sender(server, ws, h, channels, ledger, lock) for h in ("alice", "bob", "carol")]
        for s in senders:
            s.start()
        for kill in range(KILLS):
            time.sleep(random.uniform(0.3, 1.2))
            server.kill()
            server.start(wait=False)
            server.wait_ready()
        time.sleep(0.5)
        for s in senders:
            s.stop.set()
        for s in senders:
            s.join(timeout=10)
        with lock:
            acked = len(ledger["acked"])
        assert acked > KILLS * 10, "the load was too light to mean anything (%d acks)" % acked
        verify(ws, channels, ledger)
        print("crash: %d kills, %d acked sends verified" % (KILLS, len(ledger["acked"])))
        assert server.stop() == 0
    finally:
        server.cleanup()


def test_named_kill_points():
    """The server kills itself at each named point inside the send path."""
    for point in ("before_write", "after_write", "mid_acks", "read_position"):
        server = Server(http=False, env={"CHORUS_KILL_AT": point + ":40"}).start()
        try:
            ws = Workspace(server)
            alice = ws.login("alice")
            channels = [alice.ok("channel_create", name="kp%d" % i)["channel"]["id"] for i in range(2)]
            bob = ws.login("bob")
            for ch in channels:
                bob.ok("channel_join", ch=ch)
            alice.close(); bob.close()
            ledger = {"acked": {}, "unknown": {}}
            lock = threading.Lock()
            senders = [Sender(server, ws, h, channels, ledger, lock, reads=True) for h in ("alice", "bob")]
            for s in senders:
                s.start()
            deaths = 0
            deadline = time.time() + 20
            while deaths < 3 and time.time() < deadline:
                if server.proc.poll() is not None:
                    deaths += 1
                    server.stop()
                    server.start(wait=False)
                    server.wait_ready()
                time.sleep(0.05)
            for s in senders:
                s.stop.set()
            for s in senders:
                s.join(timeout=10)
            assert deaths >= 1, "kill point %s was never reached" % point
            server.stop(signal.SIGKILL)
            server.env.pop("CHORUS_KILL_AT")
            server.start()
            verify(ws, channels, ledger)
            print("kill point %s: %d deaths, %d acked verified" % (point, deaths, len(ledger["acked"])))
            assert server.stop() == 0
        finally:
            server.cleanup()


def test_kill_during_channel_and_dm_creation():
    """Killed before or after the synced write of a channel or DM: every
    acknowledged creation is there after restart, none is there twice, and
    dm_open still returns one channel per set of people."""
    server = Server(http=False, env={"CHORUS_KILL_AT": "channel_create:3"}).start()
    try:
        ws = Workspace(server, users=("alice", "bob", "carol", "dave"))
        created, dms, deaths = {}, {}, 0
        pairs = [("bob",), ("carol",), ("dave",), ("bob", "carol"), ("carol", "dave")]
        for i in range(20):
            try:
                alice = ws.login("alice")
                alice.timeout_ms = 2000
                name = "c%d" % i
                reply = alice.call("channel_create", name=name)
                if reply.get("ok"):
                    created[name] = reply["channel"]["id"]
                who = pairs[i % len(pairs)]
                reply = alice.call("dm_open", users=[ws.uid(h) for h in who])
                if reply.get("ok"):
                    dms.setdefault(who, set()).add(reply["channel"]["id"])
                alice.close()
            except (TimeoutError, AssertionError):
                pass
            if server.proc.poll() is not None:
                deaths += 1
                server.stop()
                server.start()
        assert deaths >= 1, "the channel_create kill point was never reached"
        server.stop(signal.SIGKILL)
        server.env.pop("CHORUS_KILL_AT")
        server.start()
        alice = ws.login("alice")
        listed = alice.ok("channel_list")["channels"]
        names = [c["name"] for c in listed if c["type"] == "public"]
        assert len(names) == len(set(names)), "a channel exists twice"
        by_name = {c["name"]: c["id"] for c in listed if c["type"] == "public"}
        for name, ch in created.items():
            assert by_name.get(name) == ch, "acknowledged channel %s is gone" % name
        for who, ids in dms.items():
            assert len(ids) == 1, "dm_open gave %s different channels: %s" % (who, ids)
            again = alice.ok("dm_open", users=[ws.uid(h) for h in who])["channel"]["id"]
            assert again in ids, "the acknowledged DM with %s is gone" % (who,)
        alice.close()
        print("channel_create kill point: %d deaths, %d channels and %d DMs verified"
              % (deaths, len(created), len(dms)))
        assert server.stop() == 0
    finally:
        server.cleanup()


if __name__ == "__main__":
    run([test_sigkill_under_load, test_named_kill_points, test_kill_during_channel_and_dm_creation])
