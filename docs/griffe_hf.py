"""Griffe extension for the API pages: reads nlpkd's Hugging Face-style docstrings cleanly.

HF docstrings write parameter types as ``name (`float`, *optional*, defaults to `2.0`):`` and link names as
[`create_student`] or [`~transformers.Trainer`]. Griffe's Google parser reads them without warnings but shows
the markup literally; this rewrites each docstring before it is parsed, so the type reads `float` (the default
is shown from the signature) and the links read as code.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

# `name (type, *optional*, defaults to X):` at the start of an entry of an Args/Returns/Raises section.
_ENTRY = re.compile(r"^(?P<head>\s+\**\w+ )\((?P<type>[^\n]*?)\):", re.MULTILINE)
# [`name`] and [`~package.module.Name`] (HF doc-builder links) -> `name` / `Name`.
_LINK = re.compile(r"\[`~?(?:[\w.]*\.)?(?P<name>[\w]+)`\](?!\()")


def _clean_type(text: str) -> str:
    # Split on the commas between the parts, not those inside `dict[int, int]`.
    parts = [p.strip() for p in re.split(r",\s*(?![^\[]*\])", _LINK.sub(r"\g<name>", text))]
    kept = [p for p in parts if p and p != "*optional*" and not p.startswith("defaults to")]
    return ", ".join(kept).replace("`", "").replace(" or ", " | ")


def clean_docstring(text: str) -> str:
    def entry(match: re.Match[str]) -> str:
        cleaned = _clean_type(match.group("type"))
        return f"{match.group('head')}({cleaned}):" if cleaned else f"{match.group('head').rstrip()}:"

    return _LINK.sub(lambda m: f"`{m.group('name')}`", _ENTRY.sub(entry, text))


class HFDocstrings(griffe.Extension):
    """Rewrites every docstring of the loaded objects (see the module docstring)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = clean_docstring(obj.docstring.value)
