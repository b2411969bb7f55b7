// Idempotency keys for the store's payment calls.
//
// One checkout attempt gets one order id, made when the shopper first presses "pay" and kept (in
// storage) until that order has a payment. Every call derives its key from the order id, so a
// double-click, a network retry or a reload that sends the same call again sends the same key, and the
// API answers with the first result instead of charging twice. A refund's key includes how many refunds
// the order already has, so a second, deliberate refund is a new operation.

const PENDING = 'payctl-store:pending-checkout';

/** A fresh order id: time-ordered and random, within the API's key alphabet and length. */
export function newOrderId(now = Date.now(), random = Math.random) {
  const rand = Array.from({ length: 10 }, () => Math.floor(random() * 36).toString(36)).join('');
  return `ord-${now.toString(36)}-${rand}`;
}

export const authorizeKey = (orderId) => `${orderId}-authorize`;
export const captureKey = (orderId) => `${orderId}-capture`;
export const refundKey = (orderId, refundsSoFar) => `${orderId}-refund-${refundsSoFar + 1}`;

/** A cheap, stable fingerprint of a cart: the same lines give the same string. */
export function cartFingerprint(lines) {
  return lines
    .map((l) => `${l.productId}|${l.color}|${l.quantity}|${l.price}`)
    .sort()
    .join(';');
}

/**
 * The order id for checking out this cart: the pending one if the same cart is being paid for again
 * (retry), a new one if the cart changed (a different order must never replay the old answer).
 */
export function checkoutOrderId(storage, lines, make = newOrderId) {
  const fingerprint = cartFingerprint(lines);
  try {
    const pending = JSON.parse(storage.getItem(PENDING) ?? 'null');
    if (pending && pending.fingerprint === fingerprint) return pending.orderId;
  } catch {
    // A damaged entry is replaced below.
  }
  const orderId = make();
  storage.setItem(PENDING, JSON.stringify({ orderId, fingerprint }));
  return orderId;
}

/** After the order has its payment, the next checkout is a new order. */
export function finishCheckout(storage) {
  storage.removeItem(PENDING);
}
