# Test stand-in for apache/kafka: tansu (Kafka-wire broker) from the build context, configured from the
# same KAFKA_LISTENERS / KAFKA_ADVERTISED_LISTENERS / KAFKA_LOG_DIRS environment.
ARG BASE_IMAGE=payctl-test/base:bookworm
FROM ${BASE_IMAGE}
RUN useradd --system --uid 10002 kafka && mkdir -p /var/lib/kafka/data && chown kafka /var/lib/kafka/data
COPY tansu /usr/local/bin/tansu
COPY kafka-entrypoint.sh /usr/local/bin/kafka-entrypoint.sh
# The volumes apache/kafka declares: each container gets anonymous ones, which payctl must remove with it.
VOLUME ["/etc/kafka/secrets", "/var/lib/kafka/data", "/mnt/shared/config"]
USER kafka
ENTRYPOINT ["/usr/local/bin/kafka-entrypoint.sh"]
