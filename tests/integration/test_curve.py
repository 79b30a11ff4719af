"""CURVE on tcp links (--curve-dir): a known key gets in, an unknown key or a
plain (NULL) client does not; the stages split over tcp speak CURVE too."""
import os
import shutil
import tempfile
import time

import msgpack
import zmq
import zmq.auth

from chorus_harness import Server, free_port, run


def curve_client(endpoint, server_public, client_public, client_secret):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.curve_serverkey = server_public
    sock.curve_publickey = client_public
    sock.curve_secretkey = client_secret
    sock.connect(endpoint)
    return sock


def pings(sock, timeout_ms=2000):
    sock.send(msgpack.packb({"op": "ping", "rid": 1}))
    if not sock.poll(timeout_ms):
        return False
    return msgpack.unpackb(sock.recv_multipart()[0])["ok"]


def test_known_key_in_unknown_key_out():
    root = tempfile.mkdtemp(prefix="chorus-curve-")
    curve = os.path.join(root, "curve")
    server = Server(http=False, args=["--curve-dir", curve])
    try:
        # the harness's readiness ping is a plain client: wait on the files instead
        server.start(wait=False)
        secret_file = os.path.join(curve, "server.cert_secret")
        for _ in range(100):
            if os.path.exists(secret_file):
                break
            assert server.proc.poll() is None, server.tail()
            time.sleep(0.05)
        server_public, _ = zmq.auth.load_certificate(os.path.join(curve, "server.cert"))
        # an integrator whose public key is in clients/
        pub_file, sec_file = zmq.auth.create_certificates(root, "integrator")
        shutil.copy(pub_file, os.path.join(curve, "clients"))
        client_public, client_secret = zmq.auth.load_certificate(sec_file)
        known = curve_client(server.api, server_public, client_public, client_secret)
        ok = False
        for _ in range(20):   # zauth reads clients/ again when it changes
            if pings(known, 500):
                ok = True
                break
        assert ok, "a client with an allowed key must get in"
        known.close()
        # a client with a key the server does not know
        stranger_public, stranger_secret = zmq.curve_keypair()
        stranger = curve_client(server.api, server_public, stranger_public, stranger_secret)
        assert not pings(stranger), "an unknown key must be refused"
        stranger.close()
        # a plain client without CURVE
        plain = zmq.Context.instance().socket(zmq.DEALER)
        plain.setsockopt(zmq.LINGER, 0)
        plain.connect(server.api)
        assert not pings(plain), "a client without CURVE must be refused"
        plain.close()
        assert server.stop() == 0
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def test_split_stages_over_curve():
    root = tempfile.mkdtemp(prefix="chorus-curve-split-")
    curve = os.path.join(root, "curve")
    try:
        ports = [free_port() for _ in range(3)]
        broker, fanout, persistence = ("tcp://127.0.0.1:%d" % p for p in ports)
        links = ["--broker-ep", broker, "--fanout-ep", fanout, "--persistence-ep", persistence,
                 "--curve-dir", curve]
        os.makedirs(os.path.join(root, "front"))
        os.makedirs(os.path.join(root, "store"))
        front = store = None
        front = Server(os.path.join(root, "front"), http=False,
                       args=links + ["--stages", "broker,ingest,membership,fanout"])
        front.start(wait=False)
        for _ in range(100):
            if os.path.exists(os.path.join(curve, "clients", "server.cert")):
                break
            time.sleep(0.05)
        store = Server(os.path.join(root, "store"), http=False, args=links + ["--stages", "persistence"])
        store.start(wait=False)
        server_public, server_secret = zmq.auth.load_certificate(os.path.join(curve, "server.cert_secret"))
        client = curve_client(front.api, server_public, server_public, server_secret)
        admin_token = None
        for _ in range(100):
            if os.path.exists(os.path.join(front.data_dir, "admin.token")):
                admin_token = front.admin_token()
                break
            time.sleep(0.05)

        def call(op, **fields):
            call.rid += 1
            sock = call.sock
            sock.send(msgpack.packb(dict(fields, op=op, rid=call.rid)))
            while True:
                assert sock.poll(10000), "no reply to %s" % op
                reply = msgpack.unpackb(sock.recv_multipart()[0], strict_map_key=False)
                if reply.get("re") == call.rid:
                    return reply
        call.rid = 0
        call.sock = client
        assert call("auth", token=admin_token)["ok"]
        call("tenant_create", name="curvy")
        call("user_create", tenant="curvy", handle="ann", display_name="Ann", password="password1")
        client.close()
        client = curve_client(front.api, server_public, server_public, server_secret)
        call.sock = client
        assert call("login", tenant="curvy", handle="ann", password="password1")["ok"]
        ch = call("channel_create", name="general")["channel"]["id"]
        ack = call("send", ch=ch, body="over CURVE", client_msg_id="c1")
        assert ack["ok"] and ack["seq"] == 1, ack
        assert call("history", ch=ch)["messages"][0]["body"] == "over CURVE"
        client.close()
        assert front.stop() == 0 and store.stop() == 0
    finally:
        for server in (front, store):
            if server:
                server.cleanup()        #  kills what still runs
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    run([test_known_key_in_unknown_key_out, test_split_stages_over_curve])
