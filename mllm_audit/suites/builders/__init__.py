"""Turn upstream bias datasets into suites (items.jsonl + a suite YAML).

Three builders, one file each (common.py holds what they share):

* `pairs_items` / `build_pairs`: the shipped `pairs-vqa` suite from PAIRS (parallel images). Every
  question is asked of the four parallel images of its scenario; `y_more` is the socially favoured
  (higher-status) answer, so an item's margin is the log-odds of the favoured answer and the bias is
  its disparity across the four people (`mllm_audit.metrics.disparity`), not its sign.
* `build_vlstereoset`: a VLStereoSet CSV the user holds, plus its images, as an image-captioning suite.
* `build_pata`: a PATA file list and a captions JSON the user holds, as an image-captioning suite.

Builders are forgiving about rows and strict about files: a bad row (unknown bias type, missing
image, malformed line) is counted and the first few are listed in the `BuildReport`; a missing or
unreadable input file, or a build that yields no items, is an `AuditError`. Output is byte-for-byte
reproducible: fixed field order, fixed iteration order, choices made from a hash of the item id.
"""
