"""Split proof: persistence in one chorusd process, the other stages in
another, over tcp; the same end-to-end checks as the single process."""
import os
import shutil
import tempfile

import chorus_harness
from chorus_harness import Server, free_port, run
import test_core
import test_history_sync


class SplitServer:
    """Two chorusd processes: 'store' (persistence) and 'front' (the rest)."""

    def __init__(self, http=False, **_):
        self.root = tempfile.mkdtemp(prefix="chorus-split-")
        ports = [free_port() for _ in range(3)]
        broker, fanout, persistence = ("tcp://127.0.0.1:%d" % p for p in ports)
        links = ["--broker-ep", broker, "--fanout-ep", fanout, "--persistence-ep", persistence]
        self.front = Server(os.path.join(self.root, "front"), http=False,
                            args=links + ["--stages", "broker,ingest,membership,fanout"])
        self.store = Server(os.path.join(self.root, "store"), http=False,
                            args=links + ["--stages", "persistence"])
        os.makedirs(self.front.data_dir)
        os.makedirs(self.store.data_dir)
        self.api = self.front.api

    def start(self, wait=True):
        self.store.start(wait=False)
        self.front.start(wait=wait)
        return self

    def wait_ready(self):
        self.front.wait_ready()

    def admin_token(self):
        return self.front.admin_token()

    def stop(self, *args):
        codes = [self.front.stop(*args), self.store.stop(*args)]
        return max(abs(c or 0) for c in codes)

    def kill(self):
        self.front.kill()
        self.store.kill()

    def cleanup(self):
        self.front.cleanup()
        self.store.cleanup()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        code = self.stop()
        self.cleanup()
        if code and exc[0] is None:
            raise AssertionError("a chorusd process exited with %s" % code)


def test_store_really_is_separate():
    with SplitServer() as split:
        assert os.path.isdir(os.path.join(split.store.data_dir, "messages"))
        assert not os.path.exists(os.path.join(split.front.data_dir, "messages"))
        assert os.path.isdir(os.path.join(split.front.data_dir, "meta"))


if __name__ == "__main__":
    # The very same tests, with every Server made of two processes
    test_core.Server = SplitServer
    test_history_sync.Server = SplitServer
    chorus_harness.Server = SplitServer
    run([test_store_really_is_separate,
         test_core.test_realtime_between_two_users, test_core.test_dm_visible_only_to_its_members,
         test_core.test_private_channel_refuses_non_members, test_core.test_tenant_isolation,
         test_core.test_retry_is_idempotent_even_after_restart,
         test_core.test_reply_privately_quotes_the_original, test_core.test_edit_delete_read_and_unread,
         test_history_sync.test_history_pages_back_to_the_first_message,
         test_history_sync.test_sync_returns_exactly_what_was_missed,
         test_history_sync.test_checkpoints_survive_restart])
