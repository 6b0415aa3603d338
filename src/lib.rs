//! storydex: related stories and duplicate coverage for an archive of AI news digests.
//!
//! Data flows one way: file -> [`corpus`] (parse) -> [`embed`] -> [`store`] (SQLite +
//! usearch) -> [`cluster`]. Requests flow [`cli`] or [`server`] -> [`service`] ->
//! store/index -> [`api`] shapes. Nothing below `service` imports anything above it;
//! [`tuning`], [`vector`], [`lexical`], [`domain`] and [`error_code`] sit at the bottom.

pub mod api;
pub mod cli;
pub mod cluster;
pub mod corpus;
pub mod domain;
pub mod embed;
pub mod error_code;
pub mod eval;
pub mod import;
pub mod lexical;
pub mod server;
pub mod service;
pub mod store;
pub mod tuning;
pub mod vector;
