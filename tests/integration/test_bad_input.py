"""Bad input over ZeroMQ: each gets its documented error, the connection
stays usable and nothing is stored."""
import msgpack

from chorus_harness import Server, Workspace, Client, run


def expect_error(client, payload, code, rid=0):
    client.send_raw(payload)
    reply = client.reply_for(rid)
    assert reply["ok"] is False and reply["error"] == code, (payload[:40], reply)
    assert isinstance(reply["message"], str) and reply["message"]
    return reply


def check_still_usable(client):
    assert client.call("ping")["ok"]


def test_bad_input_table():
    with Server(http=False) as server:
        ws = Workspace(server)
        alice = ws.login("alice")
        ch = alice.ok("channel_create", name="general")["channel"]["id"]
        alice.ok("send", ch=ch, body="the only message", client_msg_id="keep")
        cases = [
            (b"\xc1garbage", "invalid_message", 0),                      # not msgpack
            (msgpack.packb([1, 2, 3]), "invalid_message", 0),           # not a map
            (b"\x81\xa1a\xdd\xff\xff\xff\xff", "invalid_message", 0),  # array32 bomb
            (b"\x81\xa1a" + b"\x91" * 12 + b"\xc0", "invalid_message", 0),  # too deep
            (b"\x82\xa2op\xa4ping\xa2op\xa4ping", "invalid_message", 0),      # duplicate keys
            (b"\x81\xa2op\xc7\x01\x01x", "invalid_message", 0),          # ext type
            (msgpack.packb({"op": "send", "rid": 7, "ch": ch, "client_msg_id": "x"}) + b"\x00",
             "invalid_message", 0),                                       # trailing bytes
            (b"\x82\xa2op\xa4send\xa4body\xa3\xff\xfe\xfd", "invalid_utf8", 0),  # bad UTF-8
            (msgpack.packb({"op": "fly", "rid": 8}), "unknown_op", 8),
            (msgpack.packb({"rid": 9}), "invalid_args", 9),
            (msgpack.packb({"op": "send", "rid": 10, "ch": ch, "body": "x"}), "invalid_args", 10),
            (msgpack.packb({"op": "send", "rid": 11, "ch": "general", "body": "x",
                            "client_msg_id": "y"}), "invalid_args", 11),
            (msgpack.packb({"op": "send", "rid": 12, "ch": ch, "body": "x" * 40001,
                            "client_msg_id": "z"}), "msg_too_long", 12),
            (msgpack.packb({"op": "send", "rid": 13, "ch": ch, "body": "   ",
                            "client_msg_id": "w"}), "no_text", 13),
            (msgpack.packb({"op": "send", "rid": 14, "ch": ch, "body": "x",
                            "client_msg_id": "i" * 65}), "invalid_args", 14),
            (msgpack.packb({"op": "send", "rid": 15, "ch": 999999, "body": "x",
                            "client_msg_id": "v"}), "channel_not_found", 15),
            (msgpack.packb({"op": "history", "rid": 16, "ch": -1}), "invalid_args", 16),
            (msgpack.packb({"op": "dm_open", "rid": 17, "users": [424242]}), "user_not_found", 17),
            (msgpack.packb({"op": "history", "rid": 18, "ch": ch, "limit": 1000}), "invalid_args", 18),
            (b"x" * 70000, "invalid_message", 0),                         # over 64 KiB
        ]
        for payload, code, rid in cases:
            expect_error(alice, payload, code, rid)
            check_still_usable(alice)
        # 40,000 characters of multi-byte text is accepted: the limit counts characters
        ok = alice.ok("send", ch=ch, body="é" * 40000, client_msg_id="long-ok")
        assert ok["seq"] == 2
        history = alice.ok("history", ch=ch)["messages"]
        assert [m["seq"] for m in history] == [1, 2], "bad input must store nothing"
        alice.close()


def test_authentication_errors():
    with Server(http=False) as server:
        ws = Workspace(server)
        with Client(server.api) as anon:
            assert anon.call("channel_list")["error"] == "not_authed"
            assert anon.call("auth", token="chr_usr_forged")["error"] == "bad_credentials"
            assert anon.call("login", tenant=ws.name, handle="alice", password="wrong-password")["error"] == "bad_credentials"
            assert anon.call("login", tenant=ws.name, handle="nobody", password="whatever1")["error"] == "bad_credentials"
            assert anon.call("login", tenant="no-such-ws", handle="alice", password="whatever1")["error"] == "tenant_not_found"
            assert anon.call("tenant_create", name="evil")["error"] == "forbidden"
            check_still_usable(anon)
        alice = ws.login("alice")
        assert alice.call("tenant_create", name="evil")["error"] == "forbidden", "users are not admins"
        assert alice.call("user_create", tenant=ws.name, handle="eve", display_name="Eve",
                          password="password1")["error"] == "forbidden"
        with Client(server.api) as other:
            other.ok("auth", token=alice.token)
            assert other.ok("channel_list")
        alice.ok("logout", token=alice.token)
        with Client(server.api) as other:
            assert other.call("auth", token=alice.token)["error"] == "bad_credentials", "logout revokes"
        alice.close()


if __name__ == "__main__":
    run([test_bad_input_table, test_authentication_errors])
