# Test stand-in for the nginx image (the gateway's base): Debian's nginx, run in the foreground.
ARG BASE_IMAGE=payctl-test/base:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx \
    && rm -rf /var/lib/apt/lists/* && mkdir -p /usr/share/nginx/html
CMD ["nginx", "-g", "daemon off;"]
