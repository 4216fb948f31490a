"""The drill outbox: messages are written to the run's artifacts instead of being sent, so a drill
shows exactly what would have gone out, to whom, without any account."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from breakglass.integrations.notify.base import ChannelRules, Message

RULES = ChannelRules(kind="outbox")  # a drill's: written to the run's artifacts


class OutboxTransport:
    kind = "outbox"

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, to: str, message: Message) -> Path:
        return self.folder / f"{hashlib.sha256((to + message.key).encode()).hexdigest()[:20]}.json"

    def send(self, to: str, message: Message) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(to, message)
        data = json.dumps({"to": to, "key": message.key, "subject": message.subject, "text": message.text,
                           "attachments": sorted(message.attachments)}, indent=2).encode()
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return path.name

    def find(self, to: str, message: Message) -> str | None:
        path = self._path(to, message)
        return path.name if path.exists() else None
