//! The circuit breaker around the Kafka publisher: the shared [`payctl_breaker`] with the publisher's
//! settings (`APP_CB_KAFKA_*`, see `config::BreakerConfig`).

pub use payctl_breaker::{CircuitBreaker, Snapshot, State, Transition};
