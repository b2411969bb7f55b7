//! What the commands share and no command owns: the API and acquirer clients, the k6 runner and payctl's own load
//! driver, the merchants payctl provisions, the breaker's admin endpoints, the DLQ, the services'
//! metrics, the Kubernetes manifests, bench's measurements and the store's build.

pub mod acquirer;
pub mod api;
pub mod bench;
pub mod breaker;
pub mod chaos;
pub mod dlq;
pub mod doctor;
pub mod driver;
pub mod endpoints;
pub mod k6;
pub mod k8s;
pub mod merchants;
pub mod metrics;
pub mod payouts;
pub mod procfs;
pub mod reconcile;
pub mod store;
