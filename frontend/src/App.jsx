// The store: catalog → product → cart → checkout (authorize + capture) → order page with a live
// timeline of the payment and its ledger lines, its settlement with the acquirer, and refunds.
import { useCallback, useEffect, useRef, useState } from 'react';
import { categories, productById, products } from './catalog.js';
import { cartTotal, clampQuantity, discountPercent, formatKRW, lineTotal, MAX_QUANTITY, MIN_QUANTITY, parseRefundAmount, refundable } from './pricing.js';
import { authorizeKey, captureKey, checkoutOrderId, finishCheckout, refundKey } from './keys.js';
import { api, describeError, LEGS_PER_EVENT } from './api.js';
import { go, loadCart, loadOrders, orderById, saveCart, saveOrder, useRoute } from './store.js';
import { SETTLEMENT_KO, SETTLEMENT_POLL_MS, SETTLEMENT_TYPE_KO, settlementFinal } from './settlement.js';

export default function App() {
  const route = useRoute();
  const [cart, setCart] = useState(loadCart);
  const updateCart = (lines) => {
    saveCart(lines);
    setCart(lines);
  };
  const count = cart.reduce((n, l) => n + l.quantity, 0);
  let page;
  if (route[0] === 'product' && productById(route[1])) {
    page = <ProductPage product={productById(route[1])} cart={cart} setCart={updateCart} />;
  } else if (route[0] === 'cart') {
    page = <CartPage cart={cart} setCart={updateCart} />;
  } else if (route[0] === 'order' && route[1]) {
    page = <OrderPage orderId={route[1]} />;
  } else if (route[0] === 'orders') {
    page = <OrdersPage />;
  } else {
    page = <CatalogPage />;
  }
  return (
    <>
      <header className="top">
        <a className="brand" href="#/">
          <span className="badge">PAYMENT STORE</span> 프리미엄 마켓
        </a>
        <nav aria-label="주요 메뉴">
          <a href="#/orders">주문 내역</a>
          <a href="#/cart" className="cart-link" aria-label={`장바구니, ${count}개`}>
            장바구니 <span className="count" data-testid="cart-count">{count}</span>
          </a>
        </nav>
      </header>
      <main id="main">{page}</main>
      <footer className="foot">payctl demo store · 결제는 로컬 테스트 환경에서만 처리됩니다.</footer>
    </>
  );
}

function ProductImage({ product, size = 'card' }) {
  const accent = categories.find((c) => c.id === product.category)?.accent ?? '#64748b';
  return (
    <svg className={`img ${size}`} viewBox="0 0 320 200" role="img" aria-label={product.name}>
      <defs>
        <linearGradient id={`g-${product.id}-${size}`} x1="0" y1="0" x2="1" y2="1">
          <stop offset="0" stopColor={accent} stopOpacity="0.9" />
          <stop offset="1" stopColor={accent} stopOpacity="0.35" />
        </linearGradient>
      </defs>
      <rect width="320" height="200" rx="16" fill={`url(#g-${product.id}-${size})`} />
      <text x="160" y="112" textAnchor="middle" fontSize="44" fontWeight="700" fill="white">
        {product.brand}
      </text>
    </svg>
  );
}

function CatalogPage() {
  const [category, setCategory] = useState(categories[0].id);
  const current = categories.find((c) => c.id === category);
  return (
    <>
      <div className="tabs" role="group" aria-label="카테고리">
        {categories.map((c) => (
          <button key={c.id} type="button" aria-pressed={c.id === category} onClick={() => setCategory(c.id)}>
            {c.name}
          </button>
        ))}
      </div>
      <section className="hero" style={{ background: current.accent }}>
        <h1>{current.tagline}</h1>
        <p>{current.description}</p>
      </section>
      <h2>{current.subheading}</h2>
      <ul className="grid">
        {products
          .filter((p) => p.category === category)
          .map((p) => (
            <li key={p.id} className="card">
              <a href={`#/product/${p.id}`} className="card-link">
                <ProductImage product={p} />
                <span className="promo">{p.promoLabel}</span>
                <span className="brand-name">{p.brand}</span>
                <strong className="name">{p.name}</strong>
                <span className="desc">{p.shortDescription}</span>
                <span className="price">
                  <em>{discountPercent(p.price, p.originalPrice)}%</em> {formatKRW(p.price)}{' '}
                  <s>{formatKRW(p.originalPrice)}</s>
                </span>
                <span className="meta">
                  ★ {p.rating} ({p.reviews.toLocaleString('ko-KR')}) · {p.monthlyInstallment}
                </span>
                <span className="badges">
                  {p.badges.map((b) => (
                    <span key={b}>{b}</span>
                  ))}
                </span>
              </a>
            </li>
          ))}
      </ul>
    </>
  );
}

