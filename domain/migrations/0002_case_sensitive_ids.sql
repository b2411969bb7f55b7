-- Identifiers compare exactly. 0001 left them in the default ascii_general_ci collation, so the database
-- took `order-7Ax` for the committed key `Order-7aX` (a distinct payment answered as a replay of another)
-- and `m-case` for `M-CASE` (creating one merchant replaced the other's API key), while the Redis cache
-- told them apart.
--
-- latin1_general_cs rather than ascii_bin: both tell every printable ASCII character apart (the only ones
-- ids and keys may hold), but MariaDB flags _bin columns BINARY and sqlx then refuses to read them as text.
ALTER TABLE payments DROP FOREIGN KEY fk_payments_merchant;

ALTER TABLE merchants
    MODIFY merchant_id VARCHAR(32) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL;

ALTER TABLE payments
    MODIFY merchant_id VARCHAR(32) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL,
    ADD CONSTRAINT fk_payments_merchant FOREIGN KEY (merchant_id) REFERENCES merchants (merchant_id);

ALTER TABLE idempotency_keys
    MODIFY merchant_id VARCHAR(32) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL,
    MODIFY idempotency_key VARCHAR(255) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL;

ALTER TABLE ledger_entries
    MODIFY merchant_id VARCHAR(32) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL;
