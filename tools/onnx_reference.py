"""Reference outputs for the tract parity test (tests/model_parity.rs), computed with onnxruntime.

Each model gets a deterministic input, value i of the flattened tensor = ((i * 7919) % 251) / 250 scaled into the
model's input range, and we print a few output values plus each output's sum. The figures are pasted into the
test; the tool itself is not needed to run it.
    python tools/onnx_reference.py   # in the venv made by tools/convert_models.sh
"""
import numpy as np
import onnxruntime as ort

MODELS = {  # file: (shape, scale, offset)
    "models/blazeface_short.onnx": ((1, 128, 128, 3), 2.0, -1.0),
    "models/facemesh_v2.onnx": ((1, 256, 256, 3), 1.0, 0.0),
    "models/face_blendshapes.onnx": ((1, 146, 2), 256.0, 0.0),
    "../shared/models/antispoof/2.7_80x80_MiniFASNetV2.onnx": ((1, 3, 80, 80), 255.0, 0.0),
    "../shared/models/antispoof/4_0_0_80x80_MiniFASNetV1SE.onnx": ((1, 3, 80, 80), 255.0, 0.0),
}

for path, (shape, scale, offset) in MODELS.items():
    n = int(np.prod(shape))
    x = (((np.arange(n, dtype=np.int64) * 7919) % 251) / 250.0 * scale + offset).astype(np.float32).reshape(shape)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    outputs = session.run(None, {session.get_inputs()[0].name: x})
    print(path)
    for meta, out in zip(session.get_outputs(), outputs):
        flat = out.reshape(-1)
        print(f"  {meta.name} shape={list(out.shape)} sum={flat.astype(np.float64).sum():.6f} first={[round(float(v), 6) for v in flat[:4]]}")
