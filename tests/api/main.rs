//! The one integration-test binary: each file tests one part of the service against a real
//! server on 127.0.0.1, on the store `CONSENTRY_TEST_STORE` names (embedded by default).

mod admin_cli;
mod atomicity;
mod auth;
mod braze_client;
mod braze_samples;
mod catalog_refresh;
mod change_records;
mod domain_codes;
mod domain_delete;
mod domain_read;
mod edges;
mod errors;
mod first_run;
mod health;
mod helpers;
mod hostile;
mod identifiers;
mod logs;
mod migrate_store;
mod multi_node;
mod openapi;
mod orphan_expiry;
mod postgres_outage;
mod postgres_store;
mod postgres_tls;
mod rate_limits;
mod redis_auth;
mod set_status_v1;
mod set_status_v2;
mod shared_rate_limits;
mod status_get;
mod store_parity;
mod user_status;
mod users_delete;
mod users_track;
