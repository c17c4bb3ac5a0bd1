"""Face detection (seed 000): find the faces in a folder of photos, keep their crops as intermediate data,
and report each photo's faces with how much each looks like a target portrait.

    dynamr run examples/face_detection.py photos/ -o faces-out [-D THRESHOLD=0.65]

Each map reads one whole image file (PNG, JPEG, ...), finds faces with OpenCV's bundled Haar cascade and
emits each face's box and its crop (PNG bytes: the crops are the intermediate data, kept in the store
between the phases). Each reduce gets one photo's faces, compares each crop with the target portrait
(the astronaut's face in scikit-image's ``astronaut.png``) and writes one line per photo with a face:
``"path" TAB {"target": true if a face scores at least THRESHOLD, "faces": [{"box": [x, y, w, h],
"similarity": s, "crop_png_base64": ... (matches only)}]}``.

Similarity is the best normalized cross-correlation of the target, at a few scales, inside the crop, both
histogram-equalized (1: the same picture). Needs ``opencv-python-headless`` (4.x: the 5.x wheels dropped
the cascades) and ``scikit-image``.
"""

import base64
import functools

import cv2
import numpy as np

from dynamr.mapreduce import MRJob

# one thread per task: the cluster's task slots are the parallelism (OpenCV would otherwise spread every
# detection over all the cores, and the slots of a node would fight over them)
cv2.setNumThreads(1)

CASCADE = "haarcascade_frontalface_default.xml"
#: side of the square a crop is compared at, and the target's sides within it
CROP = 80
SCALES = (56, 62, 68, 74)


@functools.cache
def cascade() -> "cv2.CascadeClassifier":
    return cv2.CascadeClassifier(cv2.data.haarcascades + CASCADE)


def detect(gray: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Boxes (x, y, w, h) of the faces in a grayscale image."""
    found = cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(48, 48))
    return [tuple(int(v) for v in box) for box in found]


@functools.cache
def target_face() -> np.ndarray:
    """The target portrait: the largest face in scikit-image's astronaut.png, grayscale."""
    from skimage import data

    gray = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)
    x, y, w, h = max(detect(gray), key=lambda box: box[2] * box[3])
    return gray[y:y + h, x:x + w]


@functools.cache
def _templates() -> tuple[np.ndarray, ...]:
    return tuple(cv2.equalizeHist(cv2.resize(target_face(), (s, s), interpolation=cv2.INTER_AREA)) for s in SCALES)


def similarity(crop: np.ndarray) -> float:
    """How much a grayscale face crop looks like the target portrait (-1 to 1)."""
    face = cv2.equalizeHist(cv2.resize(crop, (CROP, CROP), interpolation=cv2.INTER_AREA))
    return max(float(cv2.matchTemplate(face, t, cv2.TM_CCOEFF_NORMED).max()) for t in _templates())


class FaceDetection(MRJob):
    INPUT_FORMAT = "whole_file"

    def mapper(self, path, data):
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
        if image is None:
            self.increment_counter("faces", "files that are not images")
            return
        self.increment_counter("faces", "photos")
        for x, y, w, h in detect(image):
            _, png = cv2.imencode(".png", image[y:y + h, x:x + w])
            self.increment_counter("faces", "faces found")
            yield path, [x, y, w, h, png.tobytes()]

    def reducer(self, path, faces):
        threshold = float(self.options.get("THRESHOLD", "0.65"))
        found = []
        for x, y, w, h, png in faces:
            crop = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
            score = similarity(crop)
            face = {"box": [x, y, w, h], "similarity": round(score, 3)}
            if score >= threshold:
                face["crop_png_base64"] = base64.b64encode(png).decode()
                self.increment_counter("faces", "faces like the target")
            found.append(face)
        found.sort(key=lambda face: face["box"])
        yield path, {"target": any(f["similarity"] >= threshold for f in found), "faces": found}
