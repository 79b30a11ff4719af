"""Durability checks: the ack comes only after the WAL sync, and damaged files
never make the server start and serve a gap.

1. Syscall order (strace). chorusd runs under
   `strace -f -ttt -T -y -e trace=write,pwrite64,writev,fdatasync,fsync`
   while several pipelined sessions send bodies carrying unique 12-hex
   markers; the client notes time.time() right after it receives each ack.
   The WAL (<data>/messages/NNNNNN.log) is rebuilt byte for byte from the
   traced writes and parsed as RocksDB's log format (32 KiB blocks, 7-byte
   fragment headers), so a marker that a block boundary splits is found in
   the re-joined record. For each marker: the write that completed its
   record, then the first fdatasync/fsync on that WAL that started after the
   write returned; its end (start + -T duration) must be <= the ack's
   receive time, with no slack. The same check against chorusd_early_ack
   (acks before it writes) must find acks received before the sync ended.
2. Damage after a clean stop (recovery mode kTolerateCorruptedTailRecords):
   a torn WAL tail (the last record cut: a write that was never acked)
   starts with every acked message; a flipped bit in the middle of the WAL
   refuses to start and names the file; a truncated MANIFEST or SST either
   refuses to start or starts with every acked message; a server that starts
   and serves a gap fails the test.

Environment: CHORUSD, CHORUSD_EARLY_ACK; CHORUS_DURABILITY_SENDS (sends in
each traced run, default 10000).
"""
import bisect
import glob
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import uuid

import msgpack
import zmq

import chorus_harness
from chorus_harness import Client, Server, Workspace, run
from test_crash import read_all

CHORUSD_EARLY_ACK = os.environ.get("CHORUSD_EARLY_ACK", "build/tests/chorusd_early_ack")
SENDS = int(os.environ.get("CHORUS_DURABILITY_SENDS", "10000"))
STRACE = shutil.which("strace") or "/usr/bin/strace"
BLOCK = 32768           # RocksDB log block size
HEADER = 7              # crc32c (4), length (2), type (1)
MARKER_RE = re.compile(rb"dur:([0-9a-f]{12})")


# ---------------------------------------------------------------------------
#  A chorusd of a given binary, optionally under strace


def verify_ledger(ws, channels, ledger):
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
        stored = read_all(reader, ch)
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

class Chorusd(Server):
    """Server with a chosen binary; under strace, signals go to chorusd itself."""

    def __init__(self, binary=None, trace=None, **kw):
        super().__init__(http=False, **kw)
        self.binary = binary or chorus_harness.CHORUSD
        self.trace = trace

    def command(self):
        cmd = super().command()
        cmd[0] = self.binary
        if self.trace:
            cmd = [STRACE, "-f", "-ttt", "-T", "-y",
                   "-e", "trace=write,pwrite64,writev,fdatasync,fsync",
                   "-s", "4194304", "-o", self.trace] + cmd
        return cmd

    def target_pid(self):
        """PID of chorusd: the Popen child itself, or strace's child."""
        if not self.trace:
            return self.proc.pid
        deadline = time.time() + 10
        while time.time() < deadline:
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    with open("/proc/%s/stat" % entry) as f:
                        stat = f.read()
                except OSError:
                    continue
                fields = stat[stat.rfind(")") + 2:].split()
                if int(fields[1]) == self.proc.pid:
                    return int(entry)
            time.sleep(0.05)
        raise RuntimeError("no chorusd child under strace %d" % self.proc.pid)

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc and self.trace and self.proc.poll() is None:
            os.kill(self.target_pid(), sig)
            try:
                code = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError("traced chorusd did not stop on %s" % sig)
            self.log.close()
            self.proc = None
            return code
        return super().stop(sig, timeout)


# ---------------------------------------------------------------------------
#  strace parsing

