-- What an active run holds of its account's balance (micro-credits): its estimated
-- prompt and longest answer at the model's price, set at admission. Admission counts
-- the reservations of the account's active runs against its balance; ending the run
-- (charged its actual usage) releases its reservation, so the ledger stays the balance.
ALTER TABLE runs ADD COLUMN reserved BIGINT NOT NULL DEFAULT 0;
