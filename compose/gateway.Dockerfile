# The gateway: nginx serving the built store (frontend/) at / and the payment API at /api.
# payctl replaces nginx.conf with one generated from its stack definition (every ingest instance, the
# store merchant's key on /store-api); the one here serves `docker compose up`.
#
# Stages, in the order the classic builder runs them (every stage up to the target):
#   base    - nginx with the config and the health check
#   dist    - base + frontend/dist from the build context: what payctl builds when the checkout has a
#             store build (it runs `npm run build` first when npm is there); needs no Node image
#   store   - the store built from frontend/ sources in the Node image (NODE_IMAGE)
#   release - base + the store from `store` (the default target: `docker compose`, or payctl when
#             frontend/dist is missing)
ARG NGINX_IMAGE=nginx:1.27-bookworm
ARG NODE_IMAGE=node:22-bookworm-slim

FROM ${NGINX_IMAGE} AS base
COPY compose/gateway/nginx.conf /etc/nginx/nginx.conf
COPY compose/healthcheck.sh /usr/local/bin/healthcheck
ENV HEALTH_PORT=80
HEALTHCHECK --interval=5s --timeout=3s --retries=3 CMD ["/usr/local/bin/healthcheck", "/health"]
# nginx.conf says `daemon off;` itself.
CMD ["nginx"]

FROM base AS dist
COPY frontend/dist/ /usr/share/nginx/html/

FROM ${NODE_IMAGE} AS store
WORKDIR /src
# The packages first, in their own layer: reinstalled only when the lock file changes.
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY frontend/ ./
RUN npm run build

FROM base AS release
COPY --from=store /src/dist/ /usr/share/nginx/html/
