ALTER TABLE runs DROP COLUMN layout_html, DROP COLUMN text_body, DROP COLUMN format;
ALTER TABLE messages DROP COLUMN layout_id, DROP COLUMN text_body, DROP COLUMN format;
DROP TABLE layouts;
