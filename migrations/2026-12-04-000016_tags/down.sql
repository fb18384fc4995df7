DROP TABLE client_tags;
DROP TABLE tags;
