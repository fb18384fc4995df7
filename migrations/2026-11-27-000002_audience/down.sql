DROP TABLE messages;
DROP TABLE clients;
