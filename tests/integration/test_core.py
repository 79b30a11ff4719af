"""End-to-end checks of the core over real ZeroMQ tcp sockets and RocksDB."""
import time
import msgpack
import uuid

from chorus_harness import Server, Workspace, Client, run


def test_realtime_between_two_users():
    with Server(http=False) as server:
        ws = Workspace(server)
        alice, bob = ws.login("alice"), ws.login("bob")
        ch = alice.ok("channel_create", name="general")["channel"]["id"]
        bob.ok("channel_join", ch=ch)
        ack = alice.ok("send", ch=ch, body="hello bob", client_msg_id="m1")
        assert ack["seq"] == 1 and ack["duplicate"] is False
        event = bob.next_event(kind="message")
        assert event["ch"] == ch and event["seq"] == 1 and event["body"] == "hello bob"
        assert event["author"] == ws.uid("alice")
        own = alice.next_event(kind="message")
        assert own["seq"] == 1, "the author's sessions get the message too (other devices)"
        reply = bob.ok("send", ch=ch, body="hi alice", client_msg_id="m2")
        event = alice.next_event(kind="message", where=lambda e: e["author"] == ws.uid("bob"))
        assert event["seq"] == reply["seq"] == 2 and event["body"] == "hi alice"
        alice.close(); bob.close()


def test_dm_visible_only_to_its_members():
    with Server(http=False) as server:
        ws = Workspace(server)
        alice, bob, carol = ws.login("alice"), ws.login("bob"), ws.login("carol")
        dm = alice.ok("dm_open", users=[ws.uid("bob")])["channel"]
        assert dm["type"] == "dm"
        again = bob.ok("dm_open", users=[ws.uid("alice")])["channel"]
        assert again["id"] == dm["id"], "dm_open must return the same channel both ways"
        alice.ok("send", ch=dm["id"], body="just us", client_msg_id="d1")
        event = bob.next_event(kind="message")
        assert event["_notify"], "a DM notifies its recipient"
        assert bob.ok("history", ch=dm["id"])["messages"][0]["body"] == "just us"
        for op, fields in (("history", {}), ("send", {"body": "x", "client_msg_id": "c1"}),
                           ("channel_join", {}), ("channel_members", {})):
            reply = carol.call(op, ch=dm["id"], **fields)
            assert reply["error"] == "channel_not_found", (op, reply)
        assert not any(e["ev"] == "message" for e in carol.events)
        names = [c["id"] for c in carol.ok("channel_list")["channels"]]
        assert dm["id"] not in names
        group = alice.ok("dm_open", users=[ws.uid("bob"), ws.uid("carol")])["channel"]
        assert group["type"] == "group" and group["id"] != dm["id"]
        for c in (alice, bob, carol):
            c.close()


def test_private_channel_refuses_non_members():
    with Server(http=False) as server:
        ws = Workspace(server)
        alice, bob = ws.login("alice"), ws.login("bob")
        ch = alice.ok("channel_create", name="leads", private=True)["channel"]["id"]
        for op, fields in (("history", {}), ("send", {"body": "x", "client_msg_id": "c"}),
                           ("channel_join", {}), ("read", {"seq": 1})):
            assert bob.call(op, ch=ch, **fields)["error"] == "channel_not_found", op
        alice.ok("channel_invite", ch=ch, user=ws.uid("bob"))
        bob.ok("send", ch=ch, body="now I am in", client_msg_id="c2")
        public = alice.ok("channel_create", name="open")["channel"]["id"]
        assert bob.call("send", ch=public, body="x", client_msg_id="c3")["error"] == "not_in_channel"
        alice.close(); bob.close()


def test_tenant_isolation():
    with Server(http=False) as server:
        a, b = Workspace(server), Workspace(server)
        alice = a.login("alice")
        mallory = b.login("alice")
        ch = alice.ok("channel_create", name="secrets")["channel"]["id"]
        alice.ok("send", ch=ch, body="tenant A only", client_msg_id="s1")
        for op, fields in (("history", {}), ("send", {"body": "x", "client_msg_id": "c"}),
                           ("channel_join", {}), ("read", {"seq": 1}), ("channel_members", {})):
            reply = mallory.call(op, ch=ch, **fields)
            assert reply["error"] == "channel_not_found", (op, reply)
        assert mallory.call("dm_open", users=[a.uid("bob")])["error"] == "user_not_found"
        assert all(c["name"] != "secrets" for c in mallory.ok("channel_browse")["channels"])
        alice.close(); mallory.close()


