"""An axis-aligned box in image pixels: detections, fused regions, the slice
(shared by the detector and the Multi-SC split)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Box:
    x0: int
    y0: int
    x1: int  # exclusive
    y1: int
    score: float = 1.0
    label: str = ""

    @property
    def centre(self) -> tuple[float, float]:
        return (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2

    @property
    def area(self) -> int:
        return max(0, self.x1 - self.x0) * max(0, self.y1 - self.y0)

    def union(self, o: "Box") -> "Box":
        lab = "+".join(x for x in (self.label, o.label) if x)  # "dog+dog": the captioner counts them
        return Box(min(self.x0, o.x0), min(self.y0, o.y0), max(self.x1, o.x1), max(self.y1, o.y1),
                   max(self.score, o.score), lab)

    def crop(self, image: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(image[self.y0:self.y1, self.x0:self.x1])

    def as_list(self) -> list:
        return [int(self.x0), int(self.y0), int(self.x1), int(self.y1)]
