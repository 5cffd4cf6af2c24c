//! Consentry: a self-hosted subscription and consent service that speaks Braze's
//! subscription-group REST API.
//!
//! Dependencies point one way: [`http`] uses [`domain`] and [`store`]; [`store`] uses
//! [`domain`]; [`domain`] depends on nothing of ours and does no I/O.

pub mod admin;
pub mod allocator;
#[doc(hidden)]
pub mod bench_support;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub mod limiter;
pub mod pages;
pub mod server;
pub mod serving;
pub mod store;
pub mod stream;
pub mod telemetry;
