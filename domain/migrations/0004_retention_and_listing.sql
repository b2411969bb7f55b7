-- Published outbox rows are deleted once older than the relay's retention. The newest creation time
-- deleted is kept here, so reconcile knows that ledger legs up to it may have outlived their outbox row.
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
