"""I/O fault tests: disk full, libfiu faults, and an Nth-operation sweep.

Chorus acknowledges a send only once it is durable. When a write fails, the
persistence stage answers every staged send `storage_unavailable`
(retriable), rolls back its in-memory heads and refuses every later write
until restart (a failed fsync is never retried and then acknowledged); reads
keep working. These tests break real I/O under a real chorusd and check that
promise from the outside, with a ledger of every send:

* test_disk_full: the data directory on a 16 MiB tmpfs, filled until sends
  fail; then space is freed and the server restarted.
* test_fiu_fdatasync / test_fiu_write: libfiu fails the WAL's fdatasync or
  write once, armed with fiu-ctrl after a clean start-up.
* test_fiu_rename: libfiu fails rename(), at run time (RocksDB renames only
  its OPTIONS file then) and at start-up (the CURRENT file).
* test_nth_sweep: our LD_PRELOAD shim (tests/durability/fail_nth.c) fails the
  Nth write or sync under the data directory, for N = 1..CHORUS_IO_SWEEP
  (200 by default; 2000 for a deep run).
* test_negative_control: the same checks must catch chorusd_early_ack, a
  build that acks before it writes.

After every fault and restart without it: every acked message is present
exactly once with its seq and body, each channel's seqs run 1..head with no
gap or duplicate, every send that got no ack lands exactly once when retried
with the same client_msg_id, and no read position went back. See
tests/durability/IO-FAULTS.md.
"""
import mmap
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import msgpack
import zmq

from chorus_harness import CHORUSD, Client, Server, free_port, run

HERE = os.path.dirname(os.path.abspath(__file__))
SHIM_SRC = os.path.normpath(os.path.join(HERE, "..", "durability", "fail_nth.c"))
SWEEP = int(os.environ.get("CHORUS_IO_SWEEP", "200"))
EARLY_ACK = os.environ.get("CHORUSD_EARLY_ACK", "")
WORKERS = int(os.environ.get("CHORUS_IO_WORKERS", "2"))
FRESH_MAX = 9               # new tenants per sweep data directory at most
REPLY_MS = 5000             # a reply slower than this counts as no reply
STOP_S = 15                 # SIGTERM, then SIGKILL
CRASH_SIGNS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
               "Assertion `", "Segmentation fault", "terminate called", "SUMMARY: ")

# Operation bits of fail_nth.c
OP_WRITE, OP_PWRITE, OP_WRITEV, OP_FDATASYNC, OP_FSYNC, OP_RENAME = 1, 2, 4, 8, 16, 32
OP_NAMES = {OP_WRITE: "write", OP_PWRITE: "pwrite", OP_WRITEV: "writev",
            OP_FDATASYNC: "fdatasync", OP_FSYNC: "fsync", OP_RENAME: "rename"}
SWEEP_OPS = OP_WRITE | OP_PWRITE | OP_WRITEV | OP_FDATASYNC | OP_FSYNC
EIO, ENOSPC = 5, 28


def log(*args):
    print(*args, flush=True)


# ---------------------------------------------------------------------------
# Processes

def asan_runtime(binary):
    """Path of the ASan runtime the binary links, or None.

    An ASan binary refuses to start when another library is preloaded before
    its runtime, so every LD_PRELOAD below puts this first."""
    try:
        out = subprocess.run(["ldd", binary], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        if "libasan" in line and "=>" in line:
            return line.split("=>")[1].split("(")[0].strip() or None
    return None


_ports_lock = threading.Lock()
_ports_used = set()


def pick_port():
    """A free loopback port never handed out before in this run (the sweep
    starts servers from two threads)."""
    with _ports_lock:
        while True:
            port = free_port()
            if port not in _ports_used:
                _ports_used.add(port)
                return port


class Chorusd(Server):
    """chorusd with a command prefix (fiu-run), its log outside the data dir."""

    def __init__(self, data_dir, log_dir, binary=None, prefix=(), env=None):
        super().__init__(data_dir=data_dir, http=False, env=env, api_port=pick_port())
        self.binary = binary or CHORUSD
        self.prefix = list(prefix)
        self.log_path = os.path.join(log_dir, "chorusd-%s.log" % uuid.uuid4().hex[:10])

    def command(self):
        cmd = super().command()
        cmd[0] = self.binary
        return self.prefix + cmd

    def wait_ready(self, timeout=30):
        """Like the harness's, but polls every 10 ms (a sweep starts chorusd
        hundreds of times)."""
        deadline = time.time() + timeout
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RECONNECT_IVL, 10)
        sock.connect(self.api)
        try:
            rid = 0
            while time.time() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError("chorusd exited with %s:\n%s" % (self.proc.returncode, self.tail()))
                rid += 1
                sock.send(msgpack.packb({"op": "ping", "rid": rid}))
                if sock.poll(100):
                    reply = msgpack.unpackb(sock.recv_multipart()[0], raw=False, strict_map_key=False)
                    if reply.get("ok"):
                        return
        finally:
            sock.close()
        raise RuntimeError("chorusd not ready in %ds:\n%s" % (timeout, self.tail()))

    def halt(self, timeout=STOP_S):
        """SIGTERM, SIGKILL after timeout; returns (exit code, killed)."""
        if not self.proc:
            return None, False
        killed = False
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            killed = True
            self.proc.kill()
            code = self.proc.wait(timeout=30)
        self.log.close()
        self.proc = None
        return code, killed

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def crash_lines(self):
        return [line for line in self.log_text().splitlines()
                if any(sign in line for sign in CRASH_SIGNS)]


def wait_log(server, pattern, timeout=3.0):
    """The first log line matching pattern, waiting up to timeout; or None."""
    deadline = time.time() + timeout
    while True:
        for line in server.log_text().splitlines():
            if re.search(pattern, line):
                return line
        if time.time() >= deadline:
            return None
        time.sleep(0.05)


def make_tenant(server, handles):
    """A tenant with users; returns (name, {handle: (user id, token)})."""
    with Client(server.api, timeout_ms=30000) as admin:
        admin.ok("auth", token=server.admin_token())
        name = "t" + uuid.uuid4().hex[:10]
        admin.ok("tenant_create", name=name)
        users = {}
        for handle in handles:
            user = admin.ok("user_create", tenant=name, handle=handle, display_name=handle,
                            password="secret-" + handle)["user"]
            token = admin.ok("token_create", tenant=name, handle=handle)["token"]
            users[handle] = (user["id"], token)
    return name, users


def session(server, token):
    client = Client(server.api, timeout_ms=REPLY_MS)
    client.ok("auth", token=token)
    client.server = server
    return client


