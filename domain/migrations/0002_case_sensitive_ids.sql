-- Identifiers compare exactly. 0001 left them in the default ascii_general_ci collation, so the database
-- took `order-7Ax` for the committed key `Order-7aX` (a distinct payment answered as a replay of another)
-- and `m-case` for `M-CASE` (creating one merchant replaced the other's API key), while the Redis cache
-- told them apart.
--
-- latin1_general_cs rather than ascii_bin: both tell every printable ASCII character apart (the only ones
-- ids and keys may hold), but MariaDB flags _bin columns BINARY and sqlx then refuses to read them as text.
-- Under the old collation a row could name its merchant in another case than the merchants table does
-- (written by hand or imported; the API always copied the id from the key). Spell each as its merchant
-- does first, so re-adding the foreign key below cannot fail half-way through this migration.
UPDATE payments p JOIN merchants m ON m.merchant_id = p.merchant_id
    SET p.merchant_id = m.merchant_id WHERE BINARY p.merchant_id <> BINARY m.merchant_id;
UPDATE ledger_entries l JOIN merchants m ON m.merchant_id = l.merchant_id
    SET l.merchant_id = m.merchant_id WHERE BINARY l.merchant_id <> BINARY m.merchant_id;

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
