#!/usr/bin/env python3
"""nats_clients_test.py - stock NATS clients against the real atomqd.

Starts atomqd (and its dataplane) with --nats on a free loopback port in a
temporary directory (with $ATOMQ_TEST_WORKERS workers, 1 by default), then runs the conformance checks of tests/clients/
(nats.go or nats.js, tests/clients/README.md lists them) against it. Exit
status is the checks' (77 when the client's toolchain is missing).

    python3 tests/integration/nats_clients_test.py build/control/atomqd \\
            tests/clients/run.sh build go
"""
import os
import subprocess
import sys

from natsenv import Atomqd


def main():
    if len(sys.argv) < 5:
        print(__doc__)
        return 2
    atomqd, run_sh, build, lang = sys.argv[1:5]
    # ATOMQ_TEST_WORKERS: the same checks with connections spread over
    # several workers (subscribers and publishers on different shards).
    server = Atomqd(atomqd, workers=int(os.environ.get("ATOMQ_TEST_WORKERS", "1")))
    try:
        if not server.ok:
            print("FAIL: atomqd does not listen on its --nats port")
            print(server.log())
            return 1
        rc = subprocess.call(["sh", run_sh, lang, os.path.abspath(build),
                              f"nats://127.0.0.1:{server.port}", *sys.argv[5:]])
        if not server.alive():
            print("FAIL: atomqd died during the checks")
            rc = 1
        if rc not in (0, 77):
            print("--- atomqd log ---")
            print(server.log())
        return rc
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
