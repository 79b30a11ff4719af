"""docs/errors.md against the code: every error code has a row, every row
names a real code and a real test that mentions it; plus the tests for the
codes no other file covers."""
import ast
import os
import re
import time

from chorus_harness import Server, Workspace, Client, free_port, run

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HERE = os.path.dirname(os.path.abspath(__file__))


def codes_in_code():
    with open(os.path.join(ROOT, "proto", "proto_error.c")) as f:
        text = f.read()
    return set(re.findall(r'\[PROTO_ERR_\w+\] = \{ "(\w+)"', text))


def rows_in_doc():
    rows = {}
    with open(os.path.join(ROOT, "docs", "errors.md")) as f:
        for line in f:
            match = re.match(r"\| `(\w+)` \|.*\| `([\w.]+)::(\w+)` \|\s*$", line)
            if match:
                rows[match.group(1)] = (match.group(2), match.group(3))
    return rows


def function_source(path, name):
    with open(path) as f:
        text = f.read()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return ast.get_source_segment(text, node)
    return None


def test_every_code_has_a_row_and_a_test():
    codes, rows = codes_in_code(), rows_in_doc()
    assert len(codes) >= 20, "could not read the error table"
    assert codes - set(rows) == set(), "codes without a row: %s" % (codes - set(rows))
    assert set(rows) - codes == set(), "rows without a code: %s" % (set(rows) - codes)
    for code, (path, name) in rows.items():
        source = function_source(os.path.join(HERE, path), name)
        assert source, "the row of %s names %s::%s, which does not exist" % (code, path, name)
        assert re.search(r"\b%s\b" % code, source), "%s::%s never mentions %s" % (path, name, code)


def test_name_taken():
    with Server(http=False) as server:
        ws = Workspace(server)
        with Client(server.api) as admin:
            admin.ok("auth", token=server.admin_token())
            assert admin.call("tenant_create", name=ws.name)["error"] == "name_taken"
            assert admin.call("user_create", tenant=ws.name, handle="alice", display_name="A",
                              password="password1")["error"] == "name_taken"
        alice = ws.login("alice")
        alice.ok("channel_create", name="general")
        assert alice.call("channel_create", name="general")["error"] == "name_taken"
        alice.close()


def test_rate_limited():
    with Server(http=False, args=["--rate", "2", "--burst", "5"]) as server:
        ws = Workspace(server)
        alice = ws.login("alice")
        ch = alice.ok("channel_create", name="general")["channel"]["id"]
        replies = [alice.call("send", ch=ch, body="m%d" % i, client_msg_id="r%d" % i) for i in range(10)]
        limited = [r for r in replies if not r["ok"]]
        assert limited and all(r["error"] == "rate_limited" and r["retriable"] for r in limited)
        assert all(r["retry_after_ms"] > 0 for r in limited)
        saved = [r for r in replies if r["ok"]]
        time.sleep(max(r["retry_after_ms"] for r in limited) / 1000.0 + 0.5)
        history = alice.ok("history", ch=ch)["messages"]
        assert len(history) == len(saved), "a rate-limited send must not be stored"
        alice.close()


def test_stage_unavailable():
    """The front without its persistence stage answers, it does not hang."""
    persistence = "tcp://127.0.0.1:%d" % free_port()
    with Server(http=False, args=["--stages", "broker,ingest,membership,fanout",
                                  "--persistence-ep", persistence]) as server:
        ws = Workspace(server)
        alice = ws.login("alice")
        ch = alice.ok("channel_create", name="general")["channel"]["id"]
        reply = alice.call("send", ch=ch, body="nobody saves this", client_msg_id="u1")
        assert reply["error"] == "stage_unavailable" and reply["retriable"]
        alice.close()


def test_internal_is_never_seen():
    """internal marks a bug: a varied session must never meet it."""
    with Server(http=False) as server:
        ws = Workspace(server)
        alice, bob = ws.login("alice"), ws.login("bob")
        ch = alice.ok("channel_create", name="general")["channel"]["id"]
        replies = [bob.call("channel_join", ch=ch), alice.send(ch, "hello"),
                   bob.call("history", ch=ch, around=1), bob.call("read", ch=ch, seq=1),
                   bob.call("sync", channels={str(ch): 0}), alice.call("channel_list"),
                   bob.call("dm_open", users=[ws.uid("alice")]), alice.call("typing", ch=ch),
                   bob.call("edit", ch=ch, seq=1, body="x"), alice.call("delete", ch=ch, seq=1),
                   alice.call("channel_members", ch=ch), alice.call("user_list")]
        assert all(r.get("error") != "internal" for r in replies), replies
        alice.close(); bob.close()


if __name__ == "__main__":
    run([test_every_code_has_a_row_and_a_test, test_name_taken, test_rate_limited,
         test_stage_unavailable, test_internal_is_never_seen])
