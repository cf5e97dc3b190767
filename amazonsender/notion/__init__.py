"""Notion as the editor: a Notion page imported as a mailout.

Its modules: api.py (the Notion API through notion-client: a page, its
blocks with their children, property updates; paced and retried), ids.py (a
page id from a Notion URL or id), render.py with rich_text.py and styles.py
(blocks to an email-safe HTML body and its plain text).
"""