def s_replies(client, rids):
    """The replies to rids, whatever order they come in (a conflict is
    answered at once, an ack once its batch is durable)."""
    replies = {}
    while len(replies) < len(rids):
        payload, _, _ = client.recv()
        if payload.get("re") in rids:
            replies[payload["re"]] = payload
    return [replies[rid] for rid in rids]

def test_retry_in_the_same_batch_with_a_nul_in_the_body():
    """U+0000 is valid UTF-8: a retry that reaches persistence while the
    first send is still staged or being written is a duplicate, not a
    conflict (it was compared as a C string, cut at the NUL)."""
    server = Server(http=False).start()
    try:
        ws = Workspace(server)
        alice = ws.login("alice")
        ch = alice.ok("channel_create", name="general")["channel"]["id"]
        for round_ in range(20):
            body, cmid = "a\u0000b %d" % round_, "nul-%d" % round_
            rids = []
            for _ in range(3):      # pipelined: they meet the first one staged
                alice.rid += 1
                rids.append(alice.rid)
                alice.send_raw(msgpack.packb({"op": "send", "rid": alice.rid, "ch": ch,
                                              "body": body, "client_msg_id": cmid},
                                             use_bin_type=True))
            replies = s_replies(alice, rids)
            assert all(r.get("ok") for r in replies), replies
            assert len({r["seq"] for r in replies}) == 1, replies
            assert [r["duplicate"] for r in replies] == [False, True, True], replies
            conflict = alice.call("send", ch=ch, body="a\u0000c", client_msg_id=cmid)
            assert conflict["error"] == "idempotency_conflict", conflict
        messages = alice.ok("history", ch=ch, limit=100)["messages"]
        assert len(messages) == 20 and messages[0]["body"].startswith("a\u0000b")
        alice.close()
    finally:
        server.cleanup()


def test_retry_is_idempotent_even_after_restart():
    server = Server(http=False).start()
    try:
        ws = Workspace(server)
        alice = ws.login("alice")
        ch = alice.ok("channel_create", name="general")["channel"]["id"]
        first = alice.ok("send", ch=ch, body="once", client_msg_id="retry-1")
        second = alice.ok("send", ch=ch, body="once", client_msg_id="retry-1")
        assert second["seq"] == first["seq"] and second["duplicate"] is True
        conflict = alice.call("send", ch=ch, body="other", client_msg_id="retry-1")
        assert conflict["error"] == "idempotency_conflict"
        alice.close()
        assert server.stop() == 0
        server.start()
        alice = ws.login("alice")
        third = alice.ok("send", ch=ch, body="once", client_msg_id="retry-1")
        assert third["seq"] == first["seq"] and third["duplicate"] is True
        messages = alice.ok("history", ch=ch)["messages"]
        assert [m["body"] for m in messages] == ["once"]
        alice.close()
    finally:
        server.cleanup()


def test_reply_privately_quotes_the_original():
    with Server(http=False) as server:
        ws = Workspace(server)
        alice, bob, carol = ws.login("alice"), ws.login("bob"), ws.login("carol")
        ch = alice.ok("channel_create", name="general")["channel"]["id"]
        bob.ok("channel_join", ch=ch)
        original = alice.ok("send", ch=ch, body="lunch at noon?", client_msg_id="o1")
        dm = bob.ok("dm_open", users=[ws.uid("alice")])["channel"]["id"]
        reply = bob.ok("send", ch=dm, body="count me in", client_msg_id="r1",
                       ref={"ch": ch, "seq": original["seq"]})
        event = alice.next_event(kind="message")
        while event["ch"] != dm:
            event = alice.next_event(kind="message")
        assert event["ref"] == {"ch": ch, "seq": original["seq"],
                                "author": ws.uid("alice"), "body": "lunch at noon?"}
        stored = alice.ok("history", ch=dm)["messages"][-1]
        assert stored["seq"] == reply["seq"] and stored["ref"]["body"] == "lunch at noon?"
        # carol cannot quote a private channel she cannot see
        private = alice.ok("channel_create", name="private", private=True)["channel"]["id"]
        secret = alice.ok("send", ch=private, body="secret", client_msg_id="p1")
        cdm = carol.ok("dm_open", users=[ws.uid("alice")])["channel"]["id"]
        refused = carol.call("send", ch=cdm, body="leak", client_msg_id="x1",
                             ref={"ch": private, "seq": secret["seq"]})
        assert refused["error"] == "message_not_found"
        # a ref in a channel (not a DM) is refused
        refused = bob.call("send", ch=ch, body="no", client_msg_id="x2",
                           ref={"ch": ch, "seq": original["seq"]})
        assert refused["error"] == "message_not_found", refused
        for c in (alice, bob, carol):
            c.close()


