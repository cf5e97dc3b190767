"""Which URL an image block is shown from in the email: the seam between the importer and the media store.

An external image keeps its URL. A Notion-hosted image (`type: "file"`)
has a signed URL that expires an hour after it was read, so an email
pointing at it breaks: it needs the media store (issue 16, item 4), which
downloads it once and serves it from APP_BASE_URL/media/. Until that store
is wired in, such an image is left out and listed in the import's skipped
blocks with NOT_WIRED as the reason.

Any object with `__call__(block) -> str | None` and a `reasons` dict
(block id -> why its image was left out) can take this one's place.
"""

from __future__ import annotations

NOT_WIRED = "Notion-hosted image: media store not wired"


class ImageUrls:
    """`render_page`'s image_url: the URL an image block is shown from, or None."""

    def __init__(self) -> None:
        self.reasons: dict[str, str] = {}

    def __call__(self, block: dict) -> str | None:
        image = block.get("image") if isinstance(block, dict) else None
        if not isinstance(image, dict):
            return None
        kind = image.get("type")
        if kind == "external" and isinstance(image.get("external"), dict):
            return image["external"].get("url")
        if kind == "file":
            block_id = block.get("id")
            if isinstance(block_id, str):
                self.reasons[block_id[:100]] = NOT_WIRED
        return None
