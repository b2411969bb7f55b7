// The payment API as the store calls it: through the gateway's /store-api, which adds the store
// merchant's API key (the browser never holds a key). Errors carry the API's code and message.

export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

const BASE = '/store-api';

async function call(method, path, { body, key } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (key) headers['Idempotency-Key'] = key;
  let res;
  try {
    res = await fetch(`${BASE}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, 'NETWORK', '결제 서버에 연결할 수 없습니다. 네트워크를 확인해주세요.');
  }
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const retryAfter = Number(res.headers.get('Retry-After')) || undefined;
    throw new ApiError(res.status, data?.code ?? `HTTP_${res.status}`, data?.message ?? `요청이 실패했습니다 (${res.status}).`, retryAfter);
  }
  return data;
}

export const api = {
  authorize: (amount, key) => call('POST', '/payments/authorize', { body: { amount, currency: 'KRW' }, key }),
  capture: (id, key) => call('POST', `/payments/capture/${id}`, { body: {}, key }),
  refund: (id, amount, reason, key) => call('POST', `/payments/refund/${id}`, { body: { amount, reason }, key }),
  get: (id) => call('GET', `/payments/${id}`),
  ledger: (id) => call('GET', `/payments/${id}/ledger`),
};

/** What the shopper reads for a failed call (the API's own message, with advice where there is one). */
export function describeError(e) {
  if (!(e instanceof ApiError)) return '알 수 없는 오류가 발생했습니다.';
  if (e.status === 429) {
    return `요청이 많아 잠시 후 다시 시도해주세요${e.retryAfter ? ` (${e.retryAfter}초 후)` : ''}. — ${e.message}`;
  }
  if (e.status === 409) return `같은 주문이 처리 중입니다. 잠시 후 다시 시도해주세요. — ${e.message}`;
  return e.message;
}

/** Ledger legs the consumer writes for each event type (domain/src/ledger.rs). */
export const LEGS_PER_EVENT = {
  PAYMENT_AUTHORIZED: 2,
  PAYMENT_CAPTURED: 4,
  PAYMENT_REFUNDED: 2,
  PAYMENT_VOIDED: 2,
};
