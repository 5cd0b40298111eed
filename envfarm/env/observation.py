"""Fit tool output into the observation budget, saying what was cut (a model must know it missed text)."""

from __future__ import annotations


def truncate_middle(text: str, limit: int) -> str:
    """Keep the head and the tail of `text` within `limit` characters; the middle says how much went."""
    if len(text) <= limit:
        return text
    note_room = 120
    keep = max(limit - note_room, 0)
    head, tail = text[: keep // 2], text[len(text) - (keep - keep // 2):] if keep else ""
    cut = len(text) - len(head) - len(tail)
    note = (f"\n[... {cut} characters cut from the middle of this output ({len(text)} in all); "
            "narrow the command (grep, head, tail, sed -n) to see them ...]\n")
    return head + note + tail