def test_edit_delete_read_and_unread():
    with Server(http=False) as server:
        ws = Workspace(server)
        alice, bob = ws.login("alice"), ws.login("bob")
        bob2 = ws.login("bob")  # a second device
        ch = alice.ok("channel_create", name="general")["channel"]["id"]
        bob.ok("channel_join", ch=ch)
        for i in range(5):
            alice.ok("send", ch=ch, body="m%d @bob" % i if i == 4 else "m%d" % i, client_msg_id="u%d" % i)
        listed = {c["id"]: c for c in bob.ok("channel_list")["channels"]}
        assert listed[ch]["unread"] == 5 and listed[ch]["head"] == 5
        assert {c["id"]: c for c in alice.ok("channel_list")["channels"]}[ch]["unread"] == 0
        # the event and the replies above travel different paths: wait for it
        mention = bob.next_event(kind="message", where=lambda e: e["seq"] == 5)
        assert mention["_notify"] and mention["mentions"] == [ws.uid("bob")]
        alice.ok("delete", ch=ch, seq=2)
        assert bob.call("edit", ch=ch, seq=1, body="hijack")["error"] == "not_author"
        alice.ok("edit", ch=ch, seq=1, body="m0 (edited)")
        assert bob.next_event(kind="message_edited")["body"] == "m0 (edited)"
        assert bob.next_event(kind="message_deleted")["seq"] == 2
        assert {c["id"]: c for c in bob.ok("channel_list")["channels"]}[ch]["unread"] == 4
        bob.ok("read", ch=ch, seq=3)
        assert bob2.next_event(kind="read") == {"ev": "read", "ch": ch, "read_seq": 3, "_notify": False}
        assert bob.ok("read", ch=ch, seq=1)["read_seq"] == 3, "read positions never go back"
        assert bob.ok("read", ch=ch, seq=99)["read_seq"] == 5, "read position stops at the head"
        page = bob.ok("history", ch=ch)["messages"]
        assert page[0]["body"] == "m0 (edited)" and "edited_ts" in page[0]
        assert page[1]["deleted"] is True and page[1]["body"] == ""
        for c in (alice, bob, bob2):
            c.close()


def test_channel_list_ranks_by_affinity():
    with Server(http=False) as server:
        ws = Workspace(server)
        alice = ws.login("alice")
        ids = [alice.ok("channel_create", name="c%d" % i)["channel"]["id"] for i in range(3)]
        for _ in range(3):
            alice.ok("send", ch=ids[1], body="busy", client_msg_id=uuid.uuid4().hex)
        alice.ok("send", ch=ids[2], body="less", client_msg_id=uuid.uuid4().hex)
        ranked = [c["id"] for c in alice.ok("channel_list")["channels"]]
        assert ranked[:2] == [ids[1], ids[2]], ranked
        alice.close()


def test_typing_is_relayed_not_stored():
    with Server(http=False) as server:
        ws = Workspace(server)
        alice, bob = ws.login("alice"), ws.login("bob")
        ch = alice.ok("channel_create", name="general")["channel"]["id"]
        bob.ok("channel_join", ch=ch)
        alice.ok("typing", ch=ch)
        event = bob.next_event(kind="typing")
        assert event["ch"] == ch and event["user"] == ws.uid("alice")
        assert bob.ok("history", ch=ch)["messages"] == []
        alice.close(); bob.close()


def test_login_flood_does_not_stall_sends():
    """Password checks run on a bounded pool of workers: a flood of logins
    is answered (or refused with rate_limited) while sends keep flowing."""
    import msgpack
    with Server(http=False) as server:
        ws = Workspace(server)
        alice = ws.login("alice")
        ch = alice.ok("channel_create", name="general")["channel"]["id"]
        flood = Client(server.api)
        total = 60
        for rid in range(1, total + 1):
            flood.send_raw(msgpack.packb({"op": "login", "rid": rid, "tenant": ws.name,
                                          "handle": "bob", "password": "wrong-password"}))
        ack = alice.ok("send", ch=ch, body="still here", client_msg_id="flood-1")
        answered = {}
        while len(answered) < total:
            payload, _, _ = flood.recv(60000)
            answered[payload["re"]] = payload["error"]
        assert set(answered.values()) <= {"bad_credentials", "rate_limited"}
        assert "rate_limited" in answered.values(), "the queue of password checks is bounded"
        assert ack["seq"] == 1
        flood.close()
        alice.close()


