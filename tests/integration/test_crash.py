"""Crash test: SIGKILL chorusd at random moments while clients send.

The load is the shape of a real deployment: 3 workspaces, each with a public
channel, a private channel, a DM and a group DM, and 8 senders per workspace
sending to every channel they belong to (24 sender threads, 8 sends in
flight each). A ledger outside the server records every send: acked (with
its seq) or unknown (sent, no ack). After the kills, every acked message
must be stored exactly once with its acked seq and body, every channel's
seqs must run 1..head without gaps, unknown sends retried with the same
client_msg_id must land exactly once, no message may exist that the ledger
does not know, read positions never go back, and a client resuming from any
checkpoint gets exactly the messages that follow it.
"""
import os
import random
import signal
import threading
import time
import uuid

import msgpack
import zmq

from chorus_harness import Client, Server, Workspace, run

KILLS = int(os.environ.get("CHORUS_CRASH_KILLS", "20"))
TENANTS = 3
SENDERS = 8
HANDLES = ["u%d" % i for i in range(SENDERS)]


class Load:
    """3 workspaces × (public, private, DM, group DM) × 8 senders."""

    def __init__(self, server):
        self.server = server
        self.workspaces = []
        self.channels = {}   # (tenant name, kind) -> channel id
        self.members = {}    # (tenant name, channel id) -> [handles]
        self.tokens = {}     # (tenant name, handle) -> token
        for _ in range(TENANTS):
            ws = Workspace(server, users=HANDLES)
            self.workspaces.append(ws)
            clients = {h: ws.login(h) for h in HANDLES}
            for h, c in clients.items():
                self.tokens[(ws.name, h)] = c.token
            owner = clients["u0"]
            public = owner.ok("channel_create", name="public")["channel"]["id"]
            private = owner.ok("channel_create", name="private", private=True)["channel"]["id"]
            for h in HANDLES[1:]:
                clients[h].ok("channel_join", ch=public)
                owner.ok("channel_invite", ch=private, user=ws.uid(h))
            dm = owner.ok("dm_open", users=[ws.uid("u1")])["channel"]["id"]
            group = owner.ok("dm_open", users=[ws.uid(h) for h in ("u1", "u2", "u3")])["channel"]["id"]
            for kind, ch, members in (("public", public, HANDLES), ("private", private, HANDLES),
                                      ("dm", dm, HANDLES[:2]), ("group", group, HANDLES[:4])):
                self.channels[(ws.name, kind)] = ch
                self.members[(ws.name, ch)] = list(members)
            for c in clients.values():
                c.close()
        self.ledger = {"acked": {}, "unknown": {}, "reads": {}}
        self.lock = threading.Lock()

    def channels_of(self, ws, handle):
        return [ch for (name, _), ch in self.channels.items()
                if name == ws.name and handle in self.members[(name, ch)]]

    def senders(self, reads=False):
        return [Sender(self, ws, h, reads) for ws in self.workspaces for h in HANDLES]

    def acked(self):
        with self.lock:
            return len(self.ledger["acked"])


class Sender(threading.Thread):
    """Streams pipelined sends to its channels; survives server deaths.
    Reconnects with its token, as a client does after a restart."""

    def __init__(self, load, ws, handle, reads=False):
        super().__init__(daemon=True)
        self.load, self.ws, self.handle, self.reads = load, ws, handle, reads
        self.channels = load.channels_of(ws, handle)
        self.ledger, self.lock = load.ledger, load.lock
        self.stop = threading.Event()
        self.rid = 0

    def connect(self):
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.load.server.api)
        self.rid += 1
        sock.send(msgpack.packb({"op": "auth", "rid": self.rid,
                                 "token": self.load.tokens[(self.ws.name, self.handle)]}))
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
                body = "%s/%s %s" % (self.ws.name, self.handle, cmid)
                with self.lock:
                    self.ledger["unknown"][cmid] = (self.ws.name, ch, body, self.handle)
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
            if payload.get("error") == "not_authed":
                return  # a restarted server: authenticate again, pending stay unknown
            if payload.get("re") in pending:
                cmid, _ = pending.pop(payload["re"])
                if cmid is None:
                    if payload.get("ok"):
                        key = (self.ws.name, self.handle, payload["ch"])
                        with self.lock:
                            reads = self.ledger["reads"]
                            reads[key] = max(reads.get(key, 0), payload["read_seq"])
                    continue
                if payload.get("ok"):
                    with self.lock:
                        name, ch, body, handle = self.ledger["unknown"].pop(cmid)
                        assert cmid not in self.ledger["acked"]
                        self.ledger["acked"][cmid] = (name, ch, payload["seq"], body, handle)


def drive(load, senders, until):
    """Starts the senders, runs until() returns, stops them."""
    for s in senders:
        s.start()
    try:
        until()
    finally:
        for s in senders:
            s.stop.set()
        for s in senders:
            s.join(timeout=10)


def read_all(reader, ch):
    """The whole history of a channel, oldest first, page by page."""
    stored, after = [], 0
    while True:
        if after:
            page = reader.ok("history", ch=ch, after=after, limit=200)
        else:
            page = reader.ok("history", ch=ch, before=201, limit=200)
        msgs = page["messages"]
        stored += msgs
        if not msgs or not page["has_more_after"]:
            return stored
        after = msgs[-1]["seq"]


