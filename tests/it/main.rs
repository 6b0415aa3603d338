//! Integration tests, one binary: the `http_*` tests start the real server on
//! `127.0.0.1:0` (through `helpers::spawn_app`) and talk to it over HTTP; `real_model`
//! and `ingest` drive the service and store with the real model. Tests that need the
//! model fail, naming `scripts/fetch-model`, when `models/multilingual-e5-small/` is
//! absent. The hf-hub download path has its own binary (`tests/hub_mirror.rs`) because
//! it sets process-wide environment variables. `web_pages` checks the web page over HTTP;
//! `browser` drives it in headless Chromium with the real model (`tests/browser/`).
//! `layers` reads the source to keep the arrows between modules pointing one way.

mod helpers;

mod backup;
mod browser;
mod http_api;
mod http_auth;
mod http_duplicates;
mod http_errors;
mod http_openai;
mod http_queue;
mod http_real;
mod ingest;
mod layers;
mod real_duplicates;
mod real_model;
mod two_writers;
mod watch;
mod web_pages;