function ProductPage({ product, cart, setCart }) {
  const [color, setColor] = useState(product.colors[0]);
  const [quantity, setQuantity] = useState(1);
  const add = () => {
    const same = cart.find((l) => l.productId === product.id && l.color === color);
    const lines = same
      ? cart.map((l) => (l === same ? { ...l, quantity: clampQuantity(l.quantity + quantity) } : l))
      : [...cart, { productId: product.id, name: product.name, color, quantity, price: product.price }];
    setCart(lines);
  };
  return (
    <article className="detail">
      <ProductImage product={product} size="large" />
      <div>
        <p className="brand-name">{product.brand}</p>
        <h1>{product.name}</h1>
        <p>{product.shortDescription}</p>
        <p className="price big">
          {formatKRW(product.price)} <s>{formatKRW(product.originalPrice)}</s>
        </p>
        <p className="meta">{product.monthlyInstallment} · {product.shipping}</p>
        <label>
          색상
          <select value={color} onChange={(e) => setColor(e.target.value)}>
            {product.colors.map((c) => (
              <option key={c}>{c}</option>
            ))}
          </select>
        </label>
        <div className="qty" role="group" aria-label="수량">
          <button type="button" aria-label="수량 줄이기" disabled={quantity <= MIN_QUANTITY} onClick={() => setQuantity((q) => clampQuantity(q - 1))}>−</button>
          <output aria-live="polite" data-testid="quantity">{quantity}</output>
          <button type="button" aria-label="수량 늘리기" disabled={quantity >= MAX_QUANTITY} onClick={() => setQuantity((q) => clampQuantity(q + 1))}>+</button>
        </div>
        <p className="total">합계 <strong data-testid="detail-total">{formatKRW(lineTotal(product.price, quantity))}</strong></p>
        <div className="actions">
          <button type="button" className="secondary" onClick={add}>장바구니 담기</button>
          <button type="button" className="primary" onClick={() => { add(); go('cart'); }}>바로 구매</button>
        </div>
        <ul className="highlights">
          {product.highlights.map((h) => (
            <li key={h}>{h}</li>
          ))}
        </ul>
      </div>
    </article>
  );
}

function CartPage({ cart, setCart }) {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const inFlight = useRef(false);
  let total = 0;
  let tooLarge = false;
  try {
    total = cartTotal(cart);
  } catch {
    tooLarge = true;
  }
  const setQty = (line, q) => setCart(cart.map((l) => (l === line ? { ...l, quantity: clampQuantity(q) } : l)));

  const pay = async () => {
    // A second click while the first is running does nothing; a retry after a failure reuses the
    // same order id, hence the same idempotency keys, hence never a second charge.
    if (inFlight.current) return;
    inFlight.current = true;
    setBusy(true);
    setError(null);
    const orderId = checkoutOrderId(localStorage, cart);
    const order = orderById(orderId) ?? {
      orderId, lines: cart, total, createdAt: new Date().toISOString(), paymentId: null, refunds: 0,
    };
    try {
      const authorized = await api.authorize(total, authorizeKey(orderId));
      order.paymentId = authorized.paymentId;
      saveOrder(order);
      await api.capture(authorized.paymentId, captureKey(orderId));
      finishCheckout(localStorage);
      setCart([]);
      go('order', orderId);
    } catch (e) {
      setError(describeError(e));
    } finally {
      inFlight.current = false;
      setBusy(false);
    }
  };

  if (cart.length === 0) {
    return (
      <section>
        <h1>장바구니</h1>
        <p>장바구니가 비어 있습니다. <a href="#/">쇼핑 계속하기</a></p>
      </section>
    );
  }
  return (
    <section>
      <h1>장바구니</h1>
      <ul className="lines">
        {cart.map((l) => (
          <li key={`${l.productId}|${l.color}`}>
            <span className="name">{l.name}<small>{l.color}</small></span>
            <label className="qty-input">
              수량
              <input type="number" min={MIN_QUANTITY} max={MAX_QUANTITY} value={l.quantity} onChange={(e) => setQty(l, e.target.value)} disabled={busy} />
            </label>
            <span>{formatKRW(lineTotal(l.price, l.quantity))}</span>
            <button type="button" className="link" onClick={() => setCart(cart.filter((x) => x !== l))} disabled={busy} aria-label={`${l.name} 삭제`}>삭제</button>
          </li>
        ))}
      </ul>
      <p className="total">결제 금액 <strong data-testid="cart-total">{formatKRW(total)}</strong></p>
      {tooLarge && <p role="alert" className="error">주문 금액이 한 번에 결제할 수 있는 한도를 넘습니다.</p>}
      {error && (
        <p role="alert" className="error" data-testid="checkout-error">
          {error} 다시 결제하셔도 중복 결제되지 않습니다.
        </p>
      )}
      <button type="button" className="primary wide" onClick={pay} disabled={busy || tooLarge} aria-busy={busy} data-testid="pay">
        {busy ? '결제 중…' : `${formatKRW(total)} 결제하기`}
      </button>
    </section>
  );
}