def requests(client, reqs, timeout_ms=REPLY_MS):
    """Pipelines requests; returns (replies in request order with None for no
    reply, rids in the order their replies arrived). Only the first reply to a
    rid counts; events are dropped."""
    rids = []
    for fields in reqs:
        client.rid += 1
        req = {"rid": client.rid}
        req.update(fields)
        client.send_raw(msgpack.packb(req, use_bin_type=True))
        rids.append(client.rid)
    got, order = {}, []
    deadline = time.time() + timeout_ms / 1000.0
    server = getattr(client, "server", None)
    while len(got) < len(rids):
        left = int((deadline - time.time()) * 1000)
        if left <= 0:
            break
        try:
            payload, _, _ = client.recv(min(left, 200))
        except TimeoutError:
            if server is not None and not server.alive():
                break           # no reply will come from a dead server
            continue
        rid = payload.get("re")
        if rid in rids and rid not in got:
            got[rid] = payload
            order.append(rid)
    client.events.clear()
    return [got.get(rid) for rid in rids], order


def call(client, op, **fields):
    fields["op"] = op
    return requests(client, [fields])[0][0]


# ---------------------------------------------------------------------------
# The ledger: what the server said about every send, checked after restarts

class Entry:
    __slots__ = ("cmid", "tenant", "ch", "uid", "body", "state", "seq", "present")

    def __init__(self, cmid, tenant, ch, uid, body):
        self.cmid, self.tenant, self.ch, self.uid, self.body = cmid, tenant, ch, uid, body
        self.state = "new"      # acked | failed (storage_unavailable) | unknown (no reply)
        self.seq = None         # acked seq
        self.present = None     # seq found at after a restart, for a send never acked


class Proc:
    """What one server process has said so far."""

    def __init__(self):
        self.refused = None     # first persistence storage_unavailable (op)
        self.meta_refused = None
        self.acks = 0


class Ledger:
    def __init__(self, body_len=48, problems=None):
        self.msgs = {}
        self.by_ch = {}         # (tenant, ch) -> [cmid]
        self.verified = {}      # (tenant, ch) -> head verified gapless
        self.reads = {}         # (tenant, uid, ch) -> lowest read_seq allowed
        self.channels = {}      # tenant -> {ch: creator uid}
        self.problems = problems if problems is not None else []
        self.body_len = body_len

    def problem(self, text):
        if len(self.problems) < 200:
            self.problems.append(text)
        log("  PROBLEM:", text)

    def add_channel(self, tenant, ch, uid):
        self.channels.setdefault(tenant, {})[ch] = uid
        self.by_ch.setdefault((tenant, ch), [])

    def new_send(self, tenant, ch, uid, body_len=None):
        cmid = uuid.uuid4().hex
        size = body_len or self.body_len
        body = (cmid + " " + "x" * size)[:max(size, len(cmid))]
        entry = Entry(cmid, tenant, ch, uid, body)
        self.msgs[cmid] = entry
        self.by_ch.setdefault((tenant, ch), []).append(cmid)
        return entry

    # -- replies ------------------------------------------------------------

    def send_reply(self, entry, reply, proc, where):
        """Records the reply to a first send of entry."""
        if reply is None:
            entry.state = "unknown"
            return
        if reply.get("ok"):
            if reply.get("duplicate"):
                self.problem("%s: first send of %s answered duplicate: %r" % (where, entry.cmid, reply))
            if proc.refused:
                self.problem("%s: send %s ACKED (seq %s) after the store refused a write (%s): "
                             "a write was accepted after a failed one"
                             % (where, entry.cmid, reply.get("seq"), proc.refused))
            entry.state, entry.seq = "acked", reply["seq"]
            proc.acks += 1
            key = (entry.tenant, entry.uid, entry.ch)
            self.reads[key] = max(self.reads.get(key, 0), entry.seq)
        elif reply.get("error") == "storage_unavailable":
            if reply.get("retriable") is not True:
                self.problem("%s: storage_unavailable without retriable: true: %r" % (where, reply))
            entry.state = "failed"
            proc.refused = proc.refused or "send %s" % entry.cmid
        else:
            self.problem("%s: send answered %r" % (where, reply))
            entry.state = "unknown"

    def other_reply(self, op, reply, proc, where, persistence=True):
        """Records the reply to a write that is not a send; True if ok."""
        if reply is None:
            return False
        if reply.get("ok"):
            return True
        if reply.get("error") == "storage_unavailable":
            if reply.get("retriable") is not True:
                self.problem("%s: storage_unavailable without retriable: true: %r" % (where, reply))
            if persistence:
                proc.refused = proc.refused or op
            else:
                proc.meta_refused = proc.meta_refused or op
            return False
        self.problem("%s: %s answered %r" % (where, op, reply))
        return False

    # -- after a restart ----------------------------------------------------

    def verify(self, sessions, full=False, where=""):
        """Checks every channel of the ledger: seqs gapless, acked messages
        present exactly once, read positions not behind. sessions maps
        tenant -> {uid: client}."""
        for (tenant, ch), cmids in self.by_ch.items():
            clients = sessions.get(tenant)
            if not clients:
                continue
            client = next(iter(clients.values()))
            lo = 0 if full else self.verified.get((tenant, ch), 0)
            found, head, after = [], None, lo
            while True:
                # seqs start at 1 and after: 0 is out of range: the first page is around: 1
                anchor = {"after": after} if after else {"around": 1}
                reply = call(client, "history", ch=ch, limit=200, **anchor)
                if not reply or not reply.get("ok"):
                    self.problem("%s: history of %s/%s after %d failed: %r" % (where, tenant, ch, after, reply))
                    return
                head = reply["head"]
                found += reply["messages"]
                if not reply["messages"] or not reply["has_more_after"]:
                    break
                after = reply["messages"][-1]["seq"]
            seqs = [m["seq"] for m in found]
            if seqs != list(range(lo + 1, head + 1)):
                missing = sorted(set(range(lo + 1, head + 1)) - set(seqs))
                self.problem("%s: channel %s/%s seqs not gapless after %d up to head %d: missing %s, got %d seqs"
                             % (where, tenant, ch, lo, head, missing[:10], len(seqs)))
            seen = set()
            for message in found:
                cmid = message.get("client_msg_id")
                entry = self.msgs.get(cmid)
                if entry is None or entry.tenant != tenant or entry.ch != ch:
                    self.problem("%s: message %s/%s seq %s (%s) is in no ledger entry"
                                 % (where, tenant, ch, message["seq"], cmid))
                    continue
                if cmid in seen:
                    self.problem("%s: %s stored twice (seq %s)" % (where, cmid, message["seq"]))
                seen.add(cmid)
                if message.get("body") != entry.body:
                    self.problem("%s: %s body differs" % (where, cmid))
                if entry.state == "acked" and entry.seq != message["seq"]:
                    self.problem("%s: %s acked at seq %s but stored at %s"
                                 % (where, cmid, entry.seq, message["seq"]))
                if entry.state != "acked":
                    entry.present = message["seq"]
            for cmid in cmids:
                entry = self.msgs[cmid]
                if entry.state == "acked" and entry.seq > lo and cmid not in seen:
                    self.problem("%s: ACKED MESSAGE LOST: %s (channel %s/%s seq %s, head now %s)"
                                 % (where, cmid, tenant, ch, entry.seq, head))
            self.verified[(tenant, ch)] = head
        for (tenant, uid, ch), read in self.reads.items():
            client = sessions.get(tenant, {}).get(uid)
            if client is None or read <= 0:
                continue
            reply = call(client, "history", ch=ch, limit=1)
            if reply and reply.get("ok") and reply["read_seq"] < read:
                self.problem("%s: read position of user %s in %s/%s went back: %d < %d"
                             % (where, uid, tenant, ch, reply["read_seq"], read))

    def verify_channels(self, sessions, where=""):
        """Every acked channel_create is still there."""
        for tenant, chans in self.channels.items():
            for uid, client in sessions.get(tenant, {}).items():
                mine = [ch for ch, creator in chans.items() if creator == uid]
                if not mine:
                    continue
                reply = call(client, "channel_list")
                have = {c["id"] for c in reply["channels"]} if reply and reply.get("ok") else set()
                for ch in mine:
                    if ch not in have:
                        self.problem("%s: acked channel %s/%s is gone" % (where, tenant, ch))

    def unacked(self):
        return [e for e in self.msgs.values() if e.state in ("failed", "unknown")]

    def retry_unacked(self, sessions, where=""):
        """Resends every unacked send with its client_msg_id: each must land
        exactly once (duplicate: true with the stored seq if it had landed)."""
        for entry in self.unacked():
            client = sessions.get(entry.tenant, {}).get(entry.uid)
            if client is None:
                continue
            reply = call(client, "send", ch=entry.ch, body=entry.body, client_msg_id=entry.cmid)
            if not reply or not reply.get("ok"):
                self.problem("%s: retry of %s after restart answered %r" % (where, entry.cmid, reply))
                continue
            if entry.present is not None:
                if not reply.get("duplicate") or reply["seq"] != entry.present:
                    self.problem("%s: retry of %s (stored at seq %s) answered %r"
                                 % (where, entry.cmid, entry.present, reply))
            elif reply.get("duplicate"):
                self.problem("%s: retry of %s (not stored) answered duplicate: %r" % (where, entry.cmid, reply))
            entry.state, entry.seq, entry.present = "acked", reply["seq"], None
            key = (entry.tenant, entry.uid, entry.ch)
            self.reads[key] = max(self.reads.get(key, 0), entry.seq)

    def counts(self):
        states = {}
        for entry in self.msgs.values():
            states[entry.state] = states.get(entry.state, 0) + 1
        return states


