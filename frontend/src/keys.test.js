import { describe, expect, it } from 'vitest';
import {
  authorizeKey, captureKey, cartFingerprint, checkoutOrderId, finishCheckout, newOrderId, refundKey,
} from './keys.js';

function memoryStorage() {
  const m = new Map();
  return { getItem: (k) => m.get(k) ?? null, setItem: (k, v) => m.set(k, String(v)), removeItem: (k) => m.delete(k) };
}

const cart = [{ productId: 'iphone-16-pro', color: '화이트 티타늄', quantity: 1, price: 1690000 }];

describe('idempotency keys', () => {
  it('are valid API keys (1–255 printable ASCII characters, no spaces) for every call', () => {
    const id = newOrderId();
    for (const k of [authorizeKey(id), captureKey(id), refundKey(id, 0), refundKey(id, 12)]) {
      expect(k).toMatch(/^[\x21-\x7e]{1,255}$/);
    }
  });

  it('a retry of the same cart reuses the order id, so it replays instead of charging twice', () => {
    const s = memoryStorage();
    const first = checkoutOrderId(s, cart);
    expect(checkoutOrderId(s, cart)).toBe(first);
    expect(checkoutOrderId(s, [...cart].reverse())).toBe(first);
  });

  it('a changed cart is a new order with a new key', () => {
    const s = memoryStorage();
    const first = checkoutOrderId(s, cart);
    const changed = checkoutOrderId(s, [{ ...cart[0], quantity: 2 }]);
    expect(changed).not.toBe(first);
  });

  it('after the order is paid, the same cart again is a new order', () => {
    const s = memoryStorage();
    const first = checkoutOrderId(s, cart);
    finishCheckout(s);
    expect(checkoutOrderId(s, cart)).not.toBe(first);
  });

  it('survives a damaged storage entry', () => {
    const s = memoryStorage();
    s.setItem('payctl-store:pending-checkout', '{not json');
    expect(checkoutOrderId(s, cart, () => 'ord-x')).toBe('ord-x');
  });

  it('each refund of an order has its own key; capture and authorize differ', () => {
    const id = 'ord-1';
    expect(new Set([authorizeKey(id), captureKey(id), refundKey(id, 0), refundKey(id, 1)]).size).toBe(4);
    expect(cartFingerprint(cart)).toBe(cartFingerprint([...cart]));
  });

  it('order ids do not repeat', () => {
    const ids = new Set(Array.from({ length: 1000 }, () => newOrderId()));
    expect(ids.size).toBe(1000);
  });
});