_LINE = re.compile(r"^(\d+) +(\d+\.\d+) (.*)$", re.S)
_DONE = re.compile(r"^(\w+)\((.*)\) += (-?\d+|\?)(?: [^<]*)? <(\d+\.\d+)>$", re.S)
_UNFINISHED = re.compile(r"^(\w+)\((.*) <unfinished \.\.\.>$", re.S)
_RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>(.*)\) += (-?\d+|\?)(?: [^<]*)? <(\d+\.\d+)>$", re.S)
_FD = re.compile(r"^(\d+)<(.*?)>(?:, |$)", re.S)
_STR = re.compile(r'"((?:[^"\\]|\\.)*)"(\.\.\.)?', re.S)
_ESC = re.compile(r"\\(?:([0-7]{1,3})|x([0-9a-fA-F]{2})|(.))", re.S)
_SIMPLE = {"n": "\n", "t": "\t", "r": "\r", "v": "\v", "f": "\f", "a": "\a",
           "b": "\b", '"': '"', "\\": "\\", "'": "'", "e": "\x1b"}


def unescape(text):
    def one(m):
        if m.group(1):
            return chr(int(m.group(1), 8))
        if m.group(2):
            return chr(int(m.group(2), 16))
        return _SIMPLE.get(m.group(3), m.group(3))
    return _ESC.sub(one, text).encode("latin-1")


def parse_trace(path, wal_dir):
    """The WAL writes and syncs of a trace, per WAL path.

    Returns {path: {"writes": [...], "syncs": [...], "unknown": n}}. A write is
    {off, end, t0, t1, done (line number of its completion), data}; a sync is
    {line (of its start), t0, t1, ok}. Writes whose buffer strace cut short,
    and writev, are counted in "unknown" and leave a hole in the rebuilt file.
    """
    wals = {}
    pending = {}
    wal_re = re.compile(re.escape(wal_dir.rstrip("/")) + r"/\d+\.log$")

    def wal_of(args):
        m = _FD.match(args)
        if m and wal_re.match(m.group(2)):
            return m.group(2), args[m.end():]
        return None, None

    def handle(name, args, ret, t0, dur, start_line, done_line):
        path, rest = wal_of(args)
        if path is None:
            return
        wal = wals.setdefault(path, {"writes": [], "syncs": [], "unknown": 0, "size": 0})
        if name in ("fdatasync", "fsync"):
            wal["syncs"].append({"line": start_line, "t0": t0, "t1": t0 + dur,
                                 "ok": ret == "0"})
            return
        if ret in ("?",) or int(ret) < 0:
            return
        count = int(ret)
        m = _STR.match(rest)
        if name == "writev" or not m or m.group(2):
            #  writev or a buffer strace cut short: bytes we cannot see
            wal["unknown"] += 1
            data = None
        else:
            data = unescape(m.group(1))[:count]
            if len(data) != count:
                wal["unknown"] += 1
                data = None
        if name == "pwrite64":
            off = int(rest.rsplit(", ", 1)[1])
        else:
            off = wal["size"]
        wal["size"] = max(wal["size"], off + count)
        wal["writes"].append({"off": off, "end": off + count, "t0": t0, "t1": t0 + dur,
                              "done": done_line, "data": data})

    with open(path, "r", encoding="latin-1") as f:
        for number, line in enumerate(f):
            m = _LINE.match(line.rstrip("\n"))
            if not m:
                continue
            pid, ts, body = m.group(1), float(m.group(2)), m.group(3)
            d = _DONE.match(body)
            if d:
                handle(d.group(1), d.group(2), d.group(3), ts, float(d.group(4)), number, number)
                continue
            u = _UNFINISHED.match(body)
            if u:
                pending[pid] = (u.group(1), u.group(2), ts, number)
                continue
            r = _RESUMED.match(body)
            if r and pid in pending:
                name, args, t0, start_line = pending.pop(pid)
                if name == r.group(1):
                    handle(name, args + r.group(2), r.group(3), t0, float(r.group(4)),
                           start_line, number)
    return wals


