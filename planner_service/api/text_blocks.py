"""Blocks between literal tags in chat texts (`<chat_history>...</chat_history>`,
`<attached_files>...</attached_files>`), found in linear time: a chat message has no length
limit, and a lazy regex over a text of many opening tags and no closing one is quadratic."""

from __future__ import annotations

MAX_BLOCK = 50_000  # a block longer than this is no UI's (they are short lists and histories)


def blocks(text: str, tag: str) -> list[tuple[int, int, str]]:
    """(start, end, inner) of each `<tag>...</tag>` (case-insensitive), left to right; `end` is past
    the closing tag. An opening tag with no closing one ends the search."""
    lowered = text.lower()
    opening, closing = f"<{tag.lower()}>", f"</{tag.lower()}>"
    found: list[tuple[int, int, str]] = []
    at = lowered.find(opening)
    while at >= 0:
        close = lowered.find(closing, at + len(opening))
        if close < 0:
            break
        found.append((at, close + len(closing), text[at + len(opening):close]))
        at = lowered.find(opening, close + len(closing))
    return found


def without_blocks(text: str, tag: str) -> tuple[str, list[str]]:
    """The text with each `<tag>` block (and the whitespace after it) removed, and the blocks' insides
    (those of at most MAX_BLOCK characters)."""
    found = blocks(text, tag)
    if not found:
        return text, []
    kept, inner, last = [], [], 0
    for start, end, body in found:
        kept.append(text[last:start])
        if len(body) <= MAX_BLOCK:
            inner.append(body)
        last = end
        while last < len(text) and text[last].isspace():
            last += 1
    kept.append(text[last:])
    return "".join(kept), inner
