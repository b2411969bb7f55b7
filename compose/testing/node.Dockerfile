# Test stand-in for the node image (the gateway's Node stage): this machine's node and npm, and its CA
# bundle (registries may be reached through a proxy whose CA only the host trusts).
ARG BASE_IMAGE=payctl-test/base:bookworm
FROM ${BASE_IMAGE}
COPY node /usr/local/bin/node
COPY npm/ /usr/local/lib/node_modules/npm/
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
RUN ln -s /usr/local/lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm && node --version && npm --version
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
