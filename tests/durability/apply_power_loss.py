#!/usr/bin/python3
"""Apply a power loss to a data directory after a SIGKILL, from the side log
that lose_unsynced.so wrote while the server ran.

    apply_power_loss.py SIDE_LOG [--torn SEED] [--quiet]

Replays the log (see lose_unsynced.c for its lines) into, per tracked file,
the size at its last successful fsync/fdatasync and whether its directory
entry (creation, rename, link) was made durable by an fsync of its
directory. Then, as a power loss would (LevelDB's FaultInjectionTestEnv
model):

* a file whose creation or rename was never dir-synced is deleted; if the
  rename replaced a file, the replaced file comes back (the shim kept a hard
  link to it);
* every other file is truncated to its size at its last sync; a file opened
  with O_TRUNC and never synced since is truncated to 0 (pessimistic: the
  old contents might have come back instead);
* with --torn SEED, instead of all of its unsynced tail a file keeps a random
  prefix of it (writes reach the disk in order but a power loss cuts them
  anywhere), except for files that a faked sync (F lines) covered: those
  lose all their unsynced bytes.

Not modelled: an unlink whose directory was not synced (treated as
durable), mkdir of directories, data written through fwrite.

Prints one line: files truncated, bytes dropped, files deleted, restored.

Also the cycle driver of scripts/powerloss.sh (it lives here because the
durability work may only add these files):

    apply_power_loss.py --cycles N --chorusd BIN --shim SO [--label L]
                        [--fake-sync SUFFIX] [--no-power-loss]
                        [--stop-on-loss] [--seed S] [--work DIR] [--rate R]
                        [--torn-cycles] [--keep]

runs N cycles of: start chorusd with LD_PRELOAD=SO (verifying the previous
cycle's outcome first), loaded sends with a ledger, SIGKILL at a random
moment, power loss, and a last restart and verification; prints one summary
line and exits 0 if every acked message survived exactly once (1 if not).
"""
import argparse
import os
import random
import sys


class FileState:
    __slots__ = ("synced", "durable", "prev", "faked")

    def __init__(self, synced, durable, prev=None):
        self.synced = synced      # bytes that survive; None: untouched, keep
        self.durable = durable    # directory entry durable
        self.prev = prev          # hard link to the file this one replaced
        self.faked = False


def replay(lines):
    """Per path FileState, and the hard links the shim left behind."""
    state = {}
    links = set()
    for line in lines:
        f = line.rstrip("\n").split("\t")
        kind = f[0]
        if kind == "O":
            created, truncated, size, path = int(f[1]), int(f[2]), int(f[3]), f[4]
            old = state.get(path)
            if created:
                state[path] = FileState(0, False)
            elif truncated:
                state[path] = FileState(0, old.durable if old else True, old.prev if old else None)
            elif old is None:
                state[path] = FileState(size, True)   # existed before: durable as is
        elif kind == "S":
            size, path = int(f[1]), f[3]
            st = state.setdefault(path, FileState(0, True))
            st.synced = size
        elif kind == "F":
            state.setdefault(f[2], FileState(0, True)).faked = True
        elif kind == "T":
            size, path = int(f[1]), f[2]
            st = state.get(path)
            if st is not None and st.synced is not None:
                st.synced = min(st.synced, size)
        elif kind == "D":
            directory = f[1]
            for path, st in state.items():
                if os.path.dirname(path) == directory and not st.durable:
                    st.durable = True
                    st.prev = None          # the replaced file is gone for good
        elif kind == "R":
            prev, old, new = f[1], f[2], f[3]
            if prev != "-":
                links.add(prev)
            st = state.pop(old, None) or FileState(None, True)
            replaced = state.get(new)
            keep_prev = prev != "-" and (replaced is None or replaced.durable)
            st2 = FileState(st.synced, False, prev if keep_prev else None)
            st2.faked = st.faked
            state[new] = st2
        elif kind == "L":
            old, new = f[1], f[2]
            st = state.get(old) or FileState(None, True)
            state[new] = FileState(st.synced, False)
        elif kind == "U":
            state.pop(f[1], None)
    return state, links


