"""How much a human changed a drafted reply: Levenshtein distance on characters.

The outbox logs it for every reply, so the drafts' quality can be followed over time (a draft
sent unchanged scores 0). Both texts are compared in Unicode NFC form: "é" typed as one code
point and "é" as "e" plus a combining accent are the same text to the reader, and an editor
or browser that normalises differently must not count as a human edit.

Time is O(len(a) * len(b)) and memory O(min(len(a), len(b))): one row of the table over the
shorter text. Each row is computed with numpy, using the identity that the in-row recurrence
d[j] = min(t[j], d[j-1] + 1) equals min over i <= j of (t[i] - i) + j, a running minimum; a
2,000-character reply against its edited version takes milliseconds, not seconds. A shared
prefix and suffix (most edits are local) are removed first.
"""

from __future__ import annotations

import unicodedata

import numpy as np


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def _trim_common(a: str, b: str) -> tuple[str, str]:
    start = 0
    limit = min(len(a), len(b))
    while start < limit and a[start] == b[start]:
        start += 1
    end = 0
    while end < limit - start and a[-1 - end] == b[-1 - end]:
        end += 1
    return a[start : len(a) - end], b[start : len(b) - end]


def edit_distance(a: str, b: str) -> int:
    """Insertions, deletions and substitutions of characters (code points after NFC) to turn a into b."""
    a, b = _trim_common(unicodedata.normalize("NFC", a), unicodedata.normalize("NFC", b))
    if len(a) < len(b):
        a, b = b, a  # the row runs over the shorter text
    if not b:
        return len(a)
    row_text = _code_points(b)
    offsets = np.arange(len(b) + 1, dtype=np.int64)
    row = offsets.copy()  # distances from the empty prefix of a
    for i, char in enumerate(_code_points(a), start=1):
        # substitution (or match) from the diagonal, deletion from above
        candidates = np.empty_like(row)
        candidates[0] = i
        np.minimum(row[:-1] + (row_text != char), row[1:] + 1, out=candidates[1:])
        # insertion from the left, resolved for the whole row at once by a running minimum
        row = np.minimum.accumulate(candidates - offsets) + offsets
    return int(row[-1])


def normalised_edit_distance(a: str, b: str) -> float:
    """Edit distance divided by the longer text's length: 0 means unchanged, 1 means rewritten."""
    longest = max(len(unicodedata.normalize("NFC", a)), len(unicodedata.normalize("NFC", b)))
    return edit_distance(a, b) / longest if longest else 0.0
