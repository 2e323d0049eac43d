"""PURE: conversations and verdicts to things people read.

    ladder    a conversation as a text ladder, one row per packet
    svg       the same as an SVG sequence diagram
    annotate  a capture rewritten as pcapng with verdicts as packet comments, every other block kept
"""