def apply(log_path, torn_seed=None, verbose=False):
    """Throws away what was not synced; returns a summary dict."""
    with open(log_path, "r", encoding="utf-8", errors="surrogateescape") as f:
        state, links = replay(f)
    rng = random.Random(torn_seed) if torn_seed is not None else None
    summary = {"truncated": 0, "dropped": 0, "deleted": 0, "restored": 0, "tracked": len(state)}
    for path, st in sorted(state.items()):
        if not os.path.lexists(path):
            continue
        if not st.durable:
            os.unlink(path)
            summary["deleted"] += 1
            if verbose:
                print("delete   %s (entry never dir-synced)%s" % (
                    path, ", restoring the file it replaced" if st.prev else ""))
            if st.prev and os.path.exists(st.prev):
                os.link(st.prev, path)
                summary["restored"] += 1
            continue
        if st.synced is None:
            continue
        size = os.path.getsize(path)
        if size > st.synced:
            keep = st.synced
            if rng is not None and not st.faked:
                keep += rng.randint(0, size - st.synced)
            if keep < size:
                if verbose:
                    print("truncate %s %d -> %d" % (path, size, keep))
                os.truncate(path, keep)
                summary["truncated"] += 1
                summary["dropped"] += size - keep
    for link in links:
        if os.path.lexists(link):
            os.unlink(link)
    return summary


def format_summary(s):
    return ("power loss: %d files tracked, %d truncated (%d unsynced bytes dropped), "
            "%d deleted (entry never dir-synced), %d replaced files restored" % (
                s["tracked"], s["truncated"], s["dropped"], s["deleted"], s["restored"]))


# ---------------------------------------------------------------------------
#  The cycle driver of scripts/powerloss.sh

