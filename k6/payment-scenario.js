// payctl load scenario: an open model (ramping-arrival-rate), so a slow server shows up as latency and
// dropped iterations instead of silently lowering the offered rate. Run by `payctl load`; every knob is
// an environment variable:
//   BASE_URL       API base, through the gateway (default http://127.0.0.1:8080/api)
//   MERCHANT_KEYS  comma-separated API keys; each iteration picks one (many merchants, many rate-limit keys)
//   FLOW           authorize | capture (authorize→capture) | full (authorize→capture→refund)
//   RATE           target iterations per second;  RAMP  ramp-up time;  DURATION  time at RATE
//   STAGES         JSON list of {target, duration}, replacing RAMP/RATE/DURATION
//   P99_MS         per-step p99 threshold in ms (default 50)
import http from 'k6/http';
import { check } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';

const BASE = __ENV.BASE_URL || 'http://127.0.0.1:8080/api';
const KEYS = (__ENV.MERCHANT_KEYS || '').split(',').filter((k) => k.length > 0);
const FLOW = __ENV.FLOW || 'authorize';
const RATE = parseInt(__ENV.RATE || '100', 10);
const RAMP = __ENV.RAMP || '5s';
const DURATION = __ENV.DURATION || '30s';
const P99_MS = parseInt(__ENV.P99_MS || '50', 10);
const stages = __ENV.STAGES
  ? JSON.parse(__ENV.STAGES)
  : [{ target: RATE, duration: RAMP }, { target: RATE, duration: DURATION }];
const peak = Math.max(...stages.map((s) => s.target), 1);

if (KEYS.length === 0) {
  throw new Error('MERCHANT_KEYS is empty: run through `payctl load`, which creates the merchants');
}
if (!['authorize', 'capture', 'full'].includes(FLOW)) {
  throw new Error(`FLOW must be authorize, capture or full, not ${FLOW}`);
}

// Every step records success and failure alike, so the rate is a real error rate.
const paymentErrors = new Rate('payment_errors');
const authorizeDuration = new Trend('payment_authorize_duration', true);
const captureDuration = new Trend('payment_capture_duration', true);
const refundDuration = new Trend('payment_refund_duration', true);
const status4xx = new Counter('payment_status_4xx');
const status429 = new Counter('payment_status_429');
const status5xx = new Counter('payment_status_5xx');
const statusNone = new Counter('payment_status_none');
const flows = new Counter('payment_flows_completed');

const stepThresholds = { payment_authorize_duration: [`p(99)<${P99_MS}`] };
if (FLOW !== 'authorize') stepThresholds.payment_capture_duration = [`p(99)<${P99_MS}`];
if (FLOW === 'full') stepThresholds.payment_refund_duration = [`p(99)<${P99_MS}`];

export const options = {
  discardResponseBodies: false,
  scenarios: {
    payments: {
      executor: 'ramping-arrival-rate',
      startRate: Math.max(1, Math.floor(stages[0].target / 10)),
      timeUnit: '1s',
      preAllocatedVUs: Math.min(Math.max(20, peak / 5), 400),
      maxVUs: Math.min(Math.max(100, peak * 2), 2000),
      stages,
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.001'],
    payment_errors: ['rate<0.001'],
    dropped_iterations: ['count<1'],
    ...stepThresholds,
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(95)', 'p(99)', 'max'],
};

function record(res, trend, expected) {
  trend.add(res.timings.duration);
  const ok = check(res, { [`status ${expected}`]: (r) => r.status === expected });
  paymentErrors.add(!ok);
  if (!ok) {
    if (res.status === 0) statusNone.add(1);
    else if (res.status === 429) status429.add(1);
    else if (res.status >= 500) status5xx.add(1);
    else if (res.status >= 400) status4xx.add(1);
  }
  return ok;
}

export default function () {
  const key = KEYS[Math.floor(Math.random() * KEYS.length)];
  const headers = {
    Authorization: `Bearer ${key}`,
    'Content-Type': 'application/json',
    'Idempotency-Key': `k6-${__VU}-${__ITER}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`,
  };
  const amount = Math.max(1000, Math.floor(Math.random() * 50 + 1) * 1000);
  const auth = http.post(`${BASE}/payments/authorize`, JSON.stringify({ amount, currency: 'KRW' }), {
    headers,
    tags: { step: 'authorize' },
  });
  if (!record(auth, authorizeDuration, 200)) return;
  if (FLOW === 'authorize') {
    flows.add(1);
    return;
  }
  const id = auth.json('paymentId');
  const plain = { Authorization: headers.Authorization, 'Content-Type': 'application/json' };
  const cap = http.post(`${BASE}/payments/capture/${id}`, '{}', { headers: plain, tags: { step: 'capture' } });
  if (!record(cap, captureDuration, 200)) return;
  if (FLOW === 'capture') {
    flows.add(1);
    return;
  }
  const refund = http.post(
    `${BASE}/payments/refund/${id}`,
    JSON.stringify({ amount: Math.floor(amount / 2), reason: 'k6 partial refund' }),
    { headers: plain, tags: { step: 'refund' } },
  );
  if (record(refund, refundDuration, 200)) flows.add(1);
}
