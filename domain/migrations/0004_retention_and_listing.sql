-- Published outbox rows are deleted once older than the retention and in the ledger. The newest
-- recorded_at of the deleted events' legs is kept here: reconcile expects an outbox row for every leg
-- recorded after it (legs recorded before may have outlived theirs).
CREATE TABLE outbox_purged (
    id              TINYINT UNSIGNED NOT NULL,
    purged_through  DATETIME(6) NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT ck_outbox_purged_one_row CHECK (id = 1)
) ENGINE=InnoDB;

-- GET /payments pages newest first by payment id (UUIDv7, so time order) within a merchant, optionally
-- one status: each has an index in that order, so a page reads `limit` rows instead of sorting all of a
-- merchant's payments. The old (merchant, created_at, payment_id) index served neither.
ALTER TABLE payments
    ADD KEY ix_payments_merchant_payment (merchant_id, payment_id),
    ADD KEY ix_payments_merchant_status_payment (merchant_id, status, payment_id),
    DROP KEY ix_payments_merchant_created;