def cycles(args):
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(here, "..", "integration"))
    import shutil
    import tempfile
    import threading
    import time

    import chorus_harness
    from chorus_harness import Server, Workspace

    import msgpack
    import uuid
    import zmq

    class Sender(threading.Thread):
        """Paced, pipelined sends to random channels, recording every send in
        the ledger: unknown when sent, acked with its seq when the ack comes.
        On stop it first drains what already arrived: an ack the server sent
        before it died counts."""

        def __init__(self, handle):
            super().__init__(daemon=True)
            self.handle = handle
            self.stop = threading.Event()
            self.ready = threading.Event()      #  logged in: the load is on
            self.rid = 0
            self.gap = 3.0 / args.rate

        def run(self):
            sock = zmq.Context.instance().socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(server.api)
            try:
                self.rid += 1
                sock.send(msgpack.packb({"op": "login", "rid": self.rid, "tenant": ws.name,
                                         "handle": self.handle, "password": "secret-" + self.handle}))
                if not sock.poll(5000) or not msgpack.unpackb(
                        sock.recv_multipart()[0], strict_map_key=False).get("ok"):
                    return
                self.ready.set()
                pending = {}
                next_send = time.time()
                while not self.stop.is_set():
                    now = time.time()
                    if len(pending) < 16 and now >= next_send:
                        next_send = max(next_send + self.gap, now - 0.1)
                        self.rid += 1
                        ch = rng_local.choice(channels)
                        cmid = uuid.uuid4().hex
                        body = "%s %s" % (self.handle, cmid)
                        with lock:
                            ledger["unknown"][cmid] = (ch, body, self.handle)
                        pending[self.rid] = cmid
                        sock.send(msgpack.packb({"op": "send", "rid": self.rid, "ch": ch,
                                                 "client_msg_id": cmid, "body": body}))
                        continue
                    if sock.poll(max(0, min(50, int((next_send - now) * 1000)))):
                        self.take(sock, pending)
                while sock.poll(0):             #  acks that arrived before the kill
                    self.take(sock, pending)
            finally:
                sock.close()

        def take(self, sock, pending):
            payload = msgpack.unpackb(sock.recv_multipart()[0], strict_map_key=False)
            cmid = pending.pop(payload.get("re"), None)
            if cmid and payload.get("ok"):
                with lock:
                    ch, body, handle = ledger["unknown"].pop(cmid)
                    ledger["acked"][cmid] = (ch, payload["seq"], body, handle)

    chorus_harness.CHORUSD = args.chorusd
    rng = random.Random(args.seed)
    work = tempfile.mkdtemp(prefix="chorus-powerloss-", dir=args.work)
    data = os.path.join(work, "data")
    os.makedirs(data)
    side = os.path.join(work, "side")
    os.makedirs(side)
    env = {"LD_PRELOAD": args.shim, "LOSE_UNSYNCED_ROOT": data,
           "ASAN_OPTIONS": "detect_leaks=0"}
    if args.fake_sync:
        env["LOSE_UNSYNCED_FAKE_SYNC"] = args.fake_sync
    server = Server(data_dir=data, http=False, env=env)
    totals = {"kills": 0, "acked": 0, "unknown_resent": 0, "lost": 0, "changed": 0,
              "dup_or_gap": 0, "extra": 0, "dropped": 0, "deleted": 0, "restored": 0,
              "truncated": 0}
    problems = []
    ledger = {"acked": {}, "unknown": {}}
    lock = threading.Lock()
    rng_local = random.Random(rng.random())
    ws = channels = None
    started = time.time()

    def set_log(cycle):
        server.env["LOSE_UNSYNCED_LOG"] = os.path.join(side, "cycle-%03d.log" % cycle)

    def audit(ws, channels, cycle):
        """Compares the store with the ledger; resends unknown sends."""
        clients = {h: ws.login(h) for h in ("alice", "bob", "carol")}
        try:
            reader = clients["alice"]
            stored = {}
            for ch in channels:
                page = reader.ok("history", ch=ch, before=201, limit=200)
                seqs = []
                while True:
                    for m in page["messages"]:
                        seqs.append(m["seq"])
                        stored[(ch, m["seq"])] = (m["body"], m.get("client_msg_id"))
                    if not page["messages"] or not page["has_more_after"]:
                        break
                    page = reader.ok("history", ch=ch, after=page["messages"][-1]["seq"], limit=200)
                if seqs != list(range(1, len(seqs) + 1)):
                    totals["dup_or_gap"] += 1
                    problems.append("cycle %d: channel %d seqs not 1..%d without gaps" % (cycle, ch, len(seqs)))
            expected = {}
            for cmid, (ch, seq, body, _) in ledger["acked"].items():
                expected[(ch, seq)] = cmid
                got = stored.get((ch, seq))
                if got is None:
                    totals["lost"] += 1
                    problems.append("cycle %d: acked %s (ch %d seq %d) LOST" % (cycle, cmid[:8], ch, seq))
                elif got[0] != body or got[1] != cmid:
                    totals["changed"] += 1
                    problems.append("cycle %d: acked %s (ch %d seq %d) REPLACED by another message"
                                    % (cycle, cmid[:8], ch, seq))
            by_cmid = {}
            for key, (body, cmid) in stored.items():
                by_cmid.setdefault(cmid, []).append(key)
            for cmid, keys in by_cmid.items():
                if len(keys) > 1:
                    totals["dup_or_gap"] += 1
                    problems.append("cycle %d: %s stored %d times" % (cycle, cmid[:8], len(keys)))
                if cmid not in ledger["acked"] and cmid not in ledger["unknown"]:
                    totals["extra"] += 1
                    problems.append("cycle %d: %s stored but never sent" % (cycle, cmid[:8]))
            #  Unacked sends: resend with the same id; must land exactly once
            for cmid, (ch, body, handle) in list(ledger["unknown"].items()):
                reply = clients[handle].ok("send", ch=ch, body=body, client_msg_id=cmid)
                was = [k for k, v in stored.items() if v[1] == cmid]
                if was and (reply["seq"] != was[0][1] or not reply["duplicate"]):
                    totals["dup_or_gap"] += 1
                    problems.append("cycle %d: resend of %s got seq %d, stored at %d"
                                    % (cycle, cmid[:8], reply["seq"], was[0][1]))
                again = clients[handle].ok("send", ch=ch, body=body, client_msg_id=cmid)
                if again["seq"] != reply["seq"] or not again["duplicate"]:
                    totals["dup_or_gap"] += 1
                    problems.append("cycle %d: second resend of %s not idempotent" % (cycle, cmid[:8]))
                ledger["acked"][cmid] = (ch, reply["seq"], body, handle)
                del ledger["unknown"][cmid]
                totals["unknown_resent"] += 1
        finally:
            for c in clients.values():
                c.close()

    try:
        set_log(0)
        server.start()
        ws = Workspace(server)
        alice = ws.login("alice")
        channels = [alice.ok("channel_create", name="pl%d" % i)["channel"]["id"] for i in range(3)]
        for handle in ("bob", "carol"):
            c = ws.login(handle)
            for ch in channels:
                c.ok("channel_join", ch=ch)
            c.close()
        alice.close()
        for cycle in range(args.cycles):
            if cycle:
                set_log(cycle)
                server.start(wait=False)
                try:
                    server.wait_ready(timeout=60)
                except RuntimeError as e:
                    problems.append("cycle %d: chorusd did not start after the power loss: %s"
                                    % (cycle, " | ".join(str(e).splitlines()[-3:])))
                    break
                before = len(problems)
                try:
                    audit(ws, channels, cycle)
                except (AssertionError, TimeoutError) as e:
                    problems.append("cycle %d: the restarted server failed a request: %s" % (cycle, e))
                    break
                if args.stop_on_loss and len(problems) > before:
                    break
            senders = [Sender(h) for h in ("alice", "bob", "carol")]
            for s in senders:
                s.start()
            #  The kill comes 0.3-2 s after the load is on (logins are slow)
            deadline = time.time() + 20
            for s in senders:
                s.ready.wait(max(0, deadline - time.time()))
            time.sleep(rng.uniform(0.3, 2.0))
            server.kill()
            totals["kills"] += 1
            time.sleep(0.05)                    #  acks still in the client's queues
            for s in senders:
                s.stop.set()
            for s in senders:
                s.join(timeout=10)
            if not args.no_power_loss:
                torn = rng.randrange(1 << 30) if (args.torn_cycles and cycle % 2) else None
                s = apply(server.env["LOSE_UNSYNCED_LOG"], torn)
                for key in ("dropped", "deleted", "restored", "truncated"):
                    totals[key] += s[key]
        else:
            set_log(args.cycles)
            server.start(wait=False)
            try:
                server.wait_ready(timeout=60)
                try:
                    audit(ws, channels, args.cycles)
                except (AssertionError, TimeoutError) as e:
                    problems.append("final: the restarted server failed a request: %s" % e)
                code = server.stop()
                if code != 0:
                    problems.append("final clean stop exited %s" % code)
            except RuntimeError as e:
                problems.append("final start failed: %s" % " | ".join(str(e).splitlines()[-3:]))
        totals["acked"] = len(ledger["acked"])
    finally:
        if server.proc:
            server.kill()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.time() - started
    bad = totals["lost"] + totals["changed"] + totals["dup_or_gap"] + totals["extra"]
    line = ("%s: %d kills%s, %d acked (ledger), %d unacked resent once; lost %d, replaced %d, "
            "dup/gap %d, never sent %d; power loss dropped %d bytes in %d truncations, deleted %d "
            "files, restored %d; %.0f s" % (
                args.label, totals["kills"], "" if not args.no_power_loss else " (NO power loss)",
                totals["acked"], totals["unknown_resent"], totals["lost"], totals["changed"],
                totals["dup_or_gap"], totals["extra"], totals["dropped"], totals["truncated"],
                totals["deleted"], totals["restored"], elapsed))
    print(line, flush=True)
    for p in problems[:5]:
        print("    " + p, flush=True)
    if len(problems) > 5:
        print("    ... %d more" % (len(problems) - 5), flush=True)
    return 1 if bad or problems else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("log", nargs="?")
    parser.add_argument("--torn", type=int, default=None, metavar="SEED")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="list every file changed")
    parser.add_argument("--cycles", type=int)
    parser.add_argument("--chorusd")
    parser.add_argument("--shim")
    parser.add_argument("--label", default="chorusd")
    parser.add_argument("--fake-sync", default=None)
    parser.add_argument("--no-power-loss", action="store_true")
    parser.add_argument("--stop-on-loss", action="store_true")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--work", default=None)
    parser.add_argument("--rate", type=float, default=1500.0, help="sends per second in all")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--torn-cycles", action="store_true",
                        help="every other power loss keeps a random prefix of unsynced tails")
    args = parser.parse_args()
    if args.cycles is not None:
        if not (args.chorusd and args.shim):
            parser.error("--cycles needs --chorusd and --shim")
        sys.exit(cycles(args))
    if not args.log:
        parser.error("give the side log")
    summary = apply(args.log, args.torn, args.verbose)
    if not args.quiet:
        print(format_summary(summary))


if __name__ == "__main__":
    main()
