"""Notion as the editor: import a Notion page as a mailout…"""
