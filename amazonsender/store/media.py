"""The SQL of stored images (the media table): saving one by its hash, and reading it back.

Part of the store: functions take an open connection and run inside the
caller's transaction, with bound parameters only. Rows are keyed by the
SHA-256 of their bytes and never change (sql/013_media.sql).
"""

from __future__ import annotations

from psycopg import Connection


def save_media(conn: Connection, sha256: str, content_type: str, data: bytes, source_url: str | None = None) -> bool:
    """Store an image under its hash; True when this call added it, False
    when it was there already (the same bytes under the same hash: nothing
    to change, and the first source_url is kept). Two imports of the same
    image at once both succeed: the second waits for the first and does
    nothing. The table's checks refuse a hash that is not that of `data`."""
    cur = conn.execute(
        """
        INSERT INTO media (sha256, content_type, bytes, source_url) VALUES (%s, %s, %s, %s)
        ON CONFLICT (sha256) DO NOTHING
        """,
        (sha256, content_type, data, source_url),
    )
    return cur.rowcount == 1


def get_media(conn: Connection, sha256: str, *, with_bytes: bool = True) -> dict | None:
    """The image stored under `sha256`: content_type and size, and its
    `bytes` when `with_bytes` (a HEAD request or a cache's revalidation
    needs only the first two); None when there is none."""
    if with_bytes:
        query = "SELECT content_type, size, bytes FROM media WHERE sha256 = %s"
    else:
        query = "SELECT content_type, size FROM media WHERE sha256 = %s"
    return conn.execute(query, (sha256,)).fetchone()
