"""Fit tool output into the observation budget, saying what was cut (a model must know it missed text)."""

from __future__ import annotations

NOTE = ("\n[... {cut} characters cut from the middle of this output ({total} in all); "
        "narrow the command (grep, head, tail, sed -n) to see them ...]\n")


def truncate_middle(text: str, limit: int) -> str:
    """Keep the head and the tail of `text` within `limit` characters; the middle says how much went."""
    if len(text) <= limit:
        return text
    note_len = len(NOTE.format(cut=len(text), total=len(text)))
    keep = max(limit - note_len, 0)
    head, tail = text[: keep // 2], text[len(text) - (keep - keep // 2):] if keep - keep // 2 else ""
    return head + NOTE.format(cut=len(text) - len(head) - len(tail), total=len(text)) + tail