def test_user_create_does_not_stall_sends():
    """New users' passwords are hashed by the same workers as logins, off the
    membership stage: a batch of user_create requests does not hold up a
    send behind it, every user is made once, and a handle asked for twice
    at once goes to one of the two."""
    with Server(http=False) as server:
        ws = Workspace(server)
        alice = ws.login("alice")
        ch = alice.ok("channel_create", name="general")["channel"]["id"]
        admin = Client(server.api)
        admin.ok("auth", token=server.admin_token())
        handles = ["new%d" % i for i in range(22)] + ["twin", "twin"]
        for rid, handle in enumerate(handles, start=100):
            admin.send_raw(msgpack.packb({"op": "user_create", "rid": rid, "tenant": ws.name,
                                          "handle": handle, "display_name": handle,
                                          "password": "password-" + handle}))
        ack = alice.ok("send", ch=ch, body="not held up", client_msg_id="user-create-1")
        assert ack["seq"] == 1
        answered = {}
        while True:
            try:
                payload, _, _ = admin.recv(0)
            except TimeoutError:
                break
            answered[payload["re"]] = payload
        assert len(answered) <= len(handles) // 2, \
            "the send waited for %d password hashes" % len(answered)
        while len(answered) < len(handles):
            payload, _, _ = admin.recv(60000)
            answered[payload["re"]] = payload
        made = {}
        for rid, handle in enumerate(handles, start=100):
            reply = answered[rid]
            if reply.get("ok"):
                assert reply["user"]["handle"] == handle
                made.setdefault(handle, []).append(reply["user"]["id"])
            else:
                assert handle == "twin" and reply["error"] == "name_taken", reply
        assert sorted(made) == sorted(set(handles)) and len(made["twin"]) == 1
        ids = [uid for uids in made.values() for uid in uids]
        assert len(set(ids)) == len(ids), "every user has its own id"
        newcomer = Client(server.api)
        reply = newcomer.ok("login", tenant=ws.name, handle="new7", password="password-new7")
        assert reply["user"]["id"] == made["new7"][0]
        newcomer.close()
        admin.close()
        alice.close()

def test_user_create_flood_is_bounded():
    """user_create shares the hashers' bounded queue with logins: past it,
    rate_limited (retryable, nothing made); every user answered ok exists
    once, with a password that logs in."""
    with Server(http=False) as server:
        ws = Workspace(server, users=())
        admin = Client(server.api)
        admin.ok("auth", token=server.admin_token())
        total = 48
        for rid in range(1, total + 1):
            admin.send_raw(msgpack.packb({"op": "user_create", "rid": rid, "tenant": ws.name,
                                          "handle": "f%d" % rid, "display_name": "F",
                                          "password": "password-%d" % rid}))
        answered = {}
        while len(answered) < total:
            payload, _, _ = admin.recv(60000)
            answered[payload["re"]] = payload
        made = [rid for rid, reply in answered.items() if reply.get("ok")]
        refused = [reply for reply in answered.values() if not reply.get("ok")]
        assert refused and all(r["error"] == "rate_limited" and r["retry_after_ms"] > 0
                               for r in refused), refused
        assert len(made) >= 34, "two running and 32 queued are all made"
        free_handle = "f%d" % refused[0]["re"]
        retry = admin.ok("user_create", tenant=ws.name, handle=free_handle,
                         display_name="F", password="password-again")
        assert retry["user"]["handle"] == free_handle, "a refused handle is still free"
        user = Client(server.api)
        assert user.ok("login", tenant=ws.name, handle="f%d" % made[0],
                       password="password-%d" % made[0])["user"]["handle"] == "f%d" % made[0]
        user.close()
        admin.close()

if __name__ == "__main__":
    run([test_realtime_between_two_users, test_dm_visible_only_to_its_members,
         test_private_channel_refuses_non_members, test_tenant_isolation,
         test_retry_in_the_same_batch_with_a_nul_in_the_body,
         test_retry_is_idempotent_even_after_restart, test_reply_privately_quotes_the_original,
         test_edit_delete_read_and_unread, test_channel_list_ranks_by_affinity,
         test_typing_is_relayed_not_stored, test_login_flood_does_not_stall_sends,
         test_user_create_does_not_stall_sends, test_user_create_flood_is_bounded])
