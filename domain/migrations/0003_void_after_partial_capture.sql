-- A void releases whatever of the authorization is not captured: all of it from AUTHORIZED, or the
-- uncaptured rest after a partial capture (before, that rest stayed in authorization_hold for ever).
-- voided_amount records what was released; captures and voids together never exceed the authorization,
-- so nothing can be captured after a void.
ALTER TABLE payments
    ADD COLUMN voided_amount BIGINT NOT NULL DEFAULT 0 AFTER refunded_amount,
    DROP CONSTRAINT ck_payments_status;

UPDATE payments SET voided_amount = amount WHERE status = 'VOIDED';

ALTER TABLE payments
    ADD CONSTRAINT ck_payments_voided CHECK (voided_amount >= 0 AND captured_amount + voided_amount <= amount),
    ADD CONSTRAINT ck_payments_status CHECK (
        (status = 'AUTHORIZED' AND captured_amount = 0 AND refunded_amount = 0 AND voided_amount = 0)
        OR (status = 'VOIDED' AND captured_amount = 0 AND refunded_amount = 0 AND voided_amount = amount)
        OR (status = 'CAPTURED' AND captured_amount > 0 AND refunded_amount = 0)
        OR (status = 'PARTIALLY_REFUNDED' AND refunded_amount > 0 AND refunded_amount < captured_amount)
        OR (status = 'REFUNDED' AND refunded_amount > 0 AND refunded_amount = captured_amount));
