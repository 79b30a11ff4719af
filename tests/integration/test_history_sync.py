"""History paging through 10,000 messages, and catch-up from a checkpoint."""
from chorus_harness import Server, Workspace, run


def test_history_pages_back_to_the_first_message():
    with Server(http=False) as server:
        ws = Workspace(server)
        alice = ws.login("alice")
        ch = alice.ok("channel_create", name="long")["channel"]["id"]
        total = 10000
        acks = alice.send_many(ch, ["message %d" % i for i in range(1, total + 1)], window=128)
        assert [a["seq"] for a in acks] == list(range(1, total + 1))
        seen = []
        page = alice.ok("history", ch=ch, limit=200)
        assert page["head"] == total and page["has_more_after"] is False
        while True:
            seqs = [m["seq"] for m in page["messages"]]
            assert seqs == sorted(seqs) and len(seqs) <= 200
            seen = seqs + seen
            if not page["has_more_before"]:
                break
            page = alice.ok("history", ch=ch, before=seqs[0], limit=200)
        assert seen == list(range(1, total + 1)), "gaps or repeats in history"
        bodies = {m["seq"]: m["body"] for m in alice.ok("history", ch=ch, around=5000, limit=11)["messages"]}
        assert bodies == {s: "message %d" % s for s in range(4995, 5006)}
        first = alice.ok("history", ch=ch, after=0 + 1, limit=2)
        assert [m["seq"] for m in first["messages"]] == [2, 3]
        oldest = alice.ok("history", ch=ch, before=2)
        assert [m["seq"] for m in oldest["messages"]] == [1] and not oldest["has_more_before"]
        assert alice.call("history", ch=ch, limit=201)["error"] == "invalid_args"
        assert alice.call("history", ch=ch, before=5, after=1)["error"] == "invalid_args"
        alice.close()


def test_around_unread_opens_where_the_user_left_off():
    with Server(http=False) as server:
        ws = Workspace(server)
        alice, bob = ws.login("alice"), ws.login("bob")
        ch = alice.ok("channel_create", name="general")["channel"]["id"]
        bob.ok("channel_join", ch=ch)
        alice.send_many(ch, ["m%d" % i for i in range(300)])
        bob.ok("read", ch=ch, seq=120)
        page = bob.ok("history", ch=ch, around_unread=True, limit=50)
        seqs = [m["seq"] for m in page["messages"]]
        assert 121 in seqs and page["read_seq"] == 120
        assert page["has_more_before"] and page["has_more_after"]
        bob.ok("read", ch=ch, seq=300)
        newest = bob.ok("history", ch=ch, around_unread=True, limit=50)
        assert [m["seq"] for m in newest["messages"]][-1] == 300 and not newest["has_more_after"]
        alice.close(); bob.close()


def test_sync_returns_exactly_what_was_missed():
    with Server(http=False) as server:
        ws = Workspace(server)
        alice, bob = ws.login("alice"), ws.login("bob")
        ch = alice.ok("channel_create", name="general")["channel"]["id"]
        other = alice.ok("channel_create", name="other")["channel"]["id"]
        bob.ok("channel_join", ch=ch)
        bob.ok("channel_join", ch=other)
        alice.send_many(ch, ["before %d" % i for i in range(10)])
        checkpoint = 10
        bob.close()  # bob goes away with checkpoint 10
        alice.send_many(ch, ["missed %d" % i for i in range(500)])
        alice.send_many(other, ["other %d" % i for i in range(3)])
        bob = ws.login("bob")
        got = []
        checkpoints = {str(ch): checkpoint, str(other): 0}
        while True:
            reply = bob.ok("sync", channels=checkpoints, limit=200)
            more = False
            for entry in reply["channels"]:
                seqs = [m["seq"] for m in entry["messages"]]
                if entry["ch"] == ch:
                    got += seqs
                checkpoints[str(entry["ch"])] = seqs[-1] if seqs else checkpoints[str(entry["ch"])]
                more = more or entry["has_more"]
            if not more:
                break
        assert got == list(range(11, 511)), "sync must return exactly the 500 missed, in order"
        assert checkpoints[str(other)] == 3
        again = bob.ok("sync", channels=checkpoints)
        assert again["channels"] == [], "nothing left once caught up"
        bob.ok("channel_leave", ch=other)
        assert bob.ok("sync", channels=checkpoints)["removed"] == [other]
        # without a client checkpoint the server's delivered position is used
        bob2 = ws.login("bob")
        assert bob2.ok("sync")["channels"] == []
        alice.close(); bob.close(); bob2.close()


def test_unread_counts_skip_deleted_and_own_messages_and_stop_at_1000():
    with Server(http=False) as server:
        ws = Workspace(server)
        alice, bob = ws.login("alice"), ws.login("bob")
        ch = alice.ok("channel_create", name="busy")["channel"]["id"]
        bob.ok("channel_join", ch=ch)

        def unread():
            listed = {c["id"]: c for c in bob.ok("channel_list")["channels"]}
            return listed[ch]["unread"]

        alice.send_many(ch, ["a%d" % i for i in range(1, 11)])
        assert unread() == 10
        alice.ok("delete", ch=ch, seq=3)
        alice.ok("delete", ch=ch, seq=10)
        assert unread() == 8
        bob.ok("read", ch=ch, seq=3)
        assert unread() == 6                       # 4..9 (10 deleted)
        bob.ok("send", ch=ch, body="mine", client_msg_id="b-1")
        assert unread() == 0                       # sending reads up to one's own
        alice.send_many(ch, ["b%d" % i for i in range(1, 1101)], window=128)
        for seq in range(12, 62):                  # 50 deleted among the first unread
            alice.ok("delete", ch=ch, seq=seq)
        assert unread() == 1000                    # 1,050 left: capped
        bob.ok("read", ch=ch, seq=1011)            # 1111 - 1011 = 100 left, none deleted
        assert unread() == 100
        reply = bob.ok("sync", channels={str(ch): 1011})
        assert reply["channels"][0]["unread"] == 100
        alice.close(); bob.close()


def test_checkpoints_survive_restart():
    server = Server(http=False).start()
    try:
        ws = Workspace(server)
        alice, bob = ws.login("alice"), ws.login("bob")
        ch = alice.ok("channel_create", name="general")["channel"]["id"]
        bob.ok("channel_join", ch=ch)
        alice.send_many(ch, ["m%d" % i for i in range(20)])
        bob.ok("read", ch=ch, seq=7)
        alice.close(); bob.close()
        assert server.stop() == 0
        server.start()
        bob = ws.login("bob")
        listed = {c["id"]: c for c in bob.ok("channel_list")["channels"]}
        assert listed[ch]["read_seq"] == 7 and listed[ch]["unread"] == 13
        reply = bob.ok("sync", channels={str(ch): 7})
        assert [m["seq"] for m in reply["channels"][0]["messages"]] == list(range(8, 21))
        bob.close()
    finally:
        server.cleanup()


if __name__ == "__main__":
    run([test_history_pages_back_to_the_first_message,
         test_unread_counts_skip_deleted_and_own_messages_and_stop_at_1000, test_around_unread_opens_where_the_user_left_off,
         test_sync_returns_exactly_what_was_missed, test_checkpoints_survive_restart])
