// A payment's settlement with the acquirer as the order page shows it (GET /payments/{id} → settlement).
// The settlement worker moves each capture and refund PENDING → SUBMITTED → SETTLED (or FAILED) seconds to
// minutes after the payment itself stopped changing, so the page polls until the answer is final.

/** Summaries after which nothing changes without someone acting (a payout, an operator's replay). */
const FINAL = new Set(['SETTLED', 'PAID_OUT', 'FAILED']);

/** How often the order page asks again while the settlement is not final. */
export const SETTLEMENT_POLL_MS = 2000;

export const SETTLEMENT_KO = {
  NONE: '정산 대기',
  PENDING: '정산 진행 중',
  SUBMITTED: '매입사 전송 중',
  SETTLED: '정산 완료',
  PAID_OUT: '지급 완료',
  FAILED: '정산 실패',
};

export const SETTLEMENT_TYPE_KO = { CAPTURE: '매입', REFUND: '환불' };

/**
 * Whether the page may stop asking: the summary is final and every capture and refund the page knows of
 * (`expectedItems`) has a record. Without the count a refund made a moment ago, which the worker has not
 * read yet, would leave the earlier SETTLED looking final and never be shown.
 */
export function settlementFinal(settlement, expectedItems) {
  if (!settlement) return false;
  return FINAL.has(settlement.status) && settlement.items.length >= expectedItems;
}