def resume_from(client, ch, checkpoint):
    """What a client that has everything up to checkpoint gets from sync."""
    got = []
    while True:
        reply = client.ok("sync", channels={str(ch): checkpoint}, limit=200)
        entry = [c for c in reply["channels"] if c["ch"] == ch]
        if not entry:
            return got
        got += entry[0]["messages"]
        if not entry[0]["messages"] or not entry[0]["has_more"]:
            return got
        checkpoint = entry[0]["messages"][-1]["seq"]


class Member(Client):
    """A client of one user that authenticates again when the broker has
    forgotten its session (a session quiet for longer than the broker's
    idle limit is dropped, as any integrator's)."""

    def __init__(self, load, name, handle):
        super().__init__(load.server.api)
        self.token = load.tokens[(name, handle)]
        super().ok("auth", token=self.token)

    def ok(self, op, **fields):
        reply = self.call(op, **fields)
        if reply.get("error") == "not_authed":
            super().ok("auth", token=self.token)
            reply = self.call(op, **fields)
        assert reply.get("ok"), "%s failed: %r" % (op, reply)
        return reply


def verify(load):
    """Checks the store against the ledger; resends unknown sends first."""
    ledger = load.ledger
    clients = {}
    for ws in load.workspaces:
        for h in HANDLES:
            clients[(ws.name, h)] = Member(load, ws.name, h)
    for cmid, (name, ch, body, handle) in list(ledger["unknown"].items()):
        client = clients[(name, handle)]
        reply = client.ok("send", ch=ch, body=body, client_msg_id=cmid)
        ledger["acked"][cmid] = (name, ch, reply["seq"], body, handle)
        del ledger["unknown"][cmid]
        again = client.ok("send", ch=ch, body=body, client_msg_id=cmid)
        assert again["seq"] == reply["seq"] and again["duplicate"]
    expected = {}
    for cmid, (name, ch, seq, body, _) in ledger["acked"].items():
        assert (name, ch, seq) not in expected, "two acks for one seq"
        expected[(name, ch, seq)] = body
    resumes = 0
    for (name, kind), ch in load.channels.items():
        reader = clients[(name, "u0")]   # u0 is a member of every channel
        stored = read_all(reader, ch)
        seqs = [m["seq"] for m in stored]
        assert seqs == list(range(1, len(seqs) + 1)), "gap or duplicate in %s %s" % (name, kind)
        for m in stored:
            assert expected.get((name, ch, m["seq"])) == m["body"], \
                "%s %s seq %d is not the acked one (or was never sent)" % (name, kind, m["seq"])
        acked_here = sum(1 for (n, c, _) in expected if (n, c) == (name, ch))
        assert acked_here == len(stored), "acked %d, stored %d" % (acked_here, len(stored))
        head = len(stored)
        member = clients[(name, random.choice(load.members[(name, ch)]))]
        for checkpoint in {0, head, random.randint(0, head), random.randint(0, head)}:
            got = resume_from(member, ch, checkpoint)
            assert [m["seq"] for m in got] == list(range(checkpoint + 1, head + 1)), \
                "resuming %s %s from %d did not give exactly what follows" % (name, kind, checkpoint)
            assert all(m["body"] == expected[(name, ch, m["seq"])] for m in got)
            resumes += 1
    for (name, handle, ch), read_seq in ledger["reads"].items():
        listed = {c["id"]: c for c in clients[(name, handle)].ok("channel_list")["channels"]}
        assert listed[ch]["read_seq"] >= read_seq, "a read position went back"
    for c in clients.values():
        c.close()
    return resumes


def test_sigkill_under_load():
    server = Server(http=False).start()
    try:
        load = Load(server)
        senders = load.senders(reads=True)

        def kills():
            for kill in range(KILLS):
                time.sleep(random.uniform(0.3, 1.2))
                server.kill()
                server.start(wait=False)
                server.wait_ready()
            time.sleep(0.5)
        drive(load, senders, kills)
        acked = load.acked()
        assert acked > KILLS * 10, "the load was too light to mean anything (%d acks)" % acked
        resumes = verify(load)
        print("crash: %d kills, %d acked sends verified over %d channels (%d tenants x 4 kinds, "
              "%d senders), %d resumes checked" % (KILLS, len(load.ledger["acked"]),
              len(load.channels), TENANTS, len(senders), resumes))
        assert server.stop() == 0
    finally:
        server.cleanup()


def test_named_kill_points():
    """The server kills itself at each named point inside the send path."""
    for point in ("before_write", "after_write", "mid_acks", "read_position"):
        server = Server(http=False, env={"CHORUS_KILL_AT": point + ":40"}).start()
        try:
            load = Load(server)
            deaths = [0]

            def until_deaths():
                deadline = time.time() + 20
                while deaths[0] < 3 and time.time() < deadline:
                    if server.proc.poll() is not None:
                        deaths[0] += 1
                        server.stop()
                        server.start(wait=False)
                        try:
                            server.wait_ready()
                        except RuntimeError:
                            pass    # killed at the point again while starting: counted next pass
                    time.sleep(0.05)
            drive(load, load.senders(reads=True), until_deaths)
            assert deaths[0] >= 1, "kill point %s was never reached" % point
            server.stop(signal.SIGKILL)
            server.env.pop("CHORUS_KILL_AT")
            server.start()
            verify(load)
            print("kill point %s: %d deaths, %d acked verified" % (point, deaths[0], load.acked()))
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
