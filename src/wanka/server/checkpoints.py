"""What a job's checkpoint directory holds, for its owner's eyes: names, sizes and times of its
entries, never their contents.

The directory (``checkpoints/JOB`` on the backend's shared path) is the server's creation and sits
in a directory only the server may write, so its tenant can fill it but not swap it for a link;
entries are listed without following links (a link shows as one, its target never read). Bounded:
at most ``scan`` entries are looked at and the newest ``shown`` are returned.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

MAX_SCAN = 10_000  # entries looked at; a directory with more says so
SHOWN = 20


@dataclass
class Entry:
    name: str
    kind: str  # file, directory, link or other
    bytes: int  # 0 for all but files
    modified: float  # UNIX seconds


@dataclass
class Listing:
    entries: list[Entry] = field(default_factory=list)  # the newest first
    count: int = 0  # entries looked at
    bytes: int = 0  # of the files among them
    more: bool = False  # the directory holds more than MAX_SCAN entries
    exists: bool = False


def listing(directory: str, shown: int = SHOWN, scan: int = MAX_SCAN) -> Listing:
    """The newest ``shown`` entries of ``directory`` and totals over at most ``scan`` of them. An
    absent directory (the job never wrote one), or one that is a link, lists nothing."""
    out = Listing()
    try:
        if stat.S_ISLNK(os.lstat(directory).st_mode):
            return out
        it = os.scandir(directory)
    except OSError:
        return out
    out.exists = True
    seen: list[Entry] = []
    with it:
        for entry in it:
            if len(seen) >= scan:
                out.more = True
                break
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            kind = (
                "link"
                if stat.S_ISLNK(st.st_mode)
                else "directory"
                if stat.S_ISDIR(st.st_mode)
                else "file"
                if stat.S_ISREG(st.st_mode)
                else "other"
            )
            size = st.st_size if kind == "file" else 0
            # a name is bytes on disk: one that is not UTF-8 is shown with U+FFFD in its place
            name = os.fsencode(entry.name).decode("utf-8", "replace")
            seen.append(Entry(name, kind, size, st.st_mtime))
    out.count, out.bytes = len(seen), sum(e.bytes for e in seen)
    out.entries = sorted(seen, key=lambda e: (-e.modified, e.name))[:shown]
    return out
