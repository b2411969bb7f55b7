// The store in a real headless Chromium (Debian's, driven by playwright-core) against a running stack.
// Run by cli/tests/store.rs, which starts the stack and sets STORE_URL; alone:
//   STORE_URL=http://127.0.0.1:8080 npm run e2e
// Screenshots go to $SCREENSHOT_DIR (default e2e/artifacts).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { chromium, devices } from 'playwright-core';

const STORE = process.env.STORE_URL ?? 'http://127.0.0.1:8080';
const SHOTS = process.env.SCREENSHOT_DIR ?? new URL('./artifacts/', import.meta.url).pathname;
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
mkdirSync(SHOTS, { recursive: true });

let browser;
before(async () => {
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
});
after(async () => {
  await browser?.close();
});

/**
 * A fresh page that fails the test on any console error or uncaught exception, except those matching
 * `expected` (Chromium logs the network failures a test injects).
 */
async function open(t, options = {}, expected = []) {
  const context = await browser.newContext(options);
  const page = await context.newPage();
  const problems = [];
  page.on('console', (m) => {
    if (m.type() === 'error' && !expected.some((re) => re.test(m.text()))) problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  t.after(async () => {
    await context.close();
    assert.deepEqual(problems, [], 'no console errors');
  });
  return page;
}

async function api(path) {
  const res = await fetch(`${STORE}/store-api${path}`);
  assert.equal(res.status, 200, `${path}: ${res.status}`);
  return res.json();
}

/** All of the store merchant's payments (the API pages by cursor). */
async function allPayments() {
  const out = [];
  let cursor = '';
  for (;;) {
    const page = await api(`/payments?limit=100${cursor}`);
    out.push(...page.data);
    if (!page.hasMore) return out;
    cursor = `&startingAfter=${page.nextCursor}`;
  }
}

async function addToCart(page, productId, { quantity = 1, color } = {}) {
  await page.goto(`${STORE}/#/product/${productId}`);
  if (color) await page.getByLabel('색상').selectOption(color);
  for (let i = 1; i < quantity; i += 1) await page.getByRole('button', { name: '수량 늘리기' }).click();
  await page.getByRole('button', { name: '장바구니 담기' }).click();
}

/**
 * Records every settlement status the order page shows, as it shows it (a MutationObserver on the page),
 * and marks the document, so a test can tell the status changed in place rather than by a reload.
 */
async function watchSettlement(page) {
  await page.evaluate(() => {
    window.__sameDocument = true;
    window.__settlementSeen = [];
    const note = () => {
      const s = document.querySelector('[data-testid="settlement-status"]')?.textContent;
      if (s && window.__settlementSeen.at(-1) !== s) window.__settlementSeen.push(s);
    };
    note();
    new MutationObserver(note).observe(document.body, { subtree: true, childList: true, characterData: true });
  });
}

/** Fee and net of each settled record shown, as numbers. */
async function settledAmounts(page) {
  const won = (s) => Number(s.replace(/[^0-9]/g, ''));
  const fees = await page.getByTestId('settlement-fee').allTextContents();
  const nets = await page.getByTestId('settlement-net').allTextContents();
  return fees.map((f, i) => [won(f), won(nets[i])]);
}

test('buy → captured → ledger lines shown → partial and full refund (phone viewport)', async (t) => {
  const page = await open(t, devices['iPhone 13']);
  await addToCart(page, 'bruno-airfryer', { quantity: 2, color: '세이지 민트' });
  await page.goto(`${STORE}/#/cart`);
  assert.equal(await page.getByTestId('cart-total').textContent(), '578,000원');
  await page.screenshot({ path: `${SHOTS}/iphone-cart.png`, fullPage: true });
  await page.getByTestId('pay').click();

  await page.waitForURL(/#\/order\//);
  await watchSettlement(page);
  await page.getByTestId('payment-status').filter({ hasText: 'CAPTURED' }).waitFor();
  // authorize (2 legs) + capture (4 legs), written by the consumer a moment later.
  await page.getByTestId('ledger-state').filter({ hasText: '원장 6줄' }).waitFor({ timeout: 20_000 });
  assert.equal(await page.getByTestId('legs-capture').locator('li').count(), 4);
  const authLegs = await page.getByTestId('legs-authorize').textContent();
  assert.match(authLegs, /차변\s*authorization_hold\s*578,000원/, 'the hold is a debit');
  assert.match(authLegs, /대변\s*authorization_hold_offset\s*578,000원/, 'its offset a credit');
  await page.screenshot({ path: `${SHOTS}/iphone-order-captured.png`, fullPage: true });

  // The settlement worker settles the capture with the acquirer (1–3 s a call, retried on its failures)
  // after the payment stopped changing; the page asks again every 2 s and shows it, without a reload.
  await page.getByTestId('settlement-status').filter({ hasText: /^SETTLED$/ }).waitFor({ timeout: 60_000 });
  const seen = await page.evaluate(() => window.__settlementSeen);
  assert.ok(['NONE', 'PENDING'].includes(seen[0]), `first a status that is not final: ${seen}`);
  assert.equal(seen.at(-1), 'SETTLED', `${seen}`);
  assert.equal(await page.evaluate(() => window.__sameDocument), true, 'no reload');
  assert.equal(await page.getByTestId('settlement-item').count(), 1);
  assert.match(await page.getByTestId('acquirer-reference').textContent(), /\S/);
  const [[fee, net]] = await settledAmounts(page);
  assert.ok(fee > 0 && fee + net === 578000, `fee ${fee} + net ${net} is the capture`);
  // Final (and the ledger complete): the page stops asking.
  const reads = [];
  const count = (r) => r.url().includes('/store-api/payments/') && reads.push(r.url());
  page.on('request', count);
  await page.waitForTimeout(4500);
  page.off('request', count);
  assert.deepEqual(reads, [], 'no polling once the settlement is final');
  await page.screenshot({ path: `${SHOTS}/iphone-order-settled.png`, fullPage: true });

  await page.getByLabel('부분 환불 금액').fill('78,000');
  await page.getByRole('button', { name: '부분 환불' }).click();
  await page.getByTestId('payment-status').filter({ hasText: 'PARTIALLY_REFUNDED' }).waitFor();
  await page.getByTestId('ledger-state').filter({ hasText: '원장 8줄' }).waitFor({ timeout: 20_000 });

  await page.getByRole('button', { name: '전액 환불' }).click();
  await page.getByTestId('payment-status').filter({ hasText: /^REFUNDED$/ }).waitFor();
  await page.getByTestId('ledger-state').filter({ hasText: '원장 10줄' }).waitFor({ timeout: 20_000 });
  // Each refund is settled in turn (the page polls again as soon as it knows of a refund).
  await page.getByTestId('settlement-item').nth(2).waitFor({ timeout: 60_000 });
  await page.getByTestId('settlement-status').filter({ hasText: /^SETTLED$/ }).waitFor({ timeout: 60_000 });
  assert.deepEqual(
    await page.getByTestId('settlement-item').evaluateAll((items) => items.map((i) => i.dataset.status)),
    ['SETTLED', 'SETTLED', 'SETTLED'],
  );
  const refunds = (await settledAmounts(page)).slice(1);
  assert.deepEqual(refunds, [[0, 78000], [0, 500000]], 'refunds carry no fee');
  await page.screenshot({ path: `${SHOTS}/iphone-order-refunded.png`, fullPage: true });

  const orderId = decodeURIComponent(page.url().split('#/order/')[1]);
  const paymentId = await page.evaluate(
    (id) => JSON.parse(localStorage.getItem('payctl-store:orders')).find((o) => o.orderId === id).paymentId,
    orderId,
  );
  const p = await api(`/payments/${paymentId}`);
  assert.deepEqual([p.amount, p.capturedAmount, p.refundedAmount, p.status], [578000, 578000, 578000, 'REFUNDED']);
});

test('a double-click on pay makes one payment', async (t) => {
  const page = await open(t, devices['Galaxy S9+']);
  const before = (await allPayments()).length;
  await addToCart(page, 'dyson-gen5detect');
  await page.goto(`${STORE}/#/cart`);
  await page.getByTestId('pay').dblclick();
  await page.waitForURL(/#\/order\//);
  await page.getByTestId('payment-status').filter({ hasText: 'CAPTURED' }).waitFor();
  await page.screenshot({ path: `${SHOTS}/galaxy-order.png`, fullPage: true });
  assert.equal((await allPayments()).length, before + 1);
});

test('a retry after a lost answer replays: one payment, captured once', async (t) => {
  const page = await open(t, { viewport: { width: 1280, height: 900 } }, [/ERR_CONNECTION_RESET/]);
  const before = (await allPayments()).length;
  await addToCart(page, 'breville-barista-pro');
  await page.goto(`${STORE}/#/cart`);
  // The first capture reaches the API, but its answer is lost on the way back.
  let dropped = false;
  await page.route('**/store-api/payments/capture/*', async (route) => {
    if (dropped) return route.continue();
    dropped = true;
    await route.fetch();
    return route.abort('connectionreset');
  });
  await page.getByTestId('pay').click();
  await page.getByTestId('checkout-error').waitFor();
  assert.match(await page.getByTestId('checkout-error').textContent(), /중복 결제되지 않습니다/);
  await page.getByTestId('pay').click();
  await page.waitForURL(/#\/order\//);
  await page.getByTestId('payment-status').filter({ hasText: 'CAPTURED' }).waitFor();
  const payments = await allPayments();
  assert.equal(payments.length, before + 1, 'one payment for the order');
  assert.equal(payments[0].capturedAmount, 1090000, 'captured once, in full');
  await page.screenshot({ path: `${SHOTS}/desktop-order.png`, fullPage: true });
});

test('keyboard only: tabs, product, cart', async (t) => {
  const page = await open(t, { viewport: { width: 1280, height: 900 } });
  await page.goto(`${STORE}/#/`);
  await page.getByRole('button', { name: '홈 & 리빙' }).focus();
  await page.keyboard.press('Enter');
  assert.equal(await page.getByRole('button', { name: '홈 & 리빙' }).getAttribute('aria-pressed'), 'true');
  await page.getByRole('link', { name: /Atelier/ }).focus();
  await page.keyboard.press('Enter');
  await page.getByRole('button', { name: '수량 늘리기' }).focus();
  await page.keyboard.press('Enter');
  assert.equal(await page.getByTestId('detail-total').textContent(), '3,180,000원');
  await page.getByRole('button', { name: '장바구니 담기' }).focus();
  await page.keyboard.press('Enter');
  assert.equal(await page.getByTestId('cart-count').textContent(), '2');
});
