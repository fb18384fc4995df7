DROP TABLE mailing_clients;
DROP TABLE mailings;