def restart_and_check(ledger, data_dir, log_dir, tokens, where, binary=None):
    """Starts a plain chorusd on data_dir; full verify, retry, full verify,
    then two new sends per channel that must continue the seqs."""
    server = Chorusd(data_dir, log_dir, binary=binary)
    try:
        server.start()
    except RuntimeError as e:
        ledger.problem("%s: chorusd does not start after the fault: %s" % (where, e))
        server.halt()
        return
    try:
        sessions = {tenant: {uid: session(server, token) for uid, token in users.items()}
                    for tenant, users in tokens.items()}
        ledger.verify(sessions, full=True, where=where + " after restart")
        ledger.verify_channels(sessions, where=where + " after restart")
        ledger.retry_unacked(sessions, where=where + " retry")
        proc = Proc()
        for (tenant, ch) in list(ledger.by_ch):
            users = sessions.get(tenant, {})
            uid = ledger.channels.get(tenant, {}).get(ch)
            if uid not in users:
                continue
            for _ in range(2):
                entry = ledger.new_send(tenant, ch, uid)
                reply = call(users[uid], "send", ch=ch, body=entry.body, client_msg_id=entry.cmid)
                ledger.send_reply(entry, reply, proc, where + " after restart")
                if entry.state != "acked":
                    ledger.problem("%s: a new send after restart was not acked: %r" % (where, reply))
        ledger.verify(sessions, full=True, where=where + " after retries")
        for clients in sessions.values():
            for client in clients.values():
                client.close()
    finally:
        code, killed = server.halt()
        if code != 0 or killed:
            ledger.problem("%s: clean chorusd exited with %s (killed: %s) after the check:\n%s"
                           % (where, code, killed, server.tail()))
        for line in server.crash_lines():
            ledger.problem("%s: after restart: %s" % (where, line))


def report(name, ledger):
    if ledger.msgs:
        log("  %s ledger: %s" % (name, ledger.counts()))
    if ledger.problems:
        raise AssertionError("%s: %d problem(s):\n  %s" % (name, len(ledger.problems),
                                                           "\n  ".join(ledger.problems[:25])))


# ---------------------------------------------------------------------------
# 1. Disk full: a 16 MiB tmpfs

