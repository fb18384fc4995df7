DROP TABLE account_emails;
DROP TABLE attempts;
DROP TABLE deliveries;
DROP TABLE runs;
