import { describe, expect, it } from 'vitest';
import {
  cartTotal, clampQuantity, discountPercent, formatKRW, lineTotal, parseRefundAmount, refundable,
} from './pricing.js';
import { products } from './catalog.js';

describe('pricing', () => {
  it('clamps quantities to 1–5 and turns junk into 1', () => {
    expect([0, 1, 3, 5, 6, -2, 2.7, 'x', '4'].map(clampQuantity)).toEqual([1, 1, 3, 5, 5, 1, 2, 1, 4]);
  });

  it('totals lines exactly in whole won', () => {
    expect(lineTotal(1690000, 2)).toBe(3380000);
    expect(cartTotal([{ price: 1690000, quantity: 2 }, { price: 289000, quantity: 9 }])).toBe(3380000 + 289000 * 5);
    expect(cartTotal([])).toBe(0);
  });

  it('the largest possible order fits one payment', () => {
    const top = Math.max(...products.map((p) => p.price));
    expect(top).toBe(2290000);
    expect(cartTotal([{ price: top, quantity: 5 }])).toBe(11450000);
  });

  it('refuses a total beyond the largest payment amount', () => {
    const lines = Array.from({ length: 10 }, () => ({ price: 10_000_000_000, quantity: 5 }));
    expect(() => cartTotal(lines)).toThrow(RangeError);
  });

  it('formats won and discounts', () => {
    expect(formatKRW(1690000)).toBe('1,690,000원');
    expect(discountPercent(1690000, 1790000)).toBe(6);
    expect(discountPercent(100, 0)).toBe(0);
  });

  it('knows what can still be refunded and parses typed amounts within it', () => {
    const p = { capturedAmount: 10000, refundedAmount: 3000 };
    expect(refundable(p)).toBe(7000);
    expect(parseRefundAmount('1,000원', 7000)).toBe(1000);
    expect(parseRefundAmount('7000', 7000)).toBe(7000);
    expect(parseRefundAmount('7001', 7000)).toBeNull();
    expect(parseRefundAmount('0', 7000)).toBeNull();
    expect(parseRefundAmount('12.5', 7000)).toBeNull();
  });

  it('every product has a consistent catalog entry', () => {
    expect(products).toHaveLength(9);
    for (const p of products) {
      expect(Number.isSafeInteger(p.price) && p.price > 0).toBe(true);
      expect(p.originalPrice).toBeGreaterThan(p.price);
      expect(p.colors.length).toBeGreaterThan(0);
      expect(p.highlights).toHaveLength(4);
    }
  });
});