function OrdersPage() {
  const orders = loadOrders();
  return (
    <section>
      <h1>주문 내역</h1>
      {orders.length === 0 ? (
        <p>아직 주문이 없습니다.</p>
      ) : (
        <ul className="lines">
          {orders.map((o) => (
            <li key={o.orderId}>
              <a href={`#/order/${o.orderId}`}>{o.lines.map((l) => l.name).join(', ')}</a>
              <span>{formatKRW(o.total)}</span>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

const STATUS_KO = {
  AUTHORIZED: '승인됨',
  CAPTURED: '결제 완료',
  PARTIALLY_REFUNDED: '부분 환불됨',
  REFUNDED: '환불 완료',
  VOIDED: '승인 취소',
};

function OrderPage({ orderId }) {
  const [order, setOrder] = useState(() => orderById(orderId));
  const [payment, setPayment] = useState(null);
  const [ledger, setLedger] = useState(null);
  const [error, setError] = useState(null);
  const [refundText, setRefundText] = useState('');
  const [busy, setBusy] = useState(false);
  const inFlight = useRef(false);

  const refresh = useCallback(async () => {
    if (!order?.paymentId) return;
    try {
      const [p, l] = await Promise.all([api.get(order.paymentId), api.ledger(order.paymentId)]);
      setPayment(p);
      setLedger(l);
    } catch (e) {
      setError(describeError(e));
    }
  }, [order?.paymentId]);

  const expectedLegs =
    LEGS_PER_EVENT.PAYMENT_AUTHORIZED +
    ((payment?.capturedAmount ?? 0) > 0 ? LEGS_PER_EVENT.PAYMENT_CAPTURED : 0) +
    (order?.refunds ?? 0) * LEGS_PER_EVENT.PAYMENT_REFUNDED;
  const settled = ledger !== null && ledger.entries.length >= expectedLegs;

  // One settlement record per capture and refund (the store captures once, in full).
  const expectedSettlements = ((payment?.capturedAmount ?? 0) > 0 ? 1 : 0) + (order?.refunds ?? 0);
  const settlementDone = settlementFinal(payment?.settlement, expectedSettlements);
  const loaded = payment !== null;

  useEffect(() => {
    refresh();
  }, [refresh]);
  useEffect(() => {
    // The consumer writes the ledger a moment after each payment change: poll until it has.
    if (settled) return undefined;
    const t = setInterval(refresh, 700);
    return () => clearInterval(t);
  }, [settled, refresh]);
  useEffect(() => {
    // The settlement worker settles with the acquirer seconds later, after the payment stopped changing:
    // ask again until the answer is final. Leaving the page (unmount) stops it too.
    if (!order?.paymentId || !loaded || settlementDone) return undefined;
    const t = setInterval(async () => {
      try {
        setPayment(await api.get(order.paymentId));
      } catch (e) {
        setError(describeError(e));
      }
    }, SETTLEMENT_POLL_MS);
    return () => clearInterval(t);
  }, [order?.paymentId, loaded, settlementDone]);

  if (!order) {
    return <p role="alert" className="error">이 브라우저에서 찾을 수 없는 주문입니다. <a href="#/orders">주문 내역</a></p>;
  }
  const left = refundable(payment);

  const refund = async (amount) => {
    if (inFlight.current) return;
    inFlight.current = true;
    setBusy(true);
    setError(null);
    try {
      await api.refund(order.paymentId, amount, 'customer-request', refundKey(order.orderId, order.refunds));
      const next = { ...order, refunds: order.refunds + 1 };
      saveOrder(next);
      setOrder(next);
      setRefundText('');
      await refresh();
    } catch (e) {
      setError(describeError(e));
    } finally {
      inFlight.current = false;
      setBusy(false);
    }
  };
  const partial = parseRefundAmount(refundText, left);

  const legsOf = (type) => (ledger?.entries ?? []).filter((e) => e.eventType === type);
  const steps = [
    { key: 'authorize', title: '승인', done: !!payment, type: 'PAYMENT_AUTHORIZED', amount: payment?.amount },
    { key: 'capture', title: '정산(매입)', done: (payment?.capturedAmount ?? 0) > 0, type: 'PAYMENT_CAPTURED', amount: payment?.capturedAmount },
    { key: 'refund', title: '환불', done: (payment?.refundedAmount ?? 0) > 0, type: 'PAYMENT_REFUNDED', amount: payment?.refundedAmount },
  ];

  return (
    <section>
      <h1>주문 {order.orderId}</h1>
      <p>
        {order.lines.map((l) => `${l.name} (${l.color}) × ${l.quantity}`).join(', ')} · <strong>{formatKRW(order.total)}</strong>
      </p>
      {!order.paymentId && <p role="alert" className="error">이 주문은 아직 결제되지 않았습니다. <a href="#/cart">장바구니</a>에서 다시 결제해주세요.</p>}
      {payment && (
        <p className="status" aria-live="polite">
          상태 <strong data-testid="payment-status">{payment.status}</strong> {STATUS_KO[payment.status]}
        </p>
      )}
      {error && <p role="alert" className="error" data-testid="order-error">{error}</p>}
      <ol className="timeline" aria-label="결제 진행">
        {steps.map((s) => (
          <li key={s.key} className={s.done ? 'done' : 'todo'} data-testid={`step-${s.key}`}>
            <h2>{s.title} <span className="state">{s.done ? `완료 · ${formatKRW(s.amount)}` : '대기'}</span></h2>
            {s.done && (
              <ul className="legs" data-testid={`legs-${s.key}`}>
                {legsOf(s.type).map((e) => (
                  <li key={e.entryId}>
                    <span className={`side ${e.side.toLowerCase()}`}>{e.side === 'DEBIT' ? '차변' : '대변'}</span>
                    <code>{e.account}</code> {formatKRW(e.amount)}
                  </li>
                ))}
                {legsOf(s.type).length === 0 && <li className="pending">원장 반영 중…</li>}
              </ul>
            )}
          </li>
        ))}
      </ol>
      <p className="ledger-state" aria-live="polite" data-testid="ledger-state">
        {ledger === null ? '' : settled ? `원장 ${ledger.entries.length}줄 · 차변 ${formatKRW(ledger.totalDebits)} = 대변 ${formatKRW(ledger.totalCredits)}` : '원장 반영 중…'}
      </p>
      {payment?.settlement && <SettlementPanel settlement={payment.settlement} done={settlementDone} />}
      {left > 0 && (
        <form className="refund" onSubmit={(e) => { e.preventDefault(); if (partial) refund(partial); }}>
          <h2>환불</h2>
          <p>환불 가능 금액 {formatKRW(left)}</p>
          <label>
            부분 환불 금액
            <input inputMode="numeric" value={refundText} onChange={(e) => setRefundText(e.target.value)} placeholder="예: 100,000" disabled={busy} aria-invalid={refundText !== '' && !partial} />
          </label>
          <button type="submit" className="secondary" disabled={busy || !partial}>부분 환불</button>
          <button type="button" className="primary" disabled={busy} onClick={() => refund(left)}>전액 환불</button>
        </form>
      )}
    </section>
  );
}

/** Where each capture and refund is with the acquirer: the summary, then one line per record. */
function SettlementPanel({ settlement, done }) {
  return (
    <section className="settlement" aria-labelledby="settlement-title">
      <h2 id="settlement-title">
        정산{' '}
        <span className="state" aria-live="polite">
          <strong data-testid="settlement-status">{settlement.status}</strong> {SETTLEMENT_KO[settlement.status]}
          {!done && ' · 확인 중…'}
        </span>
      </h2>
      {settlement.items.length === 0 ? (
        <p className="pending">매입사 정산 대기 중…</p>
      ) : (
        <ul className="legs" data-testid="settlement-items">
          {settlement.items.map((i) => (
            <li key={i.eventId} data-testid="settlement-item" data-status={i.status}>
              {SETTLEMENT_TYPE_KO[i.type]} {formatKRW(i.amount)} · <strong>{i.status}</strong> {SETTLEMENT_KO[i.status]}
              {i.acquirerReference && <> · <code data-testid="acquirer-reference">{i.acquirerReference}</code></>}
              {i.status === 'SETTLED' && i.fee !== null && (
                <> · 수수료 <span data-testid="settlement-fee">{formatKRW(i.fee)}</span> · 정산액 <span data-testid="settlement-net">{formatKRW(i.net)}</span></>
              )}
              {i.payoutId && ' · 지급 완료'}
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
