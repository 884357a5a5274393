"""Files out: `send_file` sends a file from the file tools' roots into the conversation.

The file passes every refusal of the file tools (`tools.files.FileRoots`: Ganglion's
own files, `..`, paths outside the roots) and the size cap of media
(`matrix.max_media_bytes`). It is copied into the conversation's inbox first (counted in
the data directory's quota): what goes out is what the model chose at that moment, and
it stays there to be downloaded again. The copy travels as the tool result's `sent`
attachment; the model loop stores it with the tool's message and queues it in the
outbox in one transaction (`threads.turn`), so a restart in between neither loses nor
doubles it, and the interface delivers it: Matrix as an `m.image` or `m.file` (encrypted
in an encrypted room), the web chat as an inline image or a download link.
"""

from __future__ import annotations

import mimetypes
import os
import stat
from pathlib import Path

from ganglion.config import FilesToolConfig
from ganglion.inbox import FileInbox, InboxError
from ganglion.tools.files import FileAccessError, FileRoots, run_safely
from ganglion.tools.registry import Tool, ToolContext, ToolOutput, tool
from ganglion.transcript import attachment_kind, describe_size

__all__ = ["sending_tools"]

# The interfaces that can show a file; a system thread (reminders, the heartbeat) has
# no one to send it to.
DELIVERING = frozenset({"web", "matrix"})


def sending_tools(
    config: FilesToolConfig, data_dir: Path, inbox: FileInbox, *, limit: int
) -> list[Tool]:
    """`send_file`, over the file tools' roots (`config`; default: `data_dir`)."""
    roots = FileRoots(config.roots or [data_dir], config.owned_files(data_dir))

    @tool
    async def send_file(ctx: ToolContext, path: str, name: str | None = None) -> ToolOutput:
        """Send a file to the owner in this conversation: a picture (PNG, JPEG, GIF,
        WebP) is shown, any other file can be downloaded. `name` is what it is called
        there (default: its own name)."""
        if ctx.interface not in DELIVERING:
            raise FileAccessError("this conversation has no one to send a file to")
        target = roots.resolve(path)

        def read() -> bytes:
            with target.open() as directory:
                st = directory.stat(target.relative)
                if not stat.S_ISREG(st.st_mode):
                    raise FileAccessError(f"{path!r} is not a regular file")
                if st.st_size > limit:
                    raise FileAccessError(
                        f"{path!r} is {describe_size(st.st_size)}; at most "
                        f"{describe_size(limit)} can be sent (matrix.max_media_bytes)"
                    )
                data, _ = directory.read_bytes(target.relative, limit=limit + 1)
            return data

        data = await run_safely(read)
        shown = name or os.path.basename(target.relative) or "file"
        mimetype = mimetypes.guess_type(shown)[0] or "application/octet-stream"
        try:
            sent = await inbox.store(ctx.thread_id, shown, mimetype, data)
        except InboxError as exc:
            raise FileAccessError(str(exc)) from None
        what = "picture" if attachment_kind(mimetype) == "image" else "file"
        return ToolOutput(
            f"sent the {what} {sent.name} ({mimetype}, {describe_size(sent.size)}) to the "
            f"owner; a copy is kept as {sent.path}",
            sent,
        )

    return [send_file]
