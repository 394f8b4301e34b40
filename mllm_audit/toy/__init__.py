"""The toy world: synthetic scenes with a planted, known bias, and the tiny BLIP-2 trained on them.

`world` draws the scenes and writes the `toy` suite; `train` trains the model that ships as
`adapters/toy-model`, and, warm-started from it with world v3's rows (`ike_window`: IKE-window rows,
`ike_window.py`; paraphrase words and image-position targets, `v3_rows.py`), world v3's
`adapters/toy-v3-model` (card `toy-v3`). Detection and every editor are checked against this ground truth.
`unified` builds the toy unified world v2 (`adapters/toy-janus-v2*`, suite `gen-toy-v2`).
"""

from __future__ import annotations

__all__ = ["train", "unified", "world"]
