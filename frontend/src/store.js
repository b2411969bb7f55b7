// What the store keeps in the browser: the cart and the orders placed from it (localStorage), and a
// tiny hash router. Orders hold only ids and lines; payment state always comes from the API.
import { useEffect, useState } from 'react';

const CART = 'payctl-store:cart';
const ORDERS = 'payctl-store:orders';

const read = (key, fallback) => {
  try {
    return JSON.parse(localStorage.getItem(key) ?? 'null') ?? fallback;
  } catch {
    return fallback;
  }
};

export const loadCart = () => read(CART, []);
export const saveCart = (lines) => localStorage.setItem(CART, JSON.stringify(lines));
export const loadOrders = () => read(ORDERS, []);
export const orderById = (id) => loadOrders().find((o) => o.orderId === id);

export function saveOrder(order) {
  const others = loadOrders().filter((o) => o.orderId !== order.orderId);
  localStorage.setItem(ORDERS, JSON.stringify([order, ...others].slice(0, 50)));
}

/** The current route from location.hash: ['product', 'iphone-16-pro'], ['cart'], ['order', id], []. */
export function useRoute() {
  const parse = () => window.location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  const [route, setRoute] = useState(parse);
  useEffect(() => {
    const on = () => {
      setRoute(parse());
      window.scrollTo(0, 0);
    };
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  return route;
}

export const go = (...parts) => {
  window.location.hash = `#/${parts.map(encodeURIComponent).join('/')}`;
};