def wal_records(size, pieces):
    """Logical records of a RocksDB log rebuilt from (off, data) pieces.

    Yields (payload, first_offset, end_offset, joins): joins are the payload
    offsets where a fragment after a 7-byte header (a block boundary) begins.
    A hole (None data) poisons the records it touches: they are skipped.
    """
    buf = bytearray(size)
    known = bytearray(size)
    for off, data in pieces:
        if data is not None:
            buf[off:off + len(data)] = data
            known[off:off + len(data)] = b"\1" * len(data)
    off = 0
    current, start, joins, poisoned = None, 0, [], False
    while off + HEADER <= size:
        left = BLOCK - off % BLOCK
        if left < HEADER:
            off += left       # block trailer: zero padding
            continue
        length = buf[off + 4] | (buf[off + 5] << 8)
        kind = buf[off + 6]
        end = off + HEADER + length
        if end > size or (kind == 0 and length == 0):
            break
        bad = 0 in known[off:end]
        if kind == 1:         # full
            if not bad:
                yield bytes(buf[off + HEADER:end]), off, end, []
            current = None
        elif kind == 2:       # first
            current, start, joins, poisoned = bytearray(buf[off + HEADER:end]), off, [], bad
        elif kind in (3, 4) and current is not None:
            joins.append(len(current))
            current += buf[off + HEADER:end]
            poisoned = poisoned or bad
            if kind == 4:
                if not poisoned:
                    yield bytes(current), start, end, joins
                current = None
        else:
            current = None
        off = end


def wal_index(wals):
    """marker -> {write_t0, write_t1, sync_t1, wal} from the parsed trace, and stats."""
    found = {}
    stats = {"split": 0, "records": 0, "unknown_writes": 0, "fragmented": 0}
    for path, wal in wals.items():
        stats["unknown_writes"] += wal["unknown"]
        writes = sorted(wal["writes"], key=lambda w: w["off"])
        ends = [w["end"] for w in writes]
        syncs = [s for s in wal["syncs"] if s["ok"]]
        sync_lines = [s["line"] for s in syncs]
        for payload, first, end, joins in wal_records(
                wal["size"], [(w["off"], w["data"]) for w in writes]):
            stats["records"] += 1
            if joins:
                stats["fragmented"] += 1
            last_write = writes[bisect.bisect_left(ends, end)]
            first_write = writes[bisect.bisect_right(ends, first)]
            i = bisect.bisect_right(sync_lines, last_write["done"])
            sync = syncs[i] if i < len(syncs) else None
            for m in MARKER_RE.finditer(payload):
                marker = m.group(1).decode()
                if any(m.start() < j < m.end() for j in joins):
                    stats["split"] += 1   # a raw byte search would have missed it
                found[marker] = {"write_t0": first_write["t0"], "write_t1": last_write["t1"],
                                 "sync_t1": sync["t1"] if sync else None, "wal": path}
    return found, stats


# ---------------------------------------------------------------------------
#  A loaded stream of sends with ack receive times

def make_sessions(server, count):
    handles = ["u%d" % i for i in range(count)]
    ws = Workspace(server, users=handles)
    sessions = []
    for handle in handles:
        client = ws.login(handle)
        ch = client.ok("channel_create", name="dur-" + handle)["channel"]["id"]
        sessions.append((client, ch))
    return ws, sessions


def stream(sessions, total, windows=(1, 2, 4, 16, 48, 64), deadline_s=180):
    """Pipelined sends over all sessions, each with its own window (so batches
    of every size meet); returns ({marker: ack receive time}, errors)."""
    poller = zmq.Poller()
    lanes = {}
    for i, (client, ch) in enumerate(sessions):
        poller.register(client.sock, zmq.POLLIN)
        lanes[client.sock] = (client, ch, {}, windows[i % len(windows)])
    acked, errors = {}, []
    sent = 0
    deadline = time.time() + deadline_s
    while (sent < total or any(lane[2] for lane in lanes.values())) and time.time() < deadline:
        for sock, (client, ch, pending, window) in lanes.items():
            while sent < total and len(pending) < window:
                marker = secrets.token_hex(6)
                client.rid += 1
                pending[client.rid] = marker
                sent += 1
                sock.send(msgpack.packb({"op": "send", "rid": client.rid, "ch": ch,
                                         "client_msg_id": uuid.uuid4().hex,
                                         "body": "dur:%s load" % marker}))
        for sock, _ in poller.poll(1000):
            pending = lanes[sock][2]
            while True:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                now = time.time()          # the ack's receive time
                payload = msgpack.unpackb(frames[0], raw=False, strict_map_key=False)
                marker = pending.pop(payload.get("re"), None)
                if marker is None:
                    continue               # an event
                if payload.get("ok"):
                    acked[marker] = now
                else:
                    errors.append(payload)
    left = sum(len(lane[2]) for lane in lanes.values())
    assert left == 0, "%d sends never answered within %d s" % (left, deadline_s)
    return acked, errors


