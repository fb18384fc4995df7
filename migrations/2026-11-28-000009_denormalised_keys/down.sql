ALTER TABLE deliveries
    ADD CONSTRAINT deliveries_mailing_id_fkey FOREIGN KEY (mailing_id) REFERENCES mailings (id),
    ADD CONSTRAINT deliveries_owner_id_fkey FOREIGN KEY (owner_id) REFERENCES users (id);
ALTER TABLE attempts
    ADD CONSTRAINT attempts_mailing_id_fkey FOREIGN KEY (mailing_id) REFERENCES mailings (id),
    ADD CONSTRAINT attempts_owner_id_fkey FOREIGN KEY (owner_id) REFERENCES users (id);
