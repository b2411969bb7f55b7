-- Payouts (issue 15): `payctl settle --date D` pays each merchant, per currency, the net of what the acquirer
-- settled for business date D: settled captures − settled refunds − fees. A payout covers a set of SETTLED
-- settlement records (settlements.payout_id) and posts, per record, PAYOUT ledger legs under an event id of
-- their own (settlements.payout_event_id), in the same transaction.
--
-- seq: 1 for a date's first payout; a settlement of that date recorded after the date was paid out (the day
-- was closed early, or a late answer) goes into the next `settle --date D` as seq 2, 3, … — never lost,
-- never paid twice (a record carries one payout_id). Running `settle` again with nothing new changes nothing.
CREATE TABLE payouts (
    payout_id        BINARY(16) NOT NULL COMMENT 'UUIDv7',
    merchant_id      VARCHAR(32) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL,
    currency         CHAR(3) CHARACTER SET ascii NOT NULL,
    business_date    DATE NOT NULL,
    seq              INT UNSIGNED NOT NULL,
    captures         INT UNSIGNED NOT NULL,
    refunds          INT UNSIGNED NOT NULL,
    gross_captured   BIGINT NOT NULL,
    gross_refunded   BIGINT NOT NULL,
    fees             BIGINT NOT NULL,
    net              BIGINT NOT NULL COMMENT 'negative when refunds and fees exceed captures: the merchant owes',
    time_zone        VARCHAR(64) CHARACTER SET ascii NOT NULL COMMENT 'the cutoff time zone business_date is in',
    created_at       DATETIME(6) NOT NULL,
    PRIMARY KEY (payout_id),
    UNIQUE KEY uk_payouts_date (merchant_id, currency, business_date, seq),
    KEY ix_payouts_merchant (merchant_id, business_date),
    CONSTRAINT fk_payouts_merchant FOREIGN KEY (merchant_id) REFERENCES merchants (merchant_id),
    CONSTRAINT ck_payouts_net CHECK (net = gross_captured - gross_refunded - fees),
    CONSTRAINT ck_payouts_amounts CHECK (gross_captured >= 0 AND gross_refunded >= 0),
    CONSTRAINT ck_payouts_seq CHECK (seq >= 1)
) ENGINE=InnoDB;

-- Merchant ids are case-sensitive everywhere else (0002); 0005 declared settlements' as ascii, which compares
-- 'M-a' equal to 'M-A' and cannot be compared with the ledger's column without a collation clash.
ALTER TABLE settlements
    MODIFY merchant_id VARCHAR(32) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL,
    ADD COLUMN payout_id BINARY(16) NULL COMMENT 'the payout that paid this settlement out; NULL until then' AFTER business_date,
    ADD COLUMN payout_event_id BINARY(16) NULL COMMENT 'event id of the PAYOUT ledger legs this settlement posted when paid out' AFTER payout_id,
    ADD KEY ix_settlements_payout (payout_id),
    ADD UNIQUE KEY uk_settlements_payout_event (payout_event_id),
    ADD KEY ix_settlements_unpaid (status, business_date, payout_id);

ALTER TABLE settlements
    ADD CONSTRAINT ck_settlements_paid_out CHECK (
        (payout_id IS NULL AND payout_event_id IS NULL)
        OR (payout_id IS NOT NULL AND payout_event_id IS NOT NULL AND status = 'SETTLED'));