def test_disk_full():
    if os.geteuid() != 0:
        log("SKIP test_disk_full: needs root to mount a tmpfs (running as uid %d)" % os.geteuid())
        return
    root = tempfile.mkdtemp(prefix="chorus-full-")
    mnt = os.path.join(root, "mnt")
    os.mkdir(mnt)
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", mnt],
                                 capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        mounted = None
        reason = str(e)
    if mounted is None or mounted.returncode != 0:
        reason = mounted.stderr.strip() if mounted is not None else reason
        log("SKIP test_disk_full: cannot mount a tmpfs: %s" % reason)
        shutil.rmtree(root, ignore_errors=True)
        return
    ledger = Ledger()
    servers = []
    try:
        data = os.path.join(mnt, "data")
        os.mkdir(data)
        server = Chorusd(data, root)
        servers.append(server)
        server.start()
        tenant, users = make_tenant(server, ["alice"])
        uid, token = users["alice"]
        alice = session(server, token)
        ch = alice.ok("channel_create", name="general")["channel"]["id"]
        ledger.add_channel(tenant, ch, uid)
        proc = Proc()
        big = 39000
        for _ in range(20):
            entry = ledger.new_send(tenant, ch, uid, big)
            ledger.send_reply(entry, call(alice, "send", ch=ch, body=entry.body,
                                          client_msg_id=entry.cmid), proc, "disk full warm-up")
        assert proc.acks == 20, "warm-up sends on an empty disk failed: %r" % ledger.problems
        # The filler takes all but ~1.5 MB, so the sends below fill the rest
        filler = os.path.join(mnt, "filler")
        st = os.statvfs(mnt)
        room = st.f_bavail * st.f_frsize - 1_500_000
        with open(filler, "wb") as f:
            chunk = b"\0" * (1 << 20)
            try:
                while room > 0:
                    f.write(chunk[:min(room, len(chunk))])
                    room -= len(chunk)
                f.flush()
            except OSError:
                pass
        log("  disk full: %d KiB free after the filler" % (os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize // 1024))
        failed_at = None
        for i in range(300):
            entry = ledger.new_send(tenant, ch, uid, big)
            reply = call(alice, "send", ch=ch, body=entry.body, client_msg_id=entry.cmid)
            ledger.send_reply(entry, reply, proc, "disk full send %d" % i)
            if reply is None:
                if server.alive():
                    ledger.problem("disk full: no reply to send %d within %d ms, server alive (hang)" % (i, REPLY_MS))
                else:
                    ledger.problem("disk full: CHORUSD DIED when the disk filled (exit %s) at send %d; "
                                   "no storage_unavailable was sent; log: %s"
                                   % (server.proc.returncode, i,
                                      " | ".join(server.crash_lines() or server.tail().splitlines()[-3:])))
                break
            if entry.state == "failed" and failed_at is None:
                failed_at = i
                log("  disk full: first storage_unavailable at send %d (%d acked before)" % (i, proc.acks))
            if failed_at is not None and i >= failed_at + 3:
                break
        else:
            ledger.problem("disk full: 300 sends of %d bytes never failed" % big)
        if server.alive():
            if failed_at is None:
                ledger.problem("disk full: no send was answered storage_unavailable")
            history = call(alice, "history", ch=ch, limit=5)
            acked = [e.seq for e in ledger.msgs.values() if e.state == "acked"]
            if not history or not history.get("ok"):
                ledger.problem("disk full: history does not answer on a full disk: %r" % history)
            elif history["head"] != max(acked):
                ledger.problem("disk full: head %s is not the last acked seq %s (heads not rolled back?)"
                               % (history["head"], max(acked)))
            listing = call(alice, "channel_list")
            if not listing or not listing.get("ok"):
                ledger.problem("disk full: channel_list does not answer on a full disk: %r" % listing)
            line = wait_log(server, r"persistence: write failed", 2)
            log("  disk full: server log: %s" % line)
        alice.close()
        os.unlink(filler)
        code, killed = server.halt()
        log("  disk full: stop after freeing space: exit %s%s" % (code, ", needed SIGKILL" if killed else ""))
        for line in server.crash_lines():
            ledger.problem("disk full: %s" % line)
        restart_and_check(ledger, data, root, {tenant: {uid: token}}, "disk full")
    finally:
        for server in servers:
            server.halt()
        for attempt in range(10):
            if subprocess.run(["umount", mnt], capture_output=True, timeout=30).returncode == 0:
                break
            time.sleep(0.3)
        else:
            subprocess.run(["umount", "-l", mnt], capture_output=True, timeout=30)
        shutil.rmtree(root, ignore_errors=True)
    report("disk full", ledger)


# ---------------------------------------------------------------------------
# 2. libfiu: fail the WAL's fdatasync or write, or rename, in a running server

def fiu_available():
    """True if libfiu's tools are installed; in CI their absence is a failure,
    not a skip (scripts/setup.sh must install fiu-utils and libfiu-dev)."""
    present = bool(shutil.which("fiu-run") and shutil.which("fiu-ctrl")
                   and os.path.exists("/usr/lib/fiu/fiu_posix_preload.so"))
    if not present and os.environ.get("CI"):
        raise AssertionError("fiu-run/fiu-ctrl not installed: scripts/setup.sh must install "
                             "fiu-utils and libfiu-dev")
    return present


def fiu_env(root):
    """LeakSanitizer must not blame chorusd for libfiu's own allocations
    (fiu_run_preload.so strdups FIU_ENABLE and never frees it)."""
    path = os.path.join(root, "lsan-fiu.supp")
    with open(path, "w") as f:
        f.write("leak:fiu_run_preload.so\nleak:fiu_posix_preload.so\nleak:libfiu.so\n")
    options = os.environ.get("LSAN_OPTIONS", "")
    return {"LSAN_OPTIONS": (options + ":" if options else "") + "suppressions=" + path}


def fiu_prefix(fifo, enable=None):
    """fiu-run -x, with the ASan runtime kept first in LD_PRELOAD."""
    prefix = ["fiu-run", "-x", "-f", fifo]
    if enable:
        prefix += ["-c", enable]
    asan = asan_runtime(CHORUSD)
    if asan:
        prefix += ["/bin/sh", "-c", 'LD_PRELOAD="%s $LD_PRELOAD" exec "$0" "$@"' % asan]
    return prefix


def fiu_ctrl(fifo, server, command):
    """Runs a libfiu command in the server; a string saying why not, or None."""
    if not server.alive():
        return "chorusd is not running (exit %s)" % server.proc.returncode
    try:
        result = subprocess.run(["fiu-ctrl", "-f", fifo, "-c", command, str(server.proc.pid)],
                                capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return "fiu-ctrl %r got no answer in 15 s (chorusd alive: %s)" % (command, server.alive())
    if result.returncode != 0 or "error" in result.stdout:
        return "fiu-ctrl %r failed: %s %s" % (command, result.stdout, result.stderr)
    return None


def fiu_case(name, arm, hit_pattern, binary=None):
    """Arms a one-shot libfiu fault after a clean start, then checks the
    promise. Returns the ledger (problems in ledger.problems)."""
    root = tempfile.mkdtemp(prefix="chorus-fiu-")
    data = os.path.join(root, "data")
    fifo = os.path.join(root, "fiu")
    ledger = Ledger()
    server = Chorusd(data, root, binary=binary, prefix=fiu_prefix(fifo), env=fiu_env(root))
    try:
        server.start()
        tenant, users = make_tenant(server, ["alice"])
        uid, token = users["alice"]
        alice = session(server, token)
        ch = alice.ok("channel_create", name="general")["channel"]["id"]
        ledger.add_channel(tenant, ch, uid)
        proc = Proc()
        entries = [ledger.new_send(tenant, ch, uid) for _ in range(30)]
        for entry in entries[:10]:
            ledger.send_reply(entry, call(alice, "send", ch=ch, body=entry.body,
                                          client_msg_id=entry.cmid), proc, name + " warm-up")
        replies, _ = requests(alice, [dict(op="send", ch=ch, body=e.body, client_msg_id=e.cmid)
                                      for e in entries[10:]])
        for entry, reply in zip(entries[10:], replies):
            ledger.send_reply(entry, reply, proc, name + " warm-up")
        assert proc.acks == 30, "%s: warm-up failed: %r" % (name, ledger.problems)
        hit = None
        for attempt in range(3):
            # Membership saves affinities (a WAL write, no sync) at most once
            # a second; let it finish so the armed fault meets the send's write
            time.sleep(1.2)
            why = fiu_ctrl(fifo, server, arm)
            assert why is None, why
            inflight = [ledger.new_send(tenant, ch, uid) for _ in range(8)]
            acks_before = proc.acks
            replies, order = requests(alice, [dict(op="send", ch=ch, body=e.body, client_msg_id=e.cmid)
                                              for e in inflight])
            hit = wait_log(server, hit_pattern, 2)
            if hit:
                for entry, reply in zip(inflight, replies):
                    if reply and reply.get("ok"):
                        ledger.problem("%s: in-flight send %s ACKED while its write failed: %r"
                                       % (name, entry.cmid, reply))
                    ledger.send_reply(entry, reply, proc, name + " in flight")
                    if entry.state != "failed":
                        ledger.problem("%s: in-flight send %s not answered storage_unavailable: %r"
                                       % (name, entry.cmid, reply))
                break
            for entry, reply in zip(inflight, replies):
                ledger.send_reply(entry, reply, proc, name + " in flight (fault missed)")
            other = wait_log(server, r"membership: cannot save affinity", 0.5)
            log("  %s: attempt %d: the fault did not hit the messages WAL (%s); arming again"
                % (name, attempt + 1, other or "no failure logged"))
            assert proc.acks >= acks_before
        if not hit:
            ledger.problem("%s: the fault never hit the messages WAL (pattern %r)" % (name, hit_pattern))
        else:
            log("  %s: fault hit: %s" % (name, hit.strip()))
        # Faults off: the store must still refuse (no retry of a failed sync)
        why = fiu_ctrl(fifo, server, "disable name=" + re.search(r"name=([^,]+)", arm).group(1))
        if why:
            ledger.problem("%s: cannot disable the fault: %s\n%s" % (name, why, server.tail()))
        for _ in range(5):
            entry = ledger.new_send(tenant, ch, uid)
            ledger.send_reply(entry, call(alice, "send", ch=ch, body=entry.body,
                                          client_msg_id=entry.cmid), proc, name + " after fault")
            if entry.state == "acked":
                ledger.problem("%s: a send after the failed write was ACKED (store not failed for good)" % name)
        log("  %s: in flight: %s; after the fault, with I/O working again: %s"
            % (name, [e.state for e in inflight], [e.state for e in list(ledger.msgs.values())[-5:]]))
        history = call(alice, "history", ch=ch, limit=200)
        acked = max(e.seq for e in ledger.msgs.values() if e.state == "acked")
        if not history or not history.get("ok"):
            ledger.problem("%s: history does not answer after the fault: %r" % (name, history))
        elif history["head"] != acked:
            ledger.problem("%s: head %s after the fault is not the last acked seq %s (heads not rolled back)"
                           % (name, history["head"], acked))
        listing = call(alice, "channel_list")
        if not listing or not listing.get("ok"):
            ledger.problem("%s: channel_list does not answer after the fault: %r" % (name, listing))
        alice.close()
        code, killed = server.halt()
        if code != 0 or killed:
            ledger.problem("%s: SIGTERM after the fault: exit %s, killed %s" % (name, code, killed))
        for line in server.crash_lines():
            ledger.problem("%s: %s" % (name, line))
        restart_and_check(ledger, data, root, {tenant: {uid: token}}, name, binary=binary)
    finally:
        server.halt()
        shutil.rmtree(root, ignore_errors=True)
    return ledger


def test_fiu_fdatasync():
    if not fiu_available():
        log("SKIP test_fiu_fdatasync: fiu-utils/libfiu0 not installed (apt-get install fiu-utils libfiu-dev)")
        return
    # onetime: the next fdatasync succeeds again, so a server that retried
    # the sync would wrongly succeed; the stack filter keeps it to the WAL
    ledger = fiu_case("fdatasync",
                      "enable_stack_by_name name=posix/io/sync/fdatasync,failinfo=5,onetime,func_name=rocksdb_write",
                      r"persistence: write failed.*While fdatasync: .*/messages/\d+\.log: Input/output error")
    report("fiu fdatasync", ledger)


def test_fiu_write():
    if not fiu_available():
        log("SKIP test_fiu_write: fiu-utils/libfiu0 not installed (apt-get install fiu-utils libfiu-dev)")
        return
    # Only writes made inside rocksdb_write (the WAL append), and only once:
    # failing every write would also fail ZeroMQ's eventfd writes
    ledger = fiu_case("write",
                      "enable_stack_by_name name=posix/io/rw/write,failinfo=5,onetime,func_name=rocksdb_write",
                      r"persistence: write failed.*While appending to file: .*/messages/\d+\.log: Input/output error")
    report("fiu write", ledger)


def test_fiu_rename():
    """RocksDB 7.8 renames only its OPTIONS file at run time (failure logged
    and ignored) and CURRENT at open (failure stops the open)."""
    if not fiu_available():
        log("SKIP test_fiu_rename: fiu-utils/libfiu0 not installed (apt-get install fiu-utils libfiu-dev)")
        return
    root = tempfile.mkdtemp(prefix="chorus-fiu-")
    data = os.path.join(root, "data")
    fifo = os.path.join(root, "fiu")
    ledger = Ledger()
    server = Chorusd(data, root, prefix=fiu_prefix(fifo), env=fiu_env(root))
    try:
        server.start()
        tenant, users = make_tenant(server, ["alice"])
        fresh, fresh_users = make_tenant(server, ["una"])
        uid, token = users["alice"]
        fuid, ftoken = fresh_users["una"]
        alice, una = session(server, token), session(server, ftoken)
        ch = alice.ok("channel_create", name="general")["channel"]["id"]
        fch = una.ok("channel_create", name="first")["channel"]["id"]
        ledger.add_channel(tenant, ch, uid)
        ledger.add_channel(fresh, fch, fuid)
        proc = Proc()
        for _ in range(10):
            entry = ledger.new_send(tenant, ch, uid)
            ledger.send_reply(entry, call(alice, "send", ch=ch, body=entry.body,
                                          client_msg_id=entry.cmid), proc, "rename warm-up")
        why = fiu_ctrl(fifo, server, "enable name=posix/io/dir/rename,failinfo=5")
        assert why is None, why
        # The first send of a new tenant creates its column family, and
        # RocksDB then rewrites OPTIONS-*.dbtmp and renames it
        entry = ledger.new_send(fresh, fch, fuid)
        ledger.send_reply(entry, call(una, "send", ch=fch, body=entry.body,
                                      client_msg_id=entry.cmid), proc, "rename: new tenant's first send")
        log("  rename: first send of a new tenant under the fault: %s" % entry.state)
        messages = os.path.join(data, "messages")
        leftovers = [f for f in os.listdir(messages) if f.endswith(".dbtmp")]
        with open(os.path.join(messages, "LOG"), errors="replace") as f:
            warned = [line for line in f if "persist options" in line]
        if not leftovers and not warned:
            ledger.problem("rename: the fault was not hit (no OPTIONS-*.dbtmp left, no warning in LOG)")
        else:
            log("  rename: fault hit: %s; %s" % (leftovers, warned[0].strip()[:160] if warned else ""))
        for _ in range(3):
            e = ledger.new_send(tenant, ch, uid)
            ledger.send_reply(e, call(alice, "send", ch=ch, body=e.body, client_msg_id=e.cmid),
                              proc, "rename: later send")
        why = fiu_ctrl(fifo, server, "disable name=posix/io/dir/rename")
        if why:
            ledger.problem("rename: cannot disable the fault: %s" % why)
        alice.close()
        una.close()
        code, killed = server.halt()
        if code != 0 or killed:
            ledger.problem("rename: SIGTERM: exit %s, killed %s" % (code, killed))
        for line in server.crash_lines():
            ledger.problem("rename: %s" % line)
        # At start-up RocksDB writes a new MANIFEST and renames CURRENT to it
        boot = Chorusd(data, root, prefix=fiu_prefix(fifo + "b", "enable name=posix/io/dir/rename,failinfo=5"),
                       env=fiu_env(root))
        try:
            boot.start()
            ledger.problem("rename: chorusd started although every rename failed")
        except RuntimeError:
            pass
        code, killed = boot.halt()
        refusal = wait_log(boot, r"cannot open", 0)
        log("  rename at start-up: exit %s; %s" % (code, (refusal or "").strip()[:200]))
        if code is None or code <= 0 or killed or not refusal:
            ledger.problem("rename at start-up: expected a deliberate exit naming the error, got exit %s:\n%s"
                           % (code, boot.tail()))
        for line in boot.crash_lines():
            ledger.problem("rename at start-up: %s" % line)
        restart_and_check(ledger, data, root, {tenant: {uid: token}, fresh: {fuid: ftoken}}, "rename")
    finally:
        server.halt()
        shutil.rmtree(root, ignore_errors=True)
    report("fiu rename", ledger)


# ---------------------------------------------------------------------------
# 3. Nth-operation sweep with our shim

class Ctl:
    """The shim's control file (see fail_nth.c)."""

    def __init__(self, path):
        self.path = path
        with open(path, "wb") as f:
            f.write(b"\0" * 4096)
        self.fd = os.open(path, os.O_RDWR)
        self.map = mmap.mmap(self.fd, 4096)

    def _get(self, slot):
        return struct.unpack_from("<q", self.map, slot * 8)[0]

    def _set(self, slot, value):
        struct.pack_into("<q", self.map, slot * 8, value)

    def arm(self, n, err, ops):
        self._set(1, 0)
        self._set(4, 0)
        self._set(2, err)
        self._set(3, ops)
        self._set(0, self._get(0) + 1)
        self._set(1, n)

    def disarm(self):
        self._set(1, 0)

    def count(self):
        return self._get(4)

    def fired(self):
        """(op name, path) if the armed fault fired, else None."""
        if self._get(1) and self._get(5) == self._get(0):
            path = bytes(self.map[64:4096]).split(b"\0")[0].decode(errors="replace")
            return OP_NAMES.get(self._get(6), str(self._get(6))), path
        return None

    def close(self):
        self.map.close()
        os.close(self.fd)


def build_shim(out_dir):
    """Compiles fail_nth.c; returns the .so path, or None with a reason."""
    if not shutil.which("gcc"):
        return None, "gcc not found"
    so = os.path.join(out_dir, "fail_nth.so")
    result = subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-Wall", "-o", so, SHIM_SRC, "-ldl"],
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        return None, result.stderr
    return so, None


def shim_self_test(so, root):
    """The shim itself: the 2nd counted op (an fsync) fails once, drops the
    unsynced bytes, and the retried fsync succeeds (what fsyncgate allows)."""
    box = os.path.join(root, "selftest")
    os.mkdir(box)
    ctl = Ctl(os.path.join(root, "selftest.ctl"))
    script = (
        "import os, sys\n"
        "fd = os.open(sys.argv[1] + '/f', os.O_WRONLY | os.O_CREAT | os.O_TRUNC)\n"
        "os.write(fd, b'a' * 100); os.fsync(fd)\n"
        "print(open(sys.argv[2], 'rb').read(8) != b'\\0' * 8, flush=True)\n"
        "sys.stdin.readline()\n"
        "os.write(fd, b'b' * 50)\n"
        "try:\n    os.fsync(fd); print('fsync ok')\nexcept OSError as e:\n    print('fsync failed', e.errno)\n"
        "os.fsync(fd); print('size', os.fstat(fd).st_size)\n")
    env = dict(os.environ, LD_PRELOAD=so, FAIL_NTH_DIR=os.path.realpath(box), FAIL_NTH_CTL=ctl.path)
    child = subprocess.Popen([sys.executable, "-c", script, box, ctl.path], env=env, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child.stdout.readline()
    ctl.arm(2, EIO, SWEEP_OPS)
    out, err = child.communicate("go\n", timeout=30)
    fired = ctl.fired()
    ctl.close()
    assert "fsync failed 5" in out and "size 100" in out and fired and fired[0] == "fsync", \
        "fail_nth self-test failed: out=%r err=%r fired=%r" % (out, err, fired)


class Sweep:
    """Fails the Nth write/sync for each N; one server start per fault that
    fired, several N per start while the store stays healthy."""

    FRESH = FRESH_MAX   # tenants per world whose first send creates a column family
    ROTATE = 50         # iterations per data directory
    FULL_EVERY = 25     # full verification every so many restarts

    def __init__(self, root, so, binary, label):
        self.root, self.so, self.binary, self.label = root, so, binary, label
        self.asan = asan_runtime(binary)
        self.ctl = Ctl(os.path.join(root, label + ".ctl"))
        self.ledger = Ledger()
        self.server = None
        self.sessions = {}
        self.data = None
        self.stats = {"iterations": 0, "fired": 0, "starts": 0, "kinds": {}, "outcomes": {}}
        self.restarts = 0

    # -- the world: a data directory, tenants, users, channels ---------------

    def env(self):
        preload = [p for p in (self.asan, self.so) if p]
        return {"LD_PRELOAD": " ".join(preload), "FAIL_NTH_DIR": os.path.realpath(self.data),
                "FAIL_NTH_CTL": self.ctl.path}

    def start(self):
        self.ctl.disarm()
        server = Chorusd(self.data, self.root, binary=self.binary, env=self.env())
        self.stats["starts"] += 1
        try:
            server.start()
        except RuntimeError as e:
            server.halt()
            self.ledger.problem("%s: chorusd does not start on %s after a fault: %s" % (self.label, self.data, e))
            return False
        self.server = server
        self.proc = Proc()
        self.sessions = {}
        for tenant, users in self.tokens.items():
            self.sessions[tenant] = {uid: session(server, token) for uid, token in users.items()}
        return True

    def close_sessions(self):
        for clients in self.sessions.values():
            for client in clients.values():
                client.close()
        self.sessions = {}

    def new_world(self, fresh=FRESH_MAX):
        self.data = tempfile.mkdtemp(prefix="data-", dir=self.root)
        self.ledger = Ledger(problems=self.ledger.problems)
        self.tokens = {}
        assert self.start(), "chorusd does not start on an empty data dir"
        tenant, users = make_tenant(self.server, ["alice", "bob"])
        self.main = tenant
        self.tokens[tenant] = {uid: token for uid, token in users.values()}
        alice = session(self.server, users["alice"][1])
        bob = session(self.server, users["bob"][1])
        for client, uid, name in ((alice, users["alice"][0], "g1"), (alice, users["alice"][0], "g2"),
                                  (bob, users["bob"][0], "b1")):
            ch = client.ok("channel_create", name=name)["channel"]["id"]
            self.ledger.add_channel(tenant, ch, uid)
        g1 = min(self.ledger.channels[tenant])
        bob.ok("channel_join", ch=g1)
        self.fresh = []
        for i in range(min(fresh, self.FRESH)):
            name, fresh_users = make_tenant(self.server, ["una"])
            fuid, ftoken = fresh_users["una"]
            self.tokens[name] = {fuid: ftoken}
            client = session(self.server, ftoken)
            ch = client.ok("channel_create", name="first")["channel"]["id"]
            client.close()
            self.ledger.add_channel(name, ch, fuid)
            self.fresh.append(name)
        alice.close()
        bob.close()
        self.sessions = {tenant: {uid: session(self.server, token) for uid, token in users.items()}
                         for tenant, users in self.tokens.items()}

    def server_stop(self, where):
        self.close_sessions()
        died_before = not self.server.alive()
        code, killed = self.server.halt()
        text = self.server.log_text()
        for line in self.server.crash_lines():
            self.ledger.problem("%s: %s" % (where, line))
        if killed:
            self.ledger.problem("%s: chorusd did not stop within %ds of SIGTERM (hang)" % (where, STOP_S))
        elif died_before:
            deliberate = code is not None and code > 0 and re.search(r"^E: ", text, re.M)
            if not deliberate:
                self.ledger.problem("%s: CHORUSD DIED during the fault: exit %s\n%s"
                                    % (where, code, self.server.tail()))
        elif code != 0:
            self.ledger.problem("%s: exit %s on SIGTERM\n%s" % (where, code, self.server.tail()))
        self.server = None

    # -- workload steps -----------------------------------------------------

    def pick(self, rng, tenant=None):
        tenant = tenant or self.main
        chans = self.ledger.channels[tenant]
        ch = rng.choice(sorted(chans))
        uids = list(self.sessions[tenant])
        uid = chans[ch] if rng.random() < 0.6 or len(uids) == 1 else rng.choice(uids)
        if tenant == self.main and ch != min(chans) and uid != chans[ch]:
            uid = chans[ch]         # only g1 has both users as members
        return tenant, ch, uid

    def sends(self, rng, count, tenant=None, where=""):
        tenant, ch, uid = self.pick(rng, tenant)
        entries = [self.ledger.new_send(tenant, ch, uid, rng.choice((40, 200, 1500)))
                   for _ in range(count)]
        replies, order = requests(self.sessions[tenant][uid],
                                  [dict(op="send", ch=ch, body=e.body, client_msg_id=e.cmid) for e in entries])
        by_rid = dict(zip(range(len(entries)), zip(entries, replies)))
        done = set()
        base = self.sessions[tenant][uid].rid - len(entries) + 1
        for rid in order:                      # in arrival order: no ack after a refusal
            entry, reply = by_rid[rid - base]
            self.ledger.send_reply(entry, reply, self.proc, where)
            done.add(rid - base)
        for i, (entry, reply) in by_rid.items():
            if i not in done:
                self.ledger.send_reply(entry, None, self.proc, where)
        return [e.state for e in entries]

    def step(self, rng, n, where):
        remaining = n - self.ctl.count()
        kind = n % 6
        # Every 6th N meets the first send of a new tenant (RocksDB creates a
        # column family: MANIFEST, OPTIONS, rename, directory sync, then the
        # WAL) at a varying distance, so each of those operations gets failed
        if kind == 0 and self.fresh and 1 <= remaining <= 1 + (n // 6) % 8:
            tenant = self.fresh.pop()
            return self.sends(rng, 1, tenant, where + " new tenant")
        if kind == 3 and 1 <= remaining <= 3:
            tenant, _, uid = self.pick(rng)
            reply = call(self.sessions[tenant][uid], "channel_create", name="c" + uuid.uuid4().hex[:12])
            if self.ledger.other_reply("channel_create", reply, self.proc, where, persistence=False):
                self.ledger.add_channel(tenant, reply["channel"]["id"], uid)
            elif reply is None:
                self.ledger.problem("%s: no reply to channel_create" % where)
            return
        roll = rng.random()
        if roll < 0.55:
            return self.sends(rng, 1, where=where)
        if roll < 0.80:
            return self.sends(rng, rng.randint(2, 12), where=where)
        tenant, ch, uid = self.pick(rng)
        client = self.sessions[tenant][uid]
        if roll < 0.92:
            head = max([self.ledger.msgs[c].seq or 0 for c in self.ledger.by_ch[(tenant, ch)][-30:]] + [0])
            reply = call(client, "read", ch=ch, seq=max(head, 1))
            if self.ledger.other_reply("read", reply, self.proc, where) and "read_seq" in reply:
                key = (tenant, uid, ch)
                self.ledger.reads[key] = max(self.ledger.reads.get(key, 0), reply["read_seq"])
        else:
            reply = call(client, "sync", channels={})
            self.ledger.other_reply("sync", reply, self.proc, where)
        if reply is None:
            self.ledger.problem("%s: no reply to a read/sync within %d ms" % (where, REPLY_MS))

    # -- the sweep ----------------------------------------------------------

    def restart_checks(self, full):
        where = "%s restart %d" % (self.label, self.restarts)
        self.ledger.verify(self.sessions, full=full, where=where)
        if full:
            self.ledger.verify_channels(self.sessions, where=where)
        self.ledger.retry_unacked(self.sessions, where=where)

    def run(self, ns):
        started = time.time()
        ns = list(ns)
        for i, n in enumerate(ns):
            if i % self.ROTATE == 0:
                if i:
                    self.finish_world()
                # one new tenant for each N that will use one (n % 6 == 0)
                self.new_world(sum(1 for m in ns[i:i + self.ROTATE] if m % 6 == 0))
            if self.server is None:
                if not self.start():
                    self.new_world(0)
                    continue
                self.restarts += 1
                self.restart_checks(full=self.restarts % self.FULL_EVERY == 0)
            where = "%s N=%d" % (self.label, n)
            rng = random.Random(n)
            err = ENOSPC if n % 3 == 0 else EIO
            self.stats["iterations"] += 1
            self.ctl.arm(n, err, SWEEP_OPS)
            fired = None
            for _ in range(50 + n):         # every step does at least one counted op
                self.step(rng, n, where)
                fired = self.ctl.fired()
                if fired or not self.server.alive():
                    break
            if fired:
                for _ in range(2):
                    if not self.server.alive():
                        break
                    self.sends(rng, 1, where=where + " after fault")
                self.ctl.disarm()
                self.after_fault(n, err, fired, where)
            elif not self.server.alive():
                self.ctl.disarm()
                self.server_stop(where)
            else:
                self.ctl.disarm()    # never reached N: the store is healthy, keep going
        self.finish_world()
        self.stats["seconds"] = time.time() - started
        return self.stats

    def after_fault(self, n, err, fired, where):
        op, path = fired
        rel = os.path.relpath(path, os.path.realpath(self.data))
        base = os.path.basename(rel)
        parts = rel.split("/")
        if len(parts) == 1:
            kind = "%s of %s/ (directory)" % (op, parts[0])
        else:
            kind = "%s of %s/%s" % (op, parts[0], re.sub(r"\d+", "N", parts[-1]))
        self.stats["fired"] += 1
        self.stats["kinds"][kind] = self.stats["kinds"].get(kind, 0) + 1
        alive = self.server.alive()
        if alive:
            history_ok = True
            tenant, ch, uid = self.pick(random.Random(n))
            reply = call(self.sessions[tenant][uid], "history", ch=ch, limit=5)
            if not reply or not reply.get("ok"):
                history_ok = False
                self.ledger.problem("%s: history does not answer after the fault (%s): %r" % (where, kind, reply))
            if rel.startswith("messages/") and base.endswith(".log") and not self.proc.refused:
                self.ledger.problem("%s: %s on the messages WAL failed but no request got storage_unavailable"
                                    % (where, op))
            if self.proc.refused:
                outcome = "persistence refused writes"
            elif self.proc.meta_refused:
                outcome = "membership refused writes"
            elif re.search(r"membership: cannot save affinity", self.server.log_text()):
                outcome = "membership store failed (affinity)"
            else:
                outcome = "no visible effect"
            text = self.server.log_text()
            if self.proc.meta_refused or re.search(r"membership: (cannot save affinity|write failed)", text):
                # membership's store must refuse for good as well
                tenant, _, uid = self.pick(random.Random(n))
                reply = call(self.sessions[tenant][uid], "channel_create", name="m" + uuid.uuid4().hex[:12])
                if reply and reply.get("ok"):
                    self.ledger.add_channel(tenant, reply["channel"]["id"], uid)
                    self.ledger.problem("%s: membership ACKED channel_create after its store failed (%s)"
                                        % (where, kind))
            if not history_ok:
                outcome += ", reads broken"
        else:
            outcome = "server exited"
        self.stats["outcomes"][outcome] = self.stats["outcomes"].get(outcome, 0) + 1
        self.server_stop(where + " (%s, %s)" % (kind, "ENOSPC" if err == ENOSPC else "EIO"))

    def finish_world(self):
        if self.server is None and not self.start():
            return
        self.restarts += 1
        where = "%s final check of %s" % (self.label, os.path.basename(self.data))
        self.ledger.verify(self.sessions, full=True, where=where)
        self.ledger.verify_channels(self.sessions, where=where)
        self.ledger.retry_unacked(self.sessions, where=where)
        self.ledger.verify(self.sessions, full=True, where=where + " after retries")
        self.server_stop(where)
        if not self.ledger.problems:
            shutil.rmtree(self.data, ignore_errors=True)


def test_nth_sweep():
    root = tempfile.mkdtemp(prefix="chorus-nth-")
    try:
        so, why = build_shim(root)
        if not so:
            log("SKIP test_nth_sweep: cannot build %s: %s" % (SHIM_SRC, why))
            return
        shim_self_test(so, root)
        # Two workers, each with its own data directory and server, share
        # the Ns (odd and even): most of an iteration is chorusd starting
        started = time.time()
        sweeps, threads, errors = [], [], []
        for worker in range(WORKERS):
            box = os.path.join(root, "w%d" % worker)
            os.mkdir(box)
            sweep = Sweep(box, so, CHORUSD, "sweep%d" % worker)
            sweeps.append(sweep)

            def work(sweep=sweep, ns=range(1 + worker, SWEEP + 1, WORKERS)):
                try:
                    sweep.run(ns)
                except Exception as e:  # noqa: BLE001 - reported below
                    import traceback
                    errors.append("%s: %s\n%s" % (sweep.label, e, traceback.format_exc()))
            threads.append(threading.Thread(target=work, daemon=True))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=3600)
        seconds = time.time() - started
        stats = {"fired": 0, "iterations": 0, "starts": 0, "kinds": {}, "outcomes": {}}
        problems = []
        for sweep in sweeps:
            problems += sweep.ledger.problems
            for key in ("fired", "iterations", "starts"):
                stats[key] += sweep.stats[key]
            for key in ("kinds", "outcomes"):
                for name, count in sweep.stats[key].items():
                    stats[key][name] = stats[key].get(name, 0) + count
        assert not errors, "sweep worker failed: %s" % "\n".join(errors)
        assert all(not t.is_alive() for t in threads), "sweep worker still running after an hour"
        log("  sweep: N=1..%d: %d faults fired in %d iterations, %d server starts, %.1fs (%.2fs per N, %d workers)"
            % (SWEEP, stats["fired"], stats["iterations"], stats["starts"], seconds,
               seconds / max(1, stats["iterations"]), WORKERS))
        for kind, count in sorted(stats["kinds"].items(), key=lambda kv: -kv[1]):
            log("    %4d x %s" % (count, kind))
        for outcome, count in sorted(stats["outcomes"].items(), key=lambda kv: -kv[1]):
            log("    %4d -> %s" % (count, outcome))
        for sweep in sweeps:
            log("    %s: %d sends in its last data directory: %s"
                % (sweep.label, len(sweep.ledger.msgs), sweep.ledger.counts()))
        ledger = Ledger(problems=problems)
        if stats["fired"] < SWEEP // 2:
            ledger.problem("only %d of %d armed faults fired: the workload is too short"
                           % (stats["fired"], SWEEP))
        report("sweep", ledger)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------------------
# 4. Negative control: the checks above must catch a server that acks early

def test_negative_control():
    if not EARLY_ACK or not os.access(EARLY_ACK, os.X_OK):
        log("SKIP test_negative_control: CHORUSD_EARLY_ACK not set (ctest sets it)")
        return
    caught = []
    if fiu_available():
        ledger = fiu_case("fdatasync (early ack)",
                          "enable_stack_by_name name=posix/io/sync/fdatasync,failinfo=5,onetime,func_name=rocksdb_write",
                          r"persistence: write failed.*While fdatasync", binary=EARLY_ACK)
        # chorusd_early_ack acks before the write; on the failure path it
        # then aborts (it answers the error on routes its acks consumed), so
        # whether its ack leaves before the abort is a race: either shows
        flagged = [p for p in ledger.problems if "ACKED" in p or "not answered storage_unavailable" in p]
        log("  negative control, libfiu fdatasync: %d problem(s), %d about the in-flight sends"
            % (len(ledger.problems), len(flagged)))
        if not flagged:
            raise AssertionError("the fdatasync check did not catch chorusd_early_ack: %r" % ledger.problems)
        caught.append("fiu")
    root = tempfile.mkdtemp(prefix="chorus-nth-neg-")
    try:
        so, why = build_shim(root)
        if so:
            sweep = Sweep(root, so, EARLY_ACK, "early-ack sweep")
            sweep.FRESH = 0
            sweep.run([1, 2, 4])
            lost = [p for p in sweep.ledger.problems if "ACKED" in p or "DIED" in p]
            log("  negative control, sweep N=1,2,4: %d problem(s), %d lost acks, %d deaths"
                % (len(sweep.ledger.problems), sum("LOST" in p for p in lost), sum("DIED" in p for p in lost)))
            if not lost:
                raise AssertionError("the sweep did not catch chorusd_early_ack: %r" % sweep.ledger.problems)
            caught.append("sweep")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    log("  negative control caught by: %s" % ", ".join(caught))


if __name__ == "__main__":
    run([test_fiu_fdatasync, test_fiu_write, test_fiu_rename, test_disk_full,
         test_nth_sweep, test_negative_control])
