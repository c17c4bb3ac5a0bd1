"""Seed 000's face-recognition job on dynamr: time against worker nodes, with a single-process reference,
and precision and recall against the ground truth of composed photos.

    python experiments/faces/run.py            # 160 photos of 1024x768: about 5 minutes on 2 cores
    python experiments/faces/run.py --quick    # 12 small photos, embedded and on 3 nodes: checks only (CI)

The photos are composed from data that ships in scikit-image's wheel, nothing downloaded: each is a
textured background with shapes, and 0 to 3 faces pasted at known places and sizes. The faces come from
``lfw_subset.npy`` (faces of Labeled Faces in the Wild). About a third of the photos also hold the target
portrait: the astronaut's face from ``astronaut.png``, rescaled, with its brightness changed.

The job is ``examples/face_detection.py``. It runs embedded (``dynamr run``, one task slot per core) and
on 1 to 4 nodes with one slot each, with the photos in the store. Each run's output is scored:
- detection: a pasted face counts as found when a detected box is centred within a third of its side;
- the target: a photo is flagged when one of its faces scores at least the threshold.

Writes photos' ground truth, results.csv, results.json and faces.png beside this file (or in --out).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import ROOT, arguments, cluster, machine, run_job, save, upload, write_rows

from dynamr.client import Client

HERE = Path(__file__).resolve().parent
JOB = ROOT / "examples" / "face_detection.py"
THRESHOLD = 0.65


def _job_module() -> Any:
    spec = importlib.util.spec_from_file_location("face_detection", JOB)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compose(folder: Path, count: int, width: int, height: int, seed: int = 0) -> dict[str, list[dict[str, Any]]]:
    """Write ``count`` photos into ``folder``; returns each photo's pasted faces (the ground truth)."""
    from skimage import data

    faces = (data.lfw_subset()[:100] * 255).astype(np.uint8)  # the first 100 are faces
    target = _job_module().target_face()
    pad = target.shape[0] // 6
    astronaut = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)
    # the target as pasted: its face with a little of the head around it, as a photo would show it
    ty, tx = _box_in(astronaut, target)
    portrait = astronaut[max(0, ty - pad):ty + target.shape[0] + pad, max(0, tx - pad):tx + target.shape[1] + pad]
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    truth: dict[str, list[dict[str, Any]]] = {}
    for index in range(count):
        base = cv2.resize(rng.random((height // 40, width // 40)).astype(np.float32), (width, height),
                          interpolation=cv2.INTER_CUBIC)
        image = (base * 120 + 60 + rng.normal(0, 8, (height, width))).clip(0, 255).astype(np.uint8)
        for _ in range(8):  # clutter
            centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            cv2.circle(image, centre, int(rng.integers(10, 70)), int(rng.integers(0, 255)), -1)
        pasted: list[dict[str, Any]] = []
        with_target = rng.random() < 0.35
        for k in range(int(rng.integers(0, 4)) if not with_target else int(rng.integers(1, 4))):
            side = int(rng.integers(90, min(200, height // 3)))
            for _ in range(100):
                x, y = int(rng.integers(0, width - side)), int(rng.integers(0, height - side))
                if all(abs(x - p["x"]) > max(side, p["side"]) or abs(y - p["y"]) > max(side, p["side"])
                       for p in pasted):
                    break
            else:
                continue
            is_target = with_target and k == 0
            if is_target:
                face = cv2.resize(portrait, (side, side), interpolation=cv2.INTER_AREA)
                face = np.clip(face.astype(np.float32) * rng.uniform(0.85, 1.15), 0, 255).astype(np.uint8)
            else:
                face = cv2.resize(faces[int(rng.integers(0, 100))], (side, side), interpolation=cv2.INTER_CUBIC)
            image[y:y + side, x:x + side] = face
            pasted.append({"x": x, "y": y, "side": side, "target": is_target})
        name = f"photo-{index:04d}.png"
        cv2.imwrite(str(folder / name), cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
        truth[name] = pasted
    return truth


def _box_in(image: np.ndarray, part: np.ndarray) -> tuple[int, int]:
    """Where ``part`` (cut from ``image``) sits in it: (row, column)."""
    found = cv2.matchTemplate(image, part, cv2.TM_SQDIFF)
    _, _, where, _ = cv2.minMaxLoc(found)
    return where[1], where[0]


def score(found: dict[str, dict[str, Any]], truth: dict[str, list[dict[str, Any]]]) -> dict[str, float]:
    """Precision and recall of the faces detected, and of the photos flagged as holding the target."""
    pasted = hits = detected = true_boxes = 0
    targets = targets_found = flagged = flagged_right = 0
    for name, faces in truth.items():
        result = found.get(name, {"target": False, "faces": []})
        boxes = [f["box"] for f in result["faces"]]
        detected += len(boxes)
        for box in boxes:
            true_boxes += any(_same(box, p) for p in faces)
        for p in faces:
            match = [f for f in result["faces"] if _same(f["box"], p)]
            hits += bool(match)
            pasted += 1
            if p["target"]:
                targets += 1
                targets_found += any(f["similarity"] >= THRESHOLD for f in match)
        has_target = any(p["target"] for p in faces)
        flagged += result["target"]
        flagged_right += result["target"] and has_target
    return {"face_recall": hits / max(pasted, 1), "face_precision": true_boxes / max(detected, 1),
            "target_faces_found": targets_found / max(targets, 1),
            "target_photo_precision": flagged_right / max(flagged, 1),
            "pasted_faces": pasted, "target_faces": targets}


def _same(box: list[int], pasted: dict[str, Any]) -> bool:
    x, y, w, h = box
    side = pasted["side"]
    return abs(x + w / 2 - pasted["x"] - side / 2) < side / 3 and abs(y + h / 2 - pasted["y"] - side / 2) < side / 3


def parse(lines: list[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for line in lines:
        key, value = line.split("\t")
        out[Path(json.loads(key)).name] = json.loads(value)
    return out


def reference(photos: list[Path]) -> tuple[dict[str, dict[str, Any]], float]:
    """The same detection and comparison in this one process, and its seconds."""
    job = _job_module()
    start = time.perf_counter()
    out = {}
    for path in photos:
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        faces = [{"box": list(box), "similarity": round(job.similarity(gray[box[1]:box[1] + box[3],
                                                                          box[0]:box[0] + box[2]]), 3)}
                 for box in job.detect(gray)]
        if faces:
            faces.sort(key=lambda f: f["box"])
            out[path.name] = {"target": any(f["similarity"] >= THRESHOLD for f in faces), "faces": faces}
    return out, time.perf_counter() - start


def measure(photos_dir: Path, truth: dict[str, list[dict[str, Any]]], nodes: list[int],
            work: Path) -> list[dict[str, object]]:
    photos = sorted(photos_dir.iterdir())
    rows: list[dict[str, object]] = []
    expected, seconds = reference(photos)
    rows.append({"run": "one process", "nodes": 0, "slots": 1, "seconds": round(seconds, 2),
                 **_rounded(score(expected, truth)), "same_as_reference": True})
    out = work / "embedded-out"
    start = time.perf_counter()
    ran = subprocess.run([sys.executable, "-m", "dynamr", "run", str(JOB), str(photos_dir), "-o", str(out)],
                         capture_output=True, text=True)
    took = time.perf_counter() - start
    if ran.returncode != 0:
        raise SystemExit(f"the embedded run failed:\n{ran.stdout}\n{ran.stderr}")
    found = parse([line for p in sorted(out.glob("part-*")) for line in p.read_text().splitlines()])
    rows.append({"run": "embedded (dynamr run)", "nodes": 1, "slots": 0, "seconds": round(took, 2),
                 **_rounded(score(found, truth)), "same_as_reference": _agree(found, expected)})
    for k in nodes:
        with cluster(work / f"nodes{k}", k, 1) as local:
            upload(local, photos, "/photos")
            name = f"faces-{k}"
            _, took = run_job(local, name, JOB, ["/photos"], f"/out/{name}", reducers=k)
            with Client(local.seeds, local.secret, timeout=60) as client:
                fs = client.files()
                lines = [line for entry in fs.ls(f"/out/{name}") if entry.name.startswith("part-")
                         for line in fs.read_bytes(f"/out/{name}/{entry.name}").decode().splitlines()]
        found = parse(lines)
        rows.append({"run": f"{k} node(s)", "nodes": k, "slots": 1, "seconds": round(took, 2),
                     **_rounded(score(found, truth)), "same_as_reference": _agree(found, expected)})
        print(rows[-1], flush=True)
    return rows


def _agree(found: dict[str, dict[str, Any]], expected: dict[str, dict[str, Any]]) -> bool:
    """The job found the same faces, with the same verdicts, as the single process (crops aside)."""
    def plain(result: dict[str, dict[str, Any]]) -> dict[str, Any]:
        return {k: (v["target"], [(f["box"], f["similarity"]) for f in v["faces"]]) for k, v in result.items()}

    return plain(found) == plain(expected)


def _rounded(scores: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 3) for k, v in scores.items()}


def plot(rows: list[dict[str, object]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.6), gridspec_kw={"width_ratios": [3, 2]})
    runs = [r for r in rows if int(str(r["nodes"])) and int(str(r["slots"]))]
    left.plot([int(str(r["nodes"])) for r in runs], [float(str(r["seconds"])) for r in runs], marker="o",
              label="dynamr, nodes x 1 task slot")
    single = next(float(str(r["seconds"])) for r in rows if r["run"] == "one process")
    left.axhline(single, color="grey", linestyle=":", label="one process")
    embedded = next(r for r in rows if str(r["run"]).startswith("embedded"))
    left.scatter([2], [float(str(embedded["seconds"]))], marker="s", color="#d99a1e", zorder=3,
                 label="embedded dynamr run (1 node, a slot per core)")
    left.set(xlabel="worker nodes", ylabel="seconds (submission to end)", title="Face detection job time")
    left.set_xticks([int(str(r["nodes"])) for r in runs])
    left.set_ylim(bottom=0)
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    measures = ("face_recall", "face_precision", "target_faces_found", "target_photo_precision")
    labels = ("faces found\n(recall)", "detections that\nare faces", "target faces\nfound",
              "flagged photos\nwith target")
    shown = [r for r in rows if r["run"] in ("embedded (dynamr run)", "3 node(s)")] or rows[1:2]
    width = 0.8 / len(shown)
    for i, r in enumerate(shown):
        right.bar([j + i * width for j in range(len(measures))], [float(str(r[m])) for m in measures], width,
                  label=str(r["run"]))
    right.set_xticks([j + width * (len(shown) - 1) / 2 for j in range(len(measures))], labels, fontsize=8)
    right.set(ylim=(0, 1.05), ylabel="share", title="Against the composed photos' ground truth")
    right.axhline(0.9, color="black", linestyle=":", linewidth=1)
    right.legend(fontsize=8, loc="lower left")
    right.grid(alpha=0.3, axis="y")
    save(fig, path, title)


def main() -> None:
    parser = arguments(__doc__, HERE)
    parser.add_argument("--photos", type=int, default=160)
    parser.add_argument("--nodes", default="1,2,3,4")
    args = parser.parse_args()
    count, (width, height) = (12, (640, 480)) if args.quick else (args.photos, (1024, 768))
    nodes = [3] if args.quick else [int(n) for n in args.nodes.split(",")]
    photos = args.data / f"faces-{count}-{width}x{height}" / "photos"
    truth = compose(photos, count, width, height)
    with tempfile.TemporaryDirectory(prefix="dynamr-faces-") as work:
        rows = measure(photos, truth, nodes, Path(work))
    write_rows(args.out, "results", rows)
    (args.out / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    plot(rows, args.out / "faces.png", f"{count} composed photos of {width}x{height}; {machine()}")
    for row in rows:
        if float(str(row["target_faces_found"])) < 0.9 or not row["same_as_reference"]:
            raise SystemExit(f"{row['run']}: {row}")
    print(f"wrote {args.out / 'results.csv'} and {args.out / 'faces.png'}")


if __name__ == "__main__":
    main()