def traced_run(binary, total):
    """Runs a loaded stream against `binary` under strace; returns the check's figures."""
    tmp = tempfile.mkdtemp(prefix="chorus-dur-strace-")
    trace = os.path.join(tmp, "trace.txt")
    #  LeakSanitizer cannot run under ptrace: an ASan build would exit 1
    asan = ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"), "detect_leaks=0"]))
    server = Chorusd(binary=binary, trace=trace, data_dir=os.path.join(tmp, "data"),
                     env={"ASAN_OPTIONS": asan})
    try:
        os.makedirs(server.data_dir)
        server.start()
        ws, sessions = make_sessions(server, 6)
        t_start = time.time()
        acked, errors = stream(sessions, total)
        elapsed = time.time() - t_start
        for client, _ in sessions:
            client.close()
        code = server.stop()
        assert code == 0, "chorusd exited with %s on SIGTERM" % code
        assert not errors, "sends failed: %r" % errors[:3]
        wals = parse_trace(trace, os.path.join(server.data_dir, "messages"))
        assert wals, "no write to a WAL under %s/messages in the trace" % server.data_dir
        found, stats = wal_index(wals)
        result = {"acked": len(acked), "matched": 0, "after_sync": 0, "before_sync": 0,
                  "before_write": 0, "never_synced": 0, "min_margin": None,
                  "worst": None, "elapsed": elapsed, "stats": stats,
                  "syncs": sum(len(w["syncs"]) for w in wals.values())}
        margins = []
        for marker, t_ack in acked.items():
            rec = found.get(marker)
            if rec is None:
                continue
            result["matched"] += 1
            if t_ack < rec["write_t0"]:
                result["before_write"] += 1
            if rec["sync_t1"] is None:
                result["never_synced"] += 1
                continue
            margin = t_ack - rec["sync_t1"]
            margins.append(margin)
            if margin >= 0:
                result["after_sync"] += 1
            else:
                result["before_sync"] += 1
        if margins:
            result["min_margin"] = min(margins)
        return result
    finally:
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def describe(name, r):
    return ("%s: %d acked, %d matched in the WAL (%d records, %d fragmented, %d markers split "
            "by a block header re-joined, %d writes unreadable), %d syncs; acks after their sync %d, "
            "before their sync %d, before their write %d, never synced %d; min margin %.1f us; "
            "stream %.1f s" % (
                name, r["acked"], r["matched"], r["stats"]["records"], r["stats"]["fragmented"],
                r["stats"]["split"], r["stats"]["unknown_writes"], r["syncs"], r["after_sync"],
                r["before_sync"], r["before_write"], r["never_synced"],
                (r["min_margin"] or 0) * 1e6, r["elapsed"]))


def test_ack_follows_wal_sync():
    assert os.access(STRACE, os.X_OK), "strace is not installed (Debian package strace, scripts/setup.sh)"
    real = traced_run(chorus_harness.CHORUSD, SENDS)
    print(describe("chorusd", real), flush=True)
    assert real["acked"] == SENDS
    assert real["matched"] >= 1000 and real["matched"] >= 0.95 * real["acked"], \
        "only %d of %d acked markers found in the traced WAL writes" % (real["matched"], real["acked"])
    assert real["never_synced"] == 0, "%d acked sends whose WAL write was never synced" % real["never_synced"]
    assert real["before_sync"] == 0 and real["before_write"] == 0, \
        "%d acks received before their WAL sync completed (worst %.1f us early)" % (
            real["before_sync"], -(real["min_margin"] or 0) * 1e6)
    assert real["after_sync"] == real["matched"]

    #  Negative control: the same check must catch a server that acks first
    early = traced_run(CHORUSD_EARLY_ACK, SENDS)
    print(describe("chorusd_early_ack (negative control)", early), flush=True)
    assert early["matched"] >= 1000, "negative control: too few markers matched (%d)" % early["matched"]
    caught = early["before_sync"] + early["before_write"] + early["never_synced"]
    assert caught > 0, ("NEGATIVE CONTROL NOT CAUGHT: chorusd_early_ack acks before it writes, "
                        "yet every ack was received after its WAL sync; this check proves nothing")


