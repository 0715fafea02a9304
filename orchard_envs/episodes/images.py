"""Screenshots in episodes: PNG files beside the episode, referenced from the messages by path and hash.

A message never inlines an image. A harness that shows the model a screenshot puts an image reference in
the message's content: `{"type": "image_ref", "path": "images/ab/<sha256>.png", "sha256": "<sha256>"}`
(`image_part`), and the PNG goes to a content-addressed cache (`ORCHARD_IMAGE_CACHE`, else a private
folder under the temp dir; files are written whole, to a temporary name, then renamed). At call time
`to_openai` turns the references into OpenAI `image_url` parts (data URLs) for multimodal models. When an
episode is stored, `save_images` copies its images from the cache into the folder beside the episode
file, again atomically, before the episode's line is appended: a stored line never names a missing
image. `image_paths` lists an episode's images as absolute paths (what `load_dataset(images=True)`
returns as `datasets.Image` values).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from orchard_envs.errors import OrchardError

CACHE_ENV = "ORCHARD_IMAGE_CACHE"
IMAGE_REF = "image_ref"


def cache_dir() -> Path:
    """The folder images wait in until their episode is stored (created private, 0700)."""
    folder = Path(os.environ.get(CACHE_ENV) or Path(tempfile.gettempdir()) / f"orchard-images-{os.getuid()}")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def encode_png(image: np.ndarray) -> bytes:
    """An H x W x 3 uint8 array as PNG (fast compression: screenshots are many)."""
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(out, format="PNG", compress_level=1)
    return out.getvalue()


def relative_path(sha256: str) -> str:
    """Where an image lives, relative to the folder of its episode file (and of the cache)."""
    return f"images/{sha256[:2]}/{sha256}.png"


def _write_atomically(target: Path, data: bytes) -> None:
    if target.exists():
        return  # content-addressed: the same name holds the same bytes
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".img.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def image_part(image: np.ndarray | bytes) -> dict[str, str]:
    """A content part referencing this screenshot (an array or PNG bytes), cached until stored."""
    png = image if isinstance(image, bytes) else encode_png(image)
    sha = hashlib.sha256(png).hexdigest()
    path = relative_path(sha)
    _write_atomically(cache_dir() / path, png)
    return {"type": IMAGE_REF, "path": path, "sha256": sha}


def image_refs(messages: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The image references in the messages, in order."""
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            yield from (part for part in content if isinstance(part, dict) and part.get("type") == IMAGE_REF)


def read_image(part: dict[str, Any], folder: Path | None = None) -> bytes:
    """The PNG of a reference, from `folder` (an episode's) or the cache; checked against its hash."""
    sha = str(part.get("sha256", ""))
    for base in ([folder] if folder is not None else []) + [cache_dir()]:
        candidate = base / relative_path(sha)
        if candidate.is_file():
            data = candidate.read_bytes()
            if hashlib.sha256(data).hexdigest() == sha:
                return data
    raise OrchardError(f"image {sha[:12]} is neither beside the episode nor in the cache ({cache_dir()})")


def save_images(messages: list[dict[str, Any]], folder: str | os.PathLike[str]) -> int:
    """Copy the episode's images from the cache into `folder` (the episode file's); how many were new."""
    folder = Path(folder)
    written = 0
    for part in image_refs(messages):
        target = folder / relative_path(str(part["sha256"]))
        if not target.exists():
            _write_atomically(target, read_image(part))
            written += 1
    return written


def image_paths(messages: list[dict[str, Any]], folder: str | os.PathLike[str]) -> list[str]:
    """Absolute paths of the episode's images beside its file, in message order."""
    return [str(Path(folder).resolve() / relative_path(str(part["sha256"]))) for part in image_refs(messages)]


def to_openai(messages: list[dict[str, Any]], keep_last: int | None = None) -> list[dict[str, Any]]:
    """The messages with image references as OpenAI `image_url` data-URL parts; only the last `keep_last`
    images are sent (older ones become a short text part), to bound the prompt."""
    total = sum(1 for _ in image_refs(messages))
    skip = 0 if keep_last is None else max(0, total - keep_last)
    out, seen = [], 0
    for message in messages:
        content = message.get("content")
        if not isinstance(content, list):
            out.append(message)
            continue
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == IMAGE_REF:
                seen += 1
                if seen <= skip:
                    parts.append({"type": "text", "text": "[an earlier screenshot, omitted]"})
                    continue
                url = "data:image/png;base64," + base64.b64encode(read_image(part)).decode("ascii")
                parts.append({"type": "image_url", "image_url": {"url": url}})
            else:
                parts.append(part)
        out.append({**message, "content": parts})
    return out
