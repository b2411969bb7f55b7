-- The mock acquirer's own schema, in its own SQLite file (APP_ACQUIRER_DATABASE_URL), applied at its
-- start-up. STRICT: every column holds exactly its declared type, nothing is coerced.
--
-- Representations:
--   ids            payment_id, event_id: hyphenated lower-case UUID text (36 characters);
--                  reference: 'ACQ-' + 32 upper-case hex digits of a UUIDv7.
--   amounts        INTEGER minor units.
--   settled_at     INTEGER microseconds since the Unix epoch, UTC: sorts numerically in time order
--                  (before 1970 too) and keeps the microseconds the service works in.
--   business_date  TEXT YYYY-MM-DD, the settlement's date in the acquirer's cutoff zone (Asia/Seoul by
--                  default), computed by the service and stored so a statement is one indexed range.
--   response       BLOB: the first answer's bytes, replayed byte for byte.
-- Identifiers compare exactly (`Key-1` is not `key-1`): SQLite's default BINARY collation for `=` and
-- UNIQUE on TEXT; no column here declares NOCASE.

CREATE TABLE acquirer_settlements (
    reference        TEXT    NOT NULL PRIMARY KEY
                     CHECK (length(reference) = 36 AND substr(reference, 1, 4) = 'ACQ-'),
    idempotency_key  TEXT    NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    request_hash     TEXT    NOT NULL
                     CHECK (length(request_hash) = 64 AND request_hash NOT GLOB '*[^0-9a-f]*'),
    type             TEXT    NOT NULL CHECK (type IN ('CAPTURE', 'REFUND')),
    merchant_id      TEXT    NOT NULL CHECK (length(merchant_id) BETWEEN 1 AND 32),
    payment_id       TEXT    NOT NULL
                     CHECK (length(payment_id) = 36 AND payment_id NOT GLOB '*[^0-9a-f-]*'),
    event_id         TEXT    NOT NULL
                     CHECK (length(event_id) = 36 AND event_id NOT GLOB '*[^0-9a-f-]*'),
    gross            INTEGER NOT NULL,
    fee              INTEGER NOT NULL,
    net              INTEGER NOT NULL,
    currency         TEXT    NOT NULL CHECK (length(currency) = 3 AND currency NOT GLOB '*[^A-Z]*'),
    settled_at       INTEGER NOT NULL,
    business_date    TEXT    NOT NULL
                     CHECK (business_date GLOB '[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9]'),
    response         BLOB    NOT NULL CHECK (length(response) > 0),
    -- Keys are the merchant's own: one merchant's key never blocks or replays another's.
    CONSTRAINT uk_acquirer_settlements_key UNIQUE (merchant_id, idempotency_key),
    CONSTRAINT ck_acquirer_settlements_amounts CHECK (gross > 0 AND fee >= 0 AND net = gross - fee)
) STRICT;

CREATE INDEX ix_acquirer_settlements_day
    ON acquirer_settlements (business_date, settled_at, reference);
CREATE INDEX ix_acquirer_settlements_event ON acquirer_settlements (event_id);
