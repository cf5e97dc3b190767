-- Issue 16: Notion is the editor. A mailout imported from a Notion page keeps
-- the page's id: a press of the page's button finds its mailout by it, and
-- the page's status is written back to it.
--
-- At most one mailout per page: a second press of a page already sent (or
-- being imported or sent) finds this row and is answered 409, whatever the
-- number of service processes; two presses at once meet at this index.
ALTER TABLE mailouts ADD COLUMN notion_page_id uuid;
CREATE UNIQUE INDEX mailouts_notion_page_id ON mailouts (notion_page_id) WHERE notion_page_id IS NOT NULL;

-- Set while a button press imports the page (web/notion_press.py), cleared
-- when the import ends either way: a second press meanwhile is a 409; one
-- long after a crashed import takes it over.
ALTER TABLE mailouts ADD COLUMN notion_import_started_at timestamptz;
