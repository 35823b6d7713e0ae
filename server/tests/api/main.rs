//! The integration tests: one binary, one module per area, real HTTP against the real
//! server with real PostgreSQL and Valkey (see `helpers`).

mod helpers;
mod proxy;

mod cache;
mod clicks;
mod errors;
mod events;
mod hostile;
mod lifecycle;
mod limits;
mod near;
mod races;
mod redirects;
mod sentinel;
mod statements;
mod urls;
mod users;
mod valkey_memory;