# ---------------------------------------------------------------------------
#  Damaged files after a stop

def read_wal(path):
    with open(path, "rb") as f:
        data = f.read()
    return data


def physical_records(data):
    """[(offset, length, type)] of every physical record of a log file."""
    out = []
    off = 0
    while off + HEADER <= len(data):
        left = BLOCK - off % BLOCK
        if left < HEADER:
            off += left
            continue
        length = data[off + 4] | (data[off + 5] << 8)
        kind = data[off + 6]
        if kind == 0 and length == 0:
            break
        out.append((off, length, kind))
        off += HEADER + length
    return out


def logical_spans(data):
    """[(first offset, end offset, payload)] of the logical records."""
    spans = [(first, end, payload) for payload, first, end, _ in
             wal_records(len(data), [(0, data)])]
    return spans


class Dataset:
    """A data directory with acked messages, copied for each damage case."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.ledger = {"acked": {}, "unknown": {}}
        self.tail = None          # (cmid, ch, body, handle) of the last send
        self.ws = None
        self.channels = []

    def populate(self, server, per_channel, first=False):
        if first:
            self.ws = Workspace(server)
            alice = self.ws.login("alice")
            self.channels = [alice.ok("channel_create", name="dmg%d" % i)["channel"]["id"]
                             for i in range(3)]
            for handle in ("bob", "carol"):
                c = self.ws.login(handle)
                for ch in self.channels:
                    c.ok("channel_join", ch=ch)
                c.close()
            alice.close()
        self.ws.server = server
        alice = self.ws.login("alice")
        for ch in self.channels:
            bodies = ["dur:%s %s" % (secrets.token_hex(6), "x" * 120) for _ in range(per_channel)]
            #  Pipelined, with our own client_msg_ids for the ledger
            window = {}
            for body in bodies:
                cmid = uuid.uuid4().hex
                alice.rid += 1
                window[alice.rid] = (cmid, body)
                alice.send_raw(msgpack.packb({"op": "send", "rid": alice.rid, "ch": ch,
                                              "client_msg_id": cmid, "body": body}))
                if len(window) >= 64:
                    self._drain(alice, window, ch, 32)
            self._drain(alice, window, ch, 0)
        alice.close()
        #  One last send, alone in its batch: the record a torn tail cuts
        bob = self.ws.login("bob")
        cmid, body = uuid.uuid4().hex, "dur:%s tail" % secrets.token_hex(6)
        reply = bob.ok("send", ch=self.channels[0], body=body, client_msg_id=cmid)
        self.ledger["acked"][cmid] = (self.channels[0], reply["seq"], body, "bob")
        self.tail = (cmid, self.channels[0], body, "bob")
        bob.close()

    def _drain(self, client, window, ch, keep):
        while len(window) > keep:
            payload, _, _ = client.recv()
            if payload.get("re") in window:
                assert payload.get("ok"), payload
                cmid, body = window.pop(payload["re"])
                self.ledger["acked"][cmid] = (ch, payload["seq"], body, "alice")

    def copy(self, name):
        dst = os.path.join(self.tmp, name)
        shutil.copytree(self.src, dst, symlinks=True)
        return dst

    def ledger_copy(self, tail_torn=False):
        ledger = {"acked": dict(self.ledger["acked"]), "unknown": {}}
        if tail_torn:
            cmid, ch, body, handle = self.tail
            del ledger["acked"][cmid]
            ledger["unknown"][cmid] = (ch, body, handle)
        return ledger


def start_outcome(data_dir, timeout=30):
    """Starts chorusd on data_dir: ('served', server) or ('exited', code, log)."""
    server = Chorusd(data_dir=data_dir)
    server.start(wait=False)
    deadline = time.time() + timeout
    while time.time() < deadline:
        code = server.proc.poll()
        if code is not None:
            log = server.tail()
            server.log.close()
            server.proc = None
            return ("exited", code, log)
        try:
            with Client(server.api, timeout_ms=300) as c:
                if c.call("ping").get("ok"):
                    return ("served", server)
        except TimeoutError:
            pass
        time.sleep(0.05)
    server.kill()
    raise AssertionError("chorusd neither served nor exited within %d s" % timeout)


def stored_gap(server, ds, ledger):
    """Acked messages missing or wrong on a server that started: a list of strings."""
    ds.ws.server = server
    reader = ds.ws.login("alice")
    problems = []
    try:
        for ch in ds.channels:
            stored = {}
            page = reader.ok("history", ch=ch, before=201, limit=200)
            while True:
                for m in page["messages"]:
                    stored[m["seq"]] = m["body"]
                if not page["messages"] or not page["has_more_after"]:
                    break
                page = reader.ok("history", ch=ch, after=page["messages"][-1]["seq"], limit=200)
            for cmid, (c, seq, body, _) in ledger["acked"].items():
                if c == ch and stored.get(seq) != body:
                    problems.append("ch %d seq %d %s" % (ch, seq, "missing" if seq not in stored else "changed"))
    finally:
        reader.close()
    return problems


def expect_refusal_or_intact(ds, data_dir, ledger, what, name_hint=None):
    """The damage case passes if start-up fails with a message, or if every acked message is there."""
    outcome = start_outcome(data_dir)
    if outcome[0] == "exited":
        code, log = outcome[1], outcome[2]
        assert code != 0, "%s: chorusd exited 0 without serving" % what
        assert "corrupt" in log.lower(), "%s: no corruption message:\n%s" % (what, log)
        if name_hint:
            assert name_hint in log, "%s: the message does not name %s:\n%s" % (what, name_hint, log)
        line = [l for l in log.splitlines() if "cannot open" in l]
        return "refused (exit %d): %s" % (code, (line[-1] if line else log.strip().splitlines()[-1])[-160:])
    server = outcome[1]
    try:
        problems = stored_gap(server, ds, ledger)
        assert not problems, "%s: chorusd STARTED AND SERVES A GAP: %d of %d acked messages " \
            "missing or changed (e.g. %s)" % (what, len(problems), len(ledger["acked"]), problems[:3])
        verify_ledger(ds.ws, ds.channels, ledger)
        assert server.stop() == 0
        return "started with all %d acked messages" % len(ledger["acked"])
    finally:
        server.cleanup()


_DATASETS = {}


def datasets():
    """Three states, built once: 'wal' (clean stop, all data in the WAL), 'sst'
    (restarted and stopped again: the WAL was flushed to an SST), 'killed'
    (the sst state, more acked sends, then SIGKILL: new data only in the WAL)."""
    if _DATASETS:
        return _DATASETS
    tmp = tempfile.mkdtemp(prefix="chorus-dur-damage-")
    _DATASETS["tmp"] = tmp
    ds = Dataset(tmp)
    base = os.path.join(tmp, "base")
    os.makedirs(base)
    server = Chorusd(data_dir=base).start()
    try:
        ds.populate(server, 200, first=True)
        assert server.stop() == 0, "clean stop failed"
    finally:
        server.cleanup()
    wal_ledger = {"acked": dict(ds.ledger["acked"]), "unknown": {}}
    wal_tail = ds.tail
    ds.src = base
    wal_dir = ds.copy("wal")
    server = Chorusd(data_dir=base).start()
    try:
        assert server.stop() == 0
    finally:
        server.cleanup()
    sst_dir = ds.copy("sst")
    assert glob.glob(os.path.join(sst_dir, "messages", "*.sst")), "no SST after a restart"
    server = Chorusd(data_dir=base).start()
    try:
        ds.populate(server, 100)
        server.kill()
    finally:
        server.cleanup()
    killed_dir = ds.copy("killed")
    for name, path, ledger, tail in (("wal", wal_dir, wal_ledger, wal_tail),
                                     ("sst", sst_dir, wal_ledger, wal_tail),
                                     ("killed", killed_dir, ds.ledger, ds.tail)):
        d = Dataset(tmp)
        d.ws, d.channels, d.src = ds.ws, ds.channels, path
        d.ledger = {"acked": dict(ledger["acked"]), "unknown": {}}
        d.tail = tail
        _DATASETS[name] = d
    return _DATASETS


def newest(data_dir, pattern):
    files = sorted(glob.glob(os.path.join(data_dir, "messages", pattern)))
    assert files, "no %s in %s/messages" % (pattern, data_dir)
    return files[-1]


def tail_record(data, marker):
    """(first, end) of the last logical record; asserts it holds `marker`."""
    spans = logical_spans(data)
    assert spans, "no record in the WAL"
    first, end, payload = spans[-1]
    assert marker.encode() in payload, "the last WAL record is not the last send"
    assert end == len(data), "bytes after the last record (%d of %d)" % (end, len(data))
    return first, end


def test_torn_wal_tail_keeps_every_acked_message():
    """A torn last record is what a crash in the middle of a write leaves:
    recovery drops it (it was never acked) and keeps everything else. After
    a clean stop nothing is in flight, so a cut tail destroys an acked
    record: the store must then refuse to start (LAST_SEQUENCE), never serve
    with the message gone."""
    sets = datasets()
    cases = [("wal", "mid-payload", lambda first, end: first + HEADER + (end - first - HEADER) // 2),
             ("wal", "inside the header", lambda first, end: first + 4),
             ("killed", "one byte short", lambda first, end: end - 1)]
    for state, where, cut in cases:
        ds = sets[state]
        d = ds.copy("torn-%s-%s" % (state, where.replace(" ", "-")))
        wal = newest(d, "*.log")
        data = read_wal(wal)
        marker = ds.tail[2].split()[0][4:]
        first, end = tail_record(data, marker)
        at = cut(first, end)
        os.truncate(wal, at)
        ledger = ds.ledger_copy(tail_torn=True)
        outcome = start_outcome(d)
        if state == "wal":
            assert outcome[0] == "exited" and outcome[1] != 0 and "was closed at" in outcome[2], \
                "torn tail after a clean stop (%s): must refuse to start, got %s" % (where, outcome[:2])
            print("torn tail %-6s cut %-17s (%s, %d -> %d bytes): refused, the record was acked "
                  "before the clean stop" % (state, where, os.path.basename(wal), len(data), at),
                  flush=True)
            shutil.rmtree(d, ignore_errors=True)
            continue
        assert outcome[0] == "served", "torn tail (%s, %s): chorusd did not start: %s" % (
            state, where, outcome[1:])
        server = outcome[1]
        try:
            problems = stored_gap(server, ds, ledger)
            assert not problems, "torn tail lost acked messages: %s" % problems[:5]
            #  The cut record (never acked in this story) must be gone, then
            #  its retry lands exactly once
            ds.ws.server = server
            probe = ds.ws.login("alice")
            page = probe.ok("history", ch=ds.tail[1])
            assert all(m["body"] != ds.tail[2] for m in page["messages"]), \
                "the cut record survived: the truncation did not tear it"
            probe.close()
            verify_ledger(ds.ws, ds.channels, ledger)
            assert server.stop() == 0
        finally:
            server.cleanup()
        print("torn tail %-6s cut %-17s (%s, %d -> %d bytes): started, %d acked present, "
              "the torn send re-sent once" % (state, where, os.path.basename(wal), len(data), at,
                                              len(ledger["acked"])), flush=True)
        shutil.rmtree(d, ignore_errors=True)


def test_wal_bit_flip_refuses_to_start():
    ds = datasets()["wal"]
    for n, (fraction, bit) in enumerate(((0.3, 0), (0.5, 3), (0.7, 6))):
        d = ds.copy("flip-%d" % n)
        wal = newest(d, "*.log")
        data = read_wal(wal)
        records = physical_records(data)
        assert len(records) > 10, "the WAL is too small to have a middle"
        #  A record in the middle, never the last one; flip a bit of its payload
        off, length, _ = records[min(int(len(records) * fraction), len(records) - 2)]
        at = off + HEADER + length // 2
        with open(wal, "r+b") as f:
            f.seek(at)
            byte = f.read(1)[0]
            f.seek(at)
            f.write(bytes([byte ^ (1 << bit)]))
        outcome = start_outcome(d)
        if outcome[0] == "served":
            server = outcome[1]
            try:
                gap = stored_gap(server, ds, ds.ledger)
            finally:
                server.cleanup()
            raise AssertionError("bit flip at %d of %s: chorusd started (gap: %s)" % (
                at, os.path.basename(wal), gap[:3] or "none seen"))
        code, log = outcome[1], outcome[2]
        assert code != 0, "bit flip: exit 0"
        assert os.path.basename(wal) in log, \
            "bit flip: the start-up error does not name %s:\n%s" % (os.path.basename(wal), log)
        line = [l for l in log.splitlines() if "cannot open" in l]
        print("bit flip at %6d of %s (bit %d): refused, exit %d: ...%s" % (
            at, os.path.basename(wal), bit, code, line[-1][-150:] if line else ""), flush=True)
        shutil.rmtree(d, ignore_errors=True)


def test_truncated_manifest_never_serves_a_gap():
    sets = datasets()
    cases = [("wal", "to half", lambda size: size // 2),
             ("sst", "by 3 bytes", lambda size: size - 3),
             ("sst", "to 0 bytes", lambda size: 0)]
    failures = []
    for state, how, cut in cases:
        ds = sets[state]
        d = ds.copy("manifest-%s-%s" % (state, how.replace(" ", "-")))
        manifest = newest(d, "MANIFEST-*")
        size = os.path.getsize(manifest)
        os.truncate(manifest, cut(size))
        what = "MANIFEST %s (%s state, %d -> %d bytes)" % (how, state, size, cut(size))
        try:
            print("%s: %s" % (what, expect_refusal_or_intact(
                ds, d, ds.ledger, what, name_hint=os.path.join(d, "messages"))), flush=True)
        except AssertionError as e:
            print("FAILED %s" % e, flush=True)
            failures.append(str(e))
        shutil.rmtree(d, ignore_errors=True)
    assert not failures, "; ".join(failures)


def test_truncated_sst_never_serves_a_gap():
    ds = datasets()["sst"]
    failures = []
    for how, cut in (("by 3 bytes", lambda size: size - 3), ("to half", lambda size: size // 2),
                     ("to 4 KiB", lambda size: min(size, 4096))):
        d = ds.copy("sst-%s" % how.replace(" ", "-"))
        sst = newest(d, "*.sst")
        size = os.path.getsize(sst)
        os.truncate(sst, cut(size))
        what = "SST %s truncated %s (%d -> %d bytes)" % (os.path.basename(sst), how, size, cut(size))
        try:
            print("%s: %s" % (what, expect_refusal_or_intact(
                ds, d, ds.ledger, what, name_hint=os.path.join(d, "messages"))), flush=True)
        except AssertionError as e:
            print("FAILED %s" % e, flush=True)
            failures.append(str(e))
        shutil.rmtree(d, ignore_errors=True)
    assert not failures, "; ".join(failures)


def cleanup_datasets():
    if "tmp" in _DATASETS:
        shutil.rmtree(_DATASETS["tmp"], ignore_errors=True)


if __name__ == "__main__":
    try:
        run([test_ack_follows_wal_sync, test_torn_wal_tail_keeps_every_acked_message,
             test_wal_bit_flip_refuses_to_start, test_truncated_manifest_never_serves_a_gap,
             test_truncated_sst_never_serves_a_gap])
    finally:
        cleanup_datasets()
