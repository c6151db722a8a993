"""Line numbers of fields in a price file (JSON or TOML), for one-line error messages.

Why: neither ``json`` nor ``tomllib`` reports where a *value* sits once it parsed, and a
price file's error must name the line the user has to edit (the standards: file, line,
field). The file already parsed, so its keys are where the text says: each model's span
starts at its ``[[models]]`` header (TOML) or its ``name`` (JSON, inline TOML), and a
key path such as ``prices.flex.input`` is found by searching for each key in turn inside
that span. Works for JSON objects, TOML tables (``[models.prices.flex]``), dotted keys
(``prices.flex.input = 1``) and inline tables. Best effort by design: when a key cannot
be found, the nearest line found so far is returned, never a made-up one.
"""
from __future__ import annotations

import re
from bisect import bisect_right

__all__ = ["PriceFileLocator"]


def _key_pattern(key: str) -> re.Pattern[str]:
    # the key as a JSON string or a TOML bare/quoted key, followed by what ends a key
    k = re.escape(key)
    return re.compile(rf"""(?<![\w-])(?:"{k}"|'{k}'|{k})\s*[:=.\]]""")


class PriceFileLocator:
    """Finds the 1-based line of ``models[i]`` and of key paths inside it."""

    def __init__(self, text: str, names: list[str | None]) -> None:
        self.text = text
        self._nl = [m.start() for m in re.finditer("\n", text)]
        self.starts = self._model_starts(names)

    def line_at(self, offset: int) -> int:
        return bisect_right(self._nl, offset - 1) + 1 if offset > 0 else 1

    def _model_starts(self, names: list[str | None]) -> list[int]:
        headers = [m.start() for m in re.finditer(r"(?m)^\s*\[\[\s*models\s*\]\]", self.text)]
        if len(headers) == len(names) and headers:
            return headers
        starts: list[int] = []
        pos = 0
        models_key = re.search(r"""(?:"models"|\bmodels)\s*[:=]""", self.text)
        if models_key:
            pos = models_key.end()
        for name in names:
            found = -1
            if name:
                for needle in (f'"{name}"', f"'{name}'", name):
                    found = self.text.find(needle, pos)
                    if found >= 0:
                        break
            if found < 0:  # no name to anchor on: the next object after the previous model
                brace = self.text.find("{", pos)
                found = brace if brace >= 0 else pos
            starts.append(found)
            pos = found + 1
        return starts

    def model_line(self, i: int) -> int | None:
        if not 0 <= i < len(self.starts):
            return None
        return self.line_at(self.starts[i])

    def key_line(self, i: int, *path: str) -> int | None:
        """Line of the last key of ``path`` found inside model ``i``'s span (or of the model)."""
        if not 0 <= i < len(self.starts):
            return None
        # a TOML table header may come before the name ([[models]] then name = ...): search
        # from the span start; in JSON the span starts at the name, inside the object
        lo = self.starts[i]
        hi = self.starts[i + 1] if i + 1 < len(self.starts) else len(self.text)
        at = lo
        for key in path:
            m = _key_pattern(key).search(self.text, at, hi)
            if m is None:
                break
            at = m.start()
        return self.line_at(at)
