#!/usr/bin/env python3
"""Peak memory of the local server under decompression bombs (issue #14).

Starts the release server (authentication off, a throw-away data dir) on a free loopback port, posts eight
bombs at once to one session, and samples the server's VmRSS every 20 ms. Two kinds of bomb, a round each:

  refused  4096x4096 16-bit RGBA PNG of zeros (~130 KB, 128 MiB of pixels): over the decode budget
  accepted 4096x4096 8-bit RGB PNG of zeros (~50 KB, 48 MiB of pixels): the largest frame accepted

    cargo build --release --bin liveness && python3 tools/decode_memory.py [path/to/liveness]

Prints, per round, the answers' statuses and the peak RSS; stdlib only.
"""
import concurrent.futures
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib


def png(width, height, depth, colour, channels):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    row = b"\0" + bytes(width * channels * depth // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def post(url, body, content_type):
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.environ.get("CARGO_TARGET_DIR", "target"), "release", "liveness")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data_dir = tempfile.mkdtemp(prefix="liveness-bombs-")
    env = dict(os.environ, LIVENESS_BIND=f"127.0.0.1:{port}", LIVENESS_DATA_DIR=data_dir, RUST_LOG="warn")
    server = subprocess.Popen([binary, "serve"], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(base + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        print(f"idle RSS {rss_kib(server.pid) / 1024:.0f} MB")
        rounds = [("refused", png(4096, 4096, 16, 6, 4)), ("accepted", png(4096, 4096, 8, 2, 3))]
        for name, bomb in rounds:
            status, session = post(base + "/api/v1/liveness/sessions?timeout_seconds=60", b"", "application/json")
            url = f"{base}/api/v1/liveness/sessions/{session['session_id']}/frame"
            peak, done = [0], threading.Event()

            def sample():
                while not done.is_set():
                    peak[0] = max(peak[0], rss_kib(server.pid))
                    time.sleep(0.02)
            sampler = threading.Thread(target=sample)
            sampler.start()
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(lambda _: post(url, bomb, "image/png"), range(8)))
            done.set()
            sampler.join()
            statuses = sorted(f"{status} {body.get('code') or body.get('feedback')}" for status, body in answers)
            print(f"{name}: {len(bomb)} bytes x 8 at once -> {statuses}; peak RSS {peak[0] / 1024:.0f} MB")
        print(f"after RSS {rss_kib(server.pid) / 1024:.0f} MB")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
