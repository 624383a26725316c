#!/usr/bin/env python3
"""Time from spawning `liveness serve` (pinned to one core) to its first 200 from /ready, for one or more binaries,
interleaved, 6 rounds. Prints each binary's median and every reading.

    python3 tools/startup_time.py BINARY [BINARY ...]
"""
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROUNDS = 6


def once(binary):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as data_dir:
        env = dict(os.environ, LIVENESS_BIND=f"127.0.0.1:{port}", LIVENESS_DATA_DIR=data_dir, RUST_LOG="warn")
        started = time.perf_counter()
        process = subprocess.Popen(["taskset", "-c", "0", binary, "serve"], env=env, stderr=subprocess.DEVNULL)
        try:
            while True:
                try:
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    connection.request("GET", "/ready")
                    response = connection.getresponse()
                    response.read()
                    if response.status == 200:
                        return time.perf_counter() - started
                except OSError:
                    pass
                if process.poll() is not None:
                    raise RuntimeError(f"{binary} exited with {process.returncode}")
                time.sleep(0.005)
        finally:
            process.terminate()
            process.wait()


def main():
    binaries = sys.argv[1:]
    if not binaries:
        sys.exit(__doc__)
    readings = {binary: [] for binary in binaries}
    for _ in range(ROUNDS):
        for binary in binaries:
            readings[binary].append(once(binary))
    print(time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load average", os.getloadavg())
    for binary, values in readings.items():
        print(f"{binary}: median {statistics.median(values):.3f} s", " ".join(f"{v:.2f}" for v in values))


if __name__ == "__main__":
    main()
