-- The mock acquirer's own schema, in its own database (e.g. .../acquirer), applied at its start-up.
-- Times are DATETIME(6) in UTC; business_date is the settlement's date in the acquirer's cutoff zone
-- (Asia/Seoul by default), computed by the service and stored so a statement is one indexed range.
-- Identifiers compare exactly (`Key-1` is not `key-1`): latin1_general_cs, as payctl's own schema does
-- (0002_case_sensitive_ids.sql), because MariaDB flags _bin columns BINARY and sqlx then refuses them as text.

CREATE TABLE acquirer_settlements (
    reference        VARCHAR(40) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL COMMENT 'ACQ- + 32 hex digits of a UUIDv7',
    idempotency_key  VARCHAR(255) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL,
    request_hash     CHAR(64) CHARACTER SET ascii NOT NULL COMMENT 'SHA-256 of the canonical parsed request',
    type             ENUM('CAPTURE', 'REFUND') NOT NULL,
    merchant_id      VARCHAR(32) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL,
    payment_id       BINARY(16) NOT NULL,
    event_id         BINARY(16) NOT NULL,
    gross            BIGINT NOT NULL,
    fee              BIGINT NOT NULL,
    net              BIGINT NOT NULL,
    currency         CHAR(3) CHARACTER SET ascii NOT NULL,
    settled_at       DATETIME(6) NOT NULL,
    business_date    DATE NOT NULL,
    response         JSON NOT NULL COMMENT 'the first answer, replayed byte for byte',
    PRIMARY KEY (reference),
    UNIQUE KEY uk_acquirer_settlements_key (idempotency_key),
    KEY ix_acquirer_settlements_day (business_date, settled_at, reference),
    KEY ix_acquirer_settlements_event (event_id),
    CONSTRAINT ck_acquirer_settlements_amounts CHECK (gross > 0 AND fee >= 0 AND net = gross - fee)
) ENGINE=InnoDB;
