//! Integration tests, one binary: each test starts the real server on `127.0.0.1:0`
//! (through `helpers::spawn_app`) and talks to it over HTTP.

mod helpers;

mod http_api;
mod http_auth;
mod http_errors;
mod http_queue;
mod http_real;
