//! The integration tests, one binary (common compiles once, the crate links once):
//! each module is what used to be a test file of its own. They run on a real PostgreSQL,
//! real processes and real clients (see `common`).

mod common;

mod abuse;
mod accounts;
mod api_keys;
mod audiences;
mod blog;
mod compose;
mod contract;
mod cookies;
mod crud;
mod csv;
mod deliverability;
mod dkim;
mod dispatch;
mod dispatch_processes;
mod embedded_server;
mod examples;
mod graphql_http_audit;
mod http_graphql;
mod import;
mod input_rules;
mod jobs;
mod layout;
mod mail_transport;
mod newsletters;
mod migrations;
mod n_plus_one;
mod recovery;
mod robustness;
mod roles;
mod schema;
mod segments;
mod senders;
mod sockets;
mod stats;
mod tags;
mod templates;
mod web_ui;
mod websocket;
