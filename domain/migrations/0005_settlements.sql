-- The settlement worker's record of every capture and refund it submits to the acquirer (issue 15).
-- One row per event (the event id is also the Idempotency-Key sent to the acquirer), inserted when the
-- event is read and before its offset is stored, so nothing read is lost.
--
-- status: PENDING (due at next_attempt_at) → SUBMITTED (a worker holds a lease until next_attempt_at and
-- is calling) → SETTLED, or back to PENDING (retry with backoff), or FAILED (a permanent refusal or
-- attempts exhausted; published once to the DLQ, dlq_published_at). A replay from the DLQ puts a FAILED
-- row back to PENDING with attempts 0.
-- lease_id grows by one at every claim and never resets: only the worker holding the latest lease may
-- write a retry or failure outcome, so a late answer from an expired lease cannot undo a newer state.
CREATE TABLE settlements (
    event_id            BINARY(16) NOT NULL,
    payment_id          BINARY(16) NOT NULL,
    merchant_id         VARCHAR(32) CHARACTER SET ascii NOT NULL,
    type                VARCHAR(8) CHARACTER SET ascii NOT NULL,
    amount              BIGINT NOT NULL,
    currency            CHAR(3) CHARACTER SET ascii NOT NULL,
    status              VARCHAR(16) CHARACTER SET ascii NOT NULL,
    attempts            INT UNSIGNED NOT NULL DEFAULT 0,
    lease_id            BIGINT UNSIGNED NOT NULL DEFAULT 0,
    acquirer_reference  VARCHAR(64) CHARACTER SET ascii NULL,
    fee                 BIGINT NULL,
    net                 BIGINT NULL,
    settled_at          DATETIME(6) NULL,
    business_date       DATE NULL,
    last_error          VARCHAR(512) NULL,
    next_attempt_at     DATETIME(6) NOT NULL,
    topic               VARCHAR(255) CHARACTER SET ascii NOT NULL COMMENT 'where the event was read, for the DLQ record',
    kafka_partition     INT NOT NULL,
    kafka_offset        BIGINT NOT NULL,
    kafka_key           MEDIUMTEXT NULL COMMENT 'for the DLQ record; never a reason to refuse an event (a key may be longer than any VARCHAR)',
    payload             MEDIUMTEXT NOT NULL COMMENT 'the event as read, for the DLQ record',
    dlq_published_at    DATETIME(6) NULL,
    created_at          DATETIME(6) NOT NULL,
    updated_at          DATETIME(6) NOT NULL,
    PRIMARY KEY (event_id),
    KEY ix_settlements_due (status, next_attempt_at),
    KEY ix_settlements_payment (payment_id),
    KEY ix_settlements_business_date (business_date),
    KEY ix_settlements_dlq (status, dlq_published_at),
    CONSTRAINT ck_settlements_type CHECK (type IN ('CAPTURE', 'REFUND')),
    CONSTRAINT ck_settlements_status CHECK (status IN ('PENDING', 'SUBMITTED', 'SETTLED', 'FAILED')),
    CONSTRAINT ck_settlements_amount CHECK (amount > 0),
    CONSTRAINT ck_settlements_settled CHECK (
        status <> 'SETTLED' OR (acquirer_reference IS NOT NULL AND fee IS NOT NULL AND net IS NOT NULL
                                AND settled_at IS NOT NULL AND business_date IS NOT NULL)),
    CONSTRAINT ck_settlements_payload CHECK (JSON_VALID(payload))
) ENGINE=InnoDB;
