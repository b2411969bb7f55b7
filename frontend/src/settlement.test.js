import { describe, expect, it } from 'vitest';
import { SETTLEMENT_KO, settlementFinal } from './settlement.js';

const item = (status) => ({ status });

describe('settlement', () => {
  it('keeps polling until the summary is final', () => {
    for (const s of ['NONE', 'PENDING']) {
      expect(settlementFinal({ status: s, items: [] }, 0), s).toBe(false);
    }
    for (const s of ['SETTLED', 'PAID_OUT', 'FAILED']) {
      expect(settlementFinal({ status: s, items: [item('SETTLED')] }, 1), s).toBe(true);
    }
    expect(settlementFinal(undefined, 0)).toBe(false);
    expect(settlementFinal(null, 0)).toBe(false);
  });

  it('a refund the worker has not read yet is not final, whatever the summary says', () => {
    expect(settlementFinal({ status: 'SETTLED', items: [item('SETTLED')] }, 2)).toBe(false);
    expect(settlementFinal({ status: 'SETTLED', items: [item('SETTLED'), item('SETTLED')] }, 2)).toBe(true);
  });

  it('names every summary the API documents', () => {
    expect(Object.keys(SETTLEMENT_KO).sort()).toEqual(['FAILED', 'NONE', 'PAID_OUT', 'PENDING', 'SETTLED', 'SUBMITTED']);
  });
});
