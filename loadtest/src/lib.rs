//! Load tests for the URL shortener, and the two small tools the alert check
//! drives: a webhook sink and a fault-injecting TCP proxy.
//!
//! # Layout
//! - [`cli`]: the command line, goose's own options plus ours (thresholds, data).
//! - [`thresholds`]: pure pass/fail evaluation of a finished run's figures.
//! - [`clicks`]: the click check: every 302 of the run is a click in the
//!   links' stats (a ledger the scenarios write, the comparison, the reads).
//! - [`data`]: seeding the target through the API, discovering what it holds,
//!   and the Zipf-like popularity used by the `redirect` scenario.
//! - [`bodies`]: realistic request bodies (usernames, emails, URLs, titles).
//! - [`scenarios`]: one module per kind of goose user (`mix`, `redirect`,
//!   `write`, `cold`), with the response checks in `scenarios::common`.
//! - [`sink`]: the webhook sink behind `src/bin/webhook_sink.rs`.
//! - [`proxy`]: the fault proxy behind `src/bin/faultproxy.rs`.
//! - [`run`]: preparing data before a run and judging it after.
//! - [`http`]: the small hyper accept loop the sink and the proxy's control
//!   endpoint share.
//!
//! `main.rs` only parses the command line, prepares data, registers scenarios
//! and judges the run.

pub mod bodies;
pub mod cli;
pub mod clicks;
pub mod data;
pub mod http;
pub mod proxy;
pub mod run;
pub mod scenarios;
pub mod sink;
pub mod thresholds;
