"""Load benchmark of the local server (standard library only).

    python3 tools/load_test.py --url http://127.0.0.1:8000 --pid PID [--clients 8] [--fps 10] [--seconds 30]

Each client opens a session, posts real JPEG frames (multipart, field "image") at --fps (0 = as fast as the
server allows), and opens a new session when one ends. Prints frames/s, p50/p99 latency, errors by status, and the
server's resident memory (VmRSS) sampled each second, with its peak (VmHWM).
"""
import argparse
import http.client
import json
import statistics
import threading
import time
import urllib.parse

BOUNDARY = "loadtestboundary7MA4YWxkTrZu0gW"


def multipart(jpeg):
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"f.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode()
    return head + jpeg + f"\r\n--{BOUNDARY}--\r\n".encode()


def rss_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def client(url, frames, fps, deadline, results, lock):
    parsed = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    session = None
    i = 0
    while time.time() < deadline:
        started = time.time()
        if session is None:
            conn.request("POST", "/api/v1/liveness/sessions?num_challenges=3&timeout_seconds=5")
            response = conn.getresponse()
            body = response.read()
            if response.status != 201:
                with lock:
                    results["errors"][response.status] = results["errors"].get(response.status, 0) + 1
                continue
            session = json.loads(body)["session_id"]
            with lock:
                results["sessions"] += 1
        conn.request("POST", f"/api/v1/liveness/sessions/{session}/frame", body=frames[i % len(frames)],
                     headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
        i += 1
        response = conn.getresponse()
        body = response.read()
        elapsed = time.time() - started
        with lock:
            if response.status == 200:
                results["latencies"].append(elapsed)
                if json.loads(body)["session_complete"]:
                    session = None
            elif response.status in (409, 410):  # the session ended between two frames: start another
                results["latencies"].append(elapsed)
                session = None
            else:
                results["errors"][response.status] = results["errors"].get(response.status, 0) + 1
        if fps > 0:
            time.sleep(max(0.0, 1.0 / fps - (time.time() - started)))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--fps", type=float, default=10)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("frames", nargs="+")
    args = parser.parse_args()
    frames = [multipart(open(f, "rb").read()) for f in args.frames]
    results = {"latencies": [], "errors": {}, "sessions": 0}
    lock = threading.Lock()
    deadline = time.time() + args.seconds
    threads = [threading.Thread(target=client, args=(args.url, frames, args.fps, deadline, results, lock))
               for _ in range(args.clients)]
    rss = [rss_kb(args.pid, "VmRSS")]
    start = time.time()
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        time.sleep(1)
        rss.append(rss_kb(args.pid, "VmRSS"))
    duration = time.time() - start
    lat = sorted(results["latencies"])
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")
    print(f"clients {args.clients}, target {args.fps or 'max'} fps each, {duration:.0f} s: "
          f"{len(lat)} frames, {len(lat) / duration:.1f} frames/s, sessions {results['sessions']}, "
          f"p50 {p(0.5):.0f} ms, p99 {p(0.99):.0f} ms, errors {results['errors'] or 0}; "
          f"RSS start {rss[0] / 1024:.0f} MB, end {rss[-1] / 1024:.0f} MB, peak {rss_kb(args.pid, 'VmHWM') / 1024:.0f} MB")


if __name__ == "__main__":
    main()
