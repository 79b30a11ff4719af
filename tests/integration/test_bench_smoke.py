"""CI smoke of the load generator: chorus-bench runs for a few seconds
against a chorusd started here and its JSON is checked for sanity (acks,
deliveries, no errors). The benchmark is not a test: no timing assertions.

CHORUS_BENCH names the chorus-bench binary (default: beside CHORUSD).
"""
import json
import os
import subprocess
import tempfile

from chorus_harness import CHORUSD, Server, run

BENCH = os.environ.get("CHORUS_BENCH") or os.path.join(os.path.dirname(CHORUSD), "chorus-bench")
RUN_TIMEOUT_S = 120


def bench(*args):
    """Runs chorus-bench; returns its stdout (fails on a non-zero exit)."""
    proc = subprocess.run([BENCH] + [str(a) for a in args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT_S)
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, "chorus-bench %s exited %d:\n%s" % (args[0], proc.returncode, out)
    return out


def population(server, tmp):
    pop = os.path.join(tmp, "pop.txt")
    bench("setup", "--api", server.api, "--admin-token-file",
          os.path.join(server.data_dir, "admin.token"), "--out", pop,
          "--users", 6, "--fan", 4, "--ingest-channels", 4, "--ingest-senders", 2, "--hist")
    return pop


def check_run(path, sessions):
    with open(path) as f:
        result = json.load(f)
    assert result["sessions_ready"] == result["sessions"] == sessions, result
    assert result["acks"] > 0 and result["acked_per_s"] > 0, result
    assert result["deliveries"] > 0 and result["deliveries_per_s"] > 0, result
    assert result["errors"] == 0, result
    assert result["disconnects"] == 0, result
    assert result["delivery_ratio"] >= 1.0, result
    for key in ("ack_ms", "deliver_ms"):
        h = result[key]
        assert h["count"] > 0 and 0 < h["p50"] <= h["p99"] <= h["p999"] <= h["max"], (key, h)
    assert result["server"]["rss_kb_end"] > 0, result
    return result


def test_zmq_closed_loop():
    with Server(http=False) as server, tempfile.TemporaryDirectory() as tmp:
        pop = population(server, tmp)
        out = os.path.join(tmp, "zmq.json")
        bench("run", "--pop", pop, "--api", server.api, "--proto", "zmq", "--channels", "i*",
              "--senders", 2, "--window", 4, "--warmup", 0.5, "--duration", 2,
              "--server-pid", server.proc.pid, "--label", "smoke zmq", "--json", out)
        check_run(out, 2)


def test_ws_open_loop():
    #  The edge reaches the broker over tcp here, whatever inproc endpoints
    #  chorusd binds by itself
    server = Server()
    server.args = ["--edge-api", server.api]
    with server, tempfile.TemporaryDirectory() as tmp:
        pop = population(server, tmp)
        out = os.path.join(tmp, "ws.json")
        bench("run", "--pop", pop, "--ws", "127.0.0.1:%d" % server.http_port, "--channels", "fan",
              "--senders", 2, "--rate", 100, "--warmup", 0.5, "--duration", 2,
              "--server-pid", server.proc.pid, "--label", "smoke ws", "--json", out)
        result = check_run(out, 4)
        assert result["loop"] == "open", result


def test_history_and_fill():
    with Server(http=False) as server, tempfile.TemporaryDirectory() as tmp:
        pop = population(server, tmp)
        fill = os.path.join(tmp, "fill.json")
        bench("fill", "--api", server.api, "--pop", pop, "--channel", "hist", "--count", 300,
              "--window", 64, "--json", fill)
        with open(fill) as f:
            result = json.load(f)
        assert result["acked"] == 300 and result["errors"] == 0 and result["head"] == 300, result
        out = os.path.join(tmp, "history.json")
        bench("history", "--api", server.api, "--pop", pop, "--channel", "hist", "--count", 20,
              "--json", out)
        with open(out) as f:
            result = json.load(f)
        assert result["head"] == 300, result
        for key in ("newest_ms", "oldest_ms", "middle_ms"):
            assert result[key]["count"] == 20, (key, result)


if __name__ == "__main__":
    if not os.path.exists(BENCH):
        #  Not built in this tree (the chorus-bench target is missing)
        print("SKIP: %s not found; set CHORUS_BENCH" % BENCH)
        print("0 passed, 0 failed")
    else:
        run([test_zmq_closed_loop, test_ws_open_loop, test_history_and_fill])
