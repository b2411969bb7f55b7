# The gateway: nginx serving the built store (frontend/dist) at / and the payment API at /api.
# Build the store first (`cd frontend && npm ci && npm run build`; `payctl up` does it for you).
# payctl replaces nginx.conf with one generated from its stack definition (every ingest instance, the
# store merchant's key on /store-api); the one here serves `docker compose up`.
ARG NGINX_IMAGE=nginx:1.27-bookworm
FROM ${NGINX_IMAGE}
COPY compose/gateway/nginx.conf /etc/nginx/nginx.conf
COPY frontend/dist/ /usr/share/nginx/html/
COPY compose/healthcheck.sh /usr/local/bin/healthcheck
ENV HEALTH_PORT=80
HEALTHCHECK --interval=5s --timeout=3s --retries=3 CMD ["/usr/local/bin/healthcheck", "/health"]
# nginx.conf says `daemon off;` itself.
CMD ["nginx"]
