"""Imports Notion pages as mailouts: a page's blocks become the mailout's body."""
