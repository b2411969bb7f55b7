"""schemathesis hooks of the contract test (server/tests/api/contract.rs), loaded via SCHEMATHESIS_HOOKS.

1. Some rules OpenAPI cannot state, as they depend on the credentials or span two parts of a request or
   several requests:
   * a body's `merchantId` must be the API key's merchant (403 otherwise);
   * the idempotency key comes from the `Idempotency-Key` header or the body's `idempotencyKey` (the
     original API's way), the two must be equal when both are sent, authorize needs one of them, and a key
     once used belongs to that request (another request with it is 422).
   The document says so in prose. schemathesis draws every value independently, and the same few keys for
   every case, so most schema-valid cases would break one of these rules and be rightly refused (403, 400,
   422) without ever reaching a payment. Schema-valid (positive) cases are therefore sent as a correct
   client sends them: a drawn `merchantId` becomes the merchant's, and the key is the drawn one suffixed
   with a digest of the request (operation, payment, body), in the header and in the body wherever either
   was drawn (the header when authorize drew neither), so a repeated request repeats its key and is
   replayed. Negative cases are sent as drawn, so the refusals are exercised there.

2. The operator endpoint takes the admin token (security scheme `admin`), not a merchant key. Requests
   that carry the merchant's key get the admin token instead, so that endpoint's 200 is tested too.
   Requests without credentials or with made-up ones (the probes of ignored_auth, missing_required_header)
   are sent as they are.

Nothing else is changed.
"""

import hashlib
import json
import os

import schemathesis

KEYED = {
    "/payments/authorize",
    "/payments/capture/{id}",
    "/payments/refund/{id}",
    "/payments/void/{id}",
}
OPERATOR = "/circuit-breaker/kafka-publisher/state"
MERCHANT_ID = os.environ["PAYCTL_CONTRACT_MERCHANT_ID"]
MERCHANT = "Bearer " + os.environ["PAYCTL_CONTRACT_MERCHANT_KEY"]
ADMIN = "Bearer " + os.environ["PAYCTL_CONTRACT_ADMIN_TOKEN"]


def _header(headers, wanted):
    """The name under which `headers` holds `wanted` (any case), or None."""
    return next((n for n in headers if n.lower() == wanted), None)


@schemathesis.hook
def before_call(context, case, kwargs):
    path = case.operation.path
    headers = dict(case.headers or {})
    if path == OPERATOR:
        name = _header(headers, "authorization")
        if name is not None and headers[name] == MERCHANT:
            headers[name] = ADMIN
            case.headers = headers
        return
    if path not in KEYED or case.meta is None or not case.meta.generation.mode.is_positive:
        return
    body = case.body if isinstance(case.body, dict) else None
    if body is not None and body.get("merchantId") is not None:
        body["merchantId"] = MERCHANT_ID
    name = _header(headers, "idempotency-key")
    in_body = body.get("idempotencyKey") if body is not None else None
    drawn = headers[name] if name is not None else in_body
    if drawn is None:
        if path != "/payments/authorize":
            return
        drawn, name = "contract", "Idempotency-Key"
    request = {k: v for k, v in (body or {}).items() if k != "idempotencyKey"}
    # A key belongs to one request of the merchant: this operation, on this payment, with this body.
    target = [path, case.path_parameters or {}, request]
    digest = hashlib.sha256(json.dumps(target, sort_keys=True, default=str).encode()).hexdigest()[:16]
    # Still 1 to 255 printable ASCII characters without spaces, like the drawn key.
    key = f"{drawn[:200]}.{digest}"
    if name is not None:
        headers[name] = key
        case.headers = headers
    if in_body is not None:
        body["idempotencyKey"] = key
