-- payctl schema. Applied at start-up by pay-server and pay-consumer (sqlx migrations, under a MariaDB lock).
-- Money rules are repeated here as CHECK constraints so no code path can break them.
-- Times are DATETIME(6) in UTC (TIMESTAMP would stop in 2038).

CREATE TABLE merchants (
    merchant_id     VARCHAR(32) CHARACTER SET ascii NOT NULL,
    name            VARCHAR(128) NOT NULL,
    api_key_hash    BINARY(32) NOT NULL COMMENT 'SHA-256 of the API key; the key itself is never stored',
    api_key_prefix  VARCHAR(16) CHARACTER SET ascii NOT NULL COMMENT 'first characters of the key, to recognise it',
    created_at      DATETIME(6) NOT NULL DEFAULT UTC_TIMESTAMP(6),
    PRIMARY KEY (merchant_id),
    UNIQUE KEY uk_merchants_api_key (api_key_hash),
    CONSTRAINT ck_merchants_id CHECK (merchant_id REGEXP '^[A-Za-z0-9_-]{1,32}$')
) ENGINE=InnoDB;

CREATE TABLE payments (
    payment_id       BINARY(16) NOT NULL COMMENT 'UUIDv7',
    merchant_id      VARCHAR(32) CHARACTER SET ascii NOT NULL,
    amount           BIGINT NOT NULL COMMENT 'authorized, minor units',
    captured_amount  BIGINT NOT NULL DEFAULT 0,
    refunded_amount  BIGINT NOT NULL DEFAULT 0,
    currency         CHAR(3) CHARACTER SET ascii NOT NULL,
    status           VARCHAR(24) CHARACTER SET ascii NOT NULL,
    version          INT UNSIGNED NOT NULL DEFAULT 0,
    created_at       DATETIME(6) NOT NULL,
    updated_at       DATETIME(6) NOT NULL,
    PRIMARY KEY (payment_id),
    KEY ix_payments_merchant_created (merchant_id, created_at, payment_id),
    CONSTRAINT fk_payments_merchant FOREIGN KEY (merchant_id) REFERENCES merchants (merchant_id),
    CONSTRAINT ck_payments_amount CHECK (amount > 0 AND amount <= 99999999999),
    CONSTRAINT ck_payments_captured CHECK (captured_amount >= 0 AND captured_amount <= amount),
    CONSTRAINT ck_payments_refunded CHECK (refunded_amount >= 0 AND refunded_amount <= captured_amount),
    CONSTRAINT ck_payments_currency CHECK (currency REGEXP '^[A-Z]{3}$'),
    CONSTRAINT ck_payments_status CHECK (
        (status = 'AUTHORIZED' AND captured_amount = 0 AND refunded_amount = 0)
        OR (status = 'VOIDED' AND captured_amount = 0 AND refunded_amount = 0)
        OR (status = 'CAPTURED' AND captured_amount > 0 AND refunded_amount = 0)
        OR (status = 'PARTIALLY_REFUNDED' AND refunded_amount > 0 AND refunded_amount < captured_amount)
        OR (status = 'REFUNDED' AND refunded_amount > 0 AND refunded_amount = captured_amount))
) ENGINE=InnoDB;

-- One row per (merchant, Idempotency-Key). Written in the same transaction as the effect it guards, with
-- the response, so a committed key always points at a committed effect.
CREATE TABLE idempotency_keys (
    merchant_id          VARCHAR(32) CHARACTER SET ascii NOT NULL,
    idempotency_key      VARCHAR(255) CHARACTER SET ascii NOT NULL,
    request_fingerprint  BINARY(32) NOT NULL COMMENT 'SHA-256 of method, route and canonical body',
    state                VARCHAR(16) CHARACTER SET ascii NOT NULL,
    response_status      SMALLINT UNSIGNED NULL,
    response_body        MEDIUMBLOB NULL COMMENT 'exact bytes, so a replay is byte-identical',
    payment_id           BINARY(16) NULL,
    created_at           DATETIME(6) NOT NULL,
    expires_at           DATETIME(6) NOT NULL,
    PRIMARY KEY (merchant_id, idempotency_key),
    KEY ix_idempotency_expires (expires_at),
    CONSTRAINT ck_idempotency_state CHECK (state IN ('IN_PROGRESS', 'COMPLETED')),
    CONSTRAINT ck_idempotency_response CHECK (
        state = 'IN_PROGRESS' OR (response_status IS NOT NULL AND response_body IS NOT NULL)),
    CONSTRAINT ck_idempotency_expiry CHECK (expires_at > created_at)
) ENGINE=InnoDB;

-- Transactional outbox: one row per payment change, written with it, published by the relay.
CREATE TABLE outbox_events (
    id             BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    event_id       BINARY(16) NOT NULL,
    payment_id     BINARY(16) NOT NULL,
    event_type     VARCHAR(32) CHARACTER SET ascii NOT NULL,
    payload        MEDIUMTEXT NOT NULL,
    created_at     DATETIME(6) NOT NULL,
    published_at   DATETIME(6) NULL,
    claimed_until  DATETIME(6) NULL COMMENT 'lease of the relay that is publishing it',
    attempts       INT UNSIGNED NOT NULL DEFAULT 0,
    last_error     VARCHAR(512) NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uk_outbox_event_id (event_id),
    KEY ix_outbox_pending (published_at, id),
    KEY ix_outbox_payment (payment_id),
    CONSTRAINT ck_outbox_event_type CHECK (
        event_type IN ('PAYMENT_AUTHORIZED', 'PAYMENT_CAPTURED', 'PAYMENT_REFUNDED', 'PAYMENT_VOIDED')),
    CONSTRAINT ck_outbox_payload CHECK (JSON_VALID(payload))
) ENGINE=InnoDB;

-- Double-entry ledger written by pay-consumer: every event posts balanced legs, unique per (event, leg),
-- so a redelivered event adds nothing.
CREATE TABLE ledger_entries (
    entry_id     BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    event_id     BINARY(16) NOT NULL,
    leg          TINYINT UNSIGNED NOT NULL,
    payment_id   BINARY(16) NOT NULL,
    merchant_id  VARCHAR(32) CHARACTER SET ascii NOT NULL,
    event_type   VARCHAR(32) CHARACTER SET ascii NOT NULL,
    account      VARCHAR(64) CHARACTER SET ascii NOT NULL,
    side         CHAR(1) CHARACTER SET ascii NOT NULL COMMENT 'D = debit, C = credit',
    amount       BIGINT NOT NULL,
    currency     CHAR(3) CHARACTER SET ascii NOT NULL,
    occurred_at  DATETIME(6) NOT NULL,
    recorded_at  DATETIME(6) NOT NULL DEFAULT UTC_TIMESTAMP(6),
    PRIMARY KEY (entry_id),
    UNIQUE KEY uk_ledger_event_leg (event_id, leg),
    KEY ix_ledger_payment (payment_id, entry_id),
    CONSTRAINT fk_ledger_payment FOREIGN KEY (payment_id) REFERENCES payments (payment_id),
    CONSTRAINT ck_ledger_amount CHECK (amount > 0),
    CONSTRAINT ck_ledger_side CHECK (side IN ('D', 'C'))
) ENGINE=InnoDB;
