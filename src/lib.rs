//! storydex: related stories and duplicate coverage for an archive of AI news digests.
//!
//! Data flows one way: file -> [`corpus`] (parse) -> [`embed`] -> [`store`] (SQLite +
//! usearch). Requests flow CLI/HTTP -> [`service`] -> store/index -> [`api`] shapes.

pub mod api;
pub mod cli;
pub mod cluster;
pub mod corpus;
pub mod domain;
pub mod embed;
pub mod eval;
pub mod http;
pub mod lexical;
pub mod service;
pub mod store;
mod web;
