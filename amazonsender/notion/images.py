"""Which URL an image block is shown from in the email: the seam between the importer and the media store.

An external image keeps its URL. A Notion-hosted image (`type: "file"`) has
a signed URL that expires an hour after it was read, so an email pointing
at it breaks: `stored_images` downloads it once (media.fetch_image: size
capped, type checked), keeps it in the media table by content hash, and
shows it from APP_BASE_URL/media/<sha256>.<ext>. An image that cannot be
downloaded is left out and listed in the import's skipped blocks with the
reason. A test send (`signed_images`) stores nothing: it shows the signed
URL, which lasts longer than the test.

Any object with `__call__(block) -> str | None` and a `reasons` dict
(block id -> why its image was left out) can take this one's place.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import store
from ..media import ImageError, fetch_image, media_url, without_query

# Without a keeper, a Notion-hosted image is left out with this reason.
NOT_WIRED = "Notion-hosted image: no media store"


class ImageUrls:
    """`render_page`'s image_url: the URL an image block is shown from, or
    None. `keep(url) -> url` turns a Notion-hosted file's signed URL into
    the one the email uses (raising media.ImageError when it cannot)."""

    def __init__(self, keep: Callable[[str], str] | None = None) -> None:
        self.keep = keep
        self.reasons: dict[str, str] = {}

    def __call__(self, block: dict) -> str | None:
        image = block.get("image") if isinstance(block, dict) else None
        if not isinstance(image, dict):
            return None
        kind = image.get("type")
        if kind == "external" and isinstance(image.get("external"), dict):
            return image["external"].get("url")
        if kind != "file":
            return None
        block_id = block.get("id")
        block_id = block_id[:100] if isinstance(block_id, str) else ""
        url = image.get("file", {}).get("url") if isinstance(image.get("file"), dict) else None
        if self.keep is None or not isinstance(url, str):
            self.reasons[block_id] = NOT_WIRED if self.keep is None else "Notion-hosted image without a URL"
            return None
        try:
            return self.keep(url)
        except ImageError as exc:
            self.reasons[block_id] = f"Notion-hosted image not downloaded: {exc.reason}"
            return None


def stored_images(pool, base_url: str, *, fetch=fetch_image) -> ImageUrls:
    """Notion-hosted images downloaded, stored, and shown from /media/."""

    def keep(url: str) -> str:
        image = fetch(url)
        with pool.connection() as conn:
            store.save_media(conn, image.sha256, image.content_type, image.data, without_query(url))
        return media_url(base_url, image)

    return ImageUrls(keep)


def signed_images() -> ImageUrls:
    """Notion-hosted images shown from their signed URL: for a test send, which stores nothing."""
    return ImageUrls(lambda url: url)
