// Prices, quantities and totals. KRW has no minor unit: amounts are whole won and are also what the
// payment API receives, so every figure here is an integer and nothing is rounded.

export const MIN_QUANTITY = 1;
export const MAX_QUANTITY = 5;
/** The payment API's largest amount (minor units). */
export const MAX_AMOUNT = 99_999_999_999;

/** A quantity the store accepts: an integer from 1 to 5 (anything else is clamped; junk becomes 1). */
export function clampQuantity(q) {
  const n = Math.trunc(Number(q));
  if (!Number.isFinite(n)) return MIN_QUANTITY;
  return Math.min(MAX_QUANTITY, Math.max(MIN_QUANTITY, n));
}

export function lineTotal(price, quantity) {
  return price * clampQuantity(quantity);
}

/** The sum of the cart's lines; throws if the order is beyond what one payment can carry. */
export function cartTotal(lines) {
  const total = lines.reduce((sum, l) => sum + lineTotal(l.price, l.quantity), 0);
  if (!Number.isSafeInteger(total) || total > MAX_AMOUNT) {
    throw new RangeError('order total exceeds the largest payment amount');
  }
  return total;
}

const krw = new Intl.NumberFormat('ko-KR');

/** 1690000 → "1,690,000원" */
export function formatKRW(amount) {
  return `${krw.format(amount)}원`;
}

/** Whole-percent discount of price against the original price (0 when there is none). */
export function discountPercent(price, originalPrice) {
  if (!originalPrice || originalPrice <= price) return 0;
  return Math.round(((originalPrice - price) / originalPrice) * 100);
}

/** What can still be refunded of a payment: captured − refunded (never negative). */
export function refundable(payment) {
  return Math.max(0, (payment?.capturedAmount ?? 0) - (payment?.refundedAmount ?? 0));
}

/** Parses a refund amount typed by a person ("1,000", "1000원"); null if it is not a valid amount. */
export function parseRefundAmount(text, max) {
  const digits = String(text).replace(/[,\s원]/g, '');
  if (!/^\d+$/.test(digits)) return null;
  const n = Number(digits);
  if (!Number.isSafeInteger(n) || n < 1 || n > max) return null;
  return n;
}
