#!/usr/bin/env python3
"""A stand-in broker for testing the web edge alone.

A ROUTER that speaks the peer side of docs/protocol.md section 1: requests
arrive as [identity][payload][sid], replies and events leave as
[identity][payload][sids][notify]. It knows one workspace ("acme") with
users ada, bob and cy (password "password123", tokens "tok-<handle>"),
keeps messages in memory, echoes each `send` as an ack and as a `message`
event to every authenticated session (notify for everyone but the author),
and answers `bye` with nothing. A send whose body is "__rate_limit__" is
answered rate_limited (retry_after_ms 1500); one whose body is
"__no_reply__" is not answered at all. `fake_stats` (for any session) reports what
it has seen, for tests.

    python3 fake_broker.py tcp://127.0.0.1:5555
"""
import os
import sys
import time

try:
    import msgpack
    import zmq
except ImportError:
    #  Debian's python3-* packages live with /usr/bin/python3, not pyenv's
    if sys.executable != "/usr/bin/python3" and os.path.exists("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    raise

USERS = {"ada": 1, "bob": 2, "cy": 3}
PASSWORD = "password123"
TENANT = {"id": 1, "name": "acme"}
CHANNELS = {1: "general", 2: "random"}


def user_obj(handle):
    return {"id": USERS[handle], "handle": handle, "display_name": handle.title(), "bot": False}


class Broker:
    def __init__(self, endpoint):
        self.ctx = zmq.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.router.setsockopt(zmq.SNDHWM, 1000000)
        self.router.bind(endpoint)
        self.sessions = {}          # (identity, sid) -> handle
        self.messages = {1: [], 2: []}
        self.stats = {"requests": 0, "byes": 0, "bye_sids": [], "ops": {}}

    def reply(self, identity, sid, body):
        self.router.send_multipart([identity, msgpack.packb(body),
                                    msgpack.packb([sid]), msgpack.packb([])])

    def error(self, identity, sid, rid, code, message="", retry_after_ms=0):
        body = {"re": rid, "ok": False, "error": code, "message": message or code,
                "retriable": code in ("rate_limited", "stage_unavailable", "storage_unavailable")}
        if retry_after_ms:
            body["retry_after_ms"] = retry_after_ms
        self.reply(identity, sid, body)

    def broadcast(self, event, author):
        """One delivery per peer: [event][sids][notify]"""
        peers = {}
        for (identity, sid), handle in self.sessions.items():
            sids, notify = peers.setdefault(identity, ([], []))
            sids.append(sid)
            if handle != author:
                notify.append(sid)
        payload = msgpack.packb(event)
        for identity, (sids, notify) in peers.items():
            try:
                self.router.send_multipart([identity, payload, msgpack.packb(sids),
                                            msgpack.packb(notify)])
            except zmq.ZMQError:
                pass

    def handle(self, identity, payload, sid):
        self.stats["requests"] += 1
        try:
            req = msgpack.unpackb(payload, raw=False, strict_map_key=False)
        except Exception:
            return self.error(identity, sid, 0, "invalid_message")
        if not isinstance(req, dict):
            return self.error(identity, sid, 0, "invalid_message")
        op, rid = req.get("op"), req.get("rid", 0)
        self.stats["ops"][op] = self.stats["ops"].get(op, 0) + 1
        key = (identity, sid)
        handle = self.sessions.get(key)
        if op == "bye":
            self.stats["byes"] += 1
            self.stats["bye_sids"].append(sid)
            self.sessions.pop(key, None)
            return
        if op == "fake_stats":
            return self.reply(identity, sid, {"re": rid, "ok": True, "stats": self.stats,
                                              "sessions": len(self.sessions)})
        if op == "ping":
            return self.reply(identity, sid, {"re": rid, "ok": True, "pong": True,
                                              "ts": int(time.time() * 1000)})
        if op == "auth":
            token = req.get("token", "")
            who = token[4:] if isinstance(token, str) and token.startswith("tok-") else None
            if who not in USERS:
                return self.error(identity, sid, rid, "bad_credentials", "wrong token")
            self.sessions[key] = who
            return self.reply(identity, sid, {"re": rid, "ok": True, "user": user_obj(who),
                                              "tenant": TENANT})
        if op == "login":
            if req.get("tenant") != "acme":
                return self.error(identity, sid, rid, "tenant_not_found")
            who = req.get("handle")
            if who not in USERS or req.get("password") != PASSWORD:
                return self.error(identity, sid, rid, "bad_credentials")
            self.sessions[key] = who
            return self.reply(identity, sid, {"re": rid, "ok": True, "token": "tok-" + who,
                                              "user": user_obj(who), "tenant": TENANT})
        if handle is None:
            return self.error(identity, sid, rid, "not_authed", "authenticate first")
        return self.operation(identity, sid, rid, handle, op, req)

    def operation(self, identity, sid, rid, handle, op, req):
        if op == "logout":
            self.sessions.pop((identity, sid), None)
            return self.reply(identity, sid, {"re": rid, "ok": True})
        if op == "channel_list":
            return self.reply(identity, sid, {"re": rid, "ok": True, "channels": [
                {"id": ch, "name": name, "type": "public", "head": len(self.messages[ch]),
                 "read_seq": 0, "unread": 0} for ch, name in CHANNELS.items()]})
        if op == "send":
            return self.send(identity, sid, rid, handle, req)
        if op == "history":
            ch = req.get("ch")
            if ch not in CHANNELS:
                return self.error(identity, sid, rid, "channel_not_found")
            msgs = self.messages[ch]
            limit = req.get("limit", 50)
            if "before" in req:
                msgs = [m for m in msgs if m["seq"] < req["before"]]
            if "after" in req:
                msgs = [m for m in msgs if m["seq"] > req["after"]]
            page = msgs[-limit:] if "after" not in req else msgs[:limit]
            return self.reply(identity, sid, {"re": rid, "ok": True, "ch": ch, "messages": page,
                                              "has_more_before": False, "has_more_after": False,
                                              "head": len(self.messages[ch]), "read_seq": 0,
                                              "echo": {k: v for k, v in req.items()
                                                       if k not in ("op", "rid")}})
        if op == "read":
            return self.reply(identity, sid, {"re": rid, "ok": True, "ch": req.get("ch"),
                                              "read_seq": req.get("seq")})
        if op == "dm_open":
            return self.reply(identity, sid, {"re": rid, "ok": True,
                                              "channel": {"id": 99, "type": "dm",
                                                          "member_ids": req.get("users")}})
        if op == "sync":
            return self.reply(identity, sid, {"re": rid, "ok": True, "channels": [], "removed": [],
                                              "echo": req.get("channels")})
        return self.error(identity, sid, rid, "unknown_op", "unknown operation")

    def send(self, identity, sid, rid, handle, req):
        ch, body = req.get("ch"), req.get("body")
        if ch not in CHANNELS:
            return self.error(identity, sid, rid, "channel_not_found")
        if not isinstance(body, str) or not isinstance(req.get("client_msg_id"), str):
            return self.error(identity, sid, rid, "invalid_args")
        if not body:
            return self.error(identity, sid, rid, "no_text")
        if body == "__rate_limit__":
            return self.error(identity, sid, rid, "rate_limited", "slow down", 1500)
        if body == "__no_reply__":
            return
        seq = len(self.messages[ch]) + 1
        ts = int(time.time() * 1000)
        msg = {"ch": ch, "seq": seq, "author": USERS[handle], "ts": ts, "body": body,
               "client_msg_id": req["client_msg_id"]}
        self.messages[ch].append(msg)
        self.reply(identity, sid, {"re": rid, "ok": True, "ch": ch, "seq": seq, "ts": ts,
                                   "duplicate": False})
        self.broadcast(dict(msg, ev="message"), handle)

    def run(self):
        while True:
            frames = self.router.recv_multipart()
            identity, payload = frames[0], frames[1]
            sid = msgpack.unpackb(frames[2]) if len(frames) > 2 else 0
            try:
                self.handle(identity, payload, sid)
            except zmq.ZMQError:
                pass            # the peer is gone


if __name__ == "__main__":
    broker = Broker(sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:5555")
    print("fake broker: ready", flush=True)
    try:
        broker.run()
    except KeyboardInterrupt:
        pass
