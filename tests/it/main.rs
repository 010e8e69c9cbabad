//! The integration tests, one binary (it links once): one module per area, over a real
//! PostgreSQL (a fresh database per test, see `helpers`) and the simulators on 127.0.0.1:0.

mod helpers;

mod audit;
mod bi;
mod cli;
mod contract;
mod docs;
mod fourth_source;
mod hostile;
mod many_accounts;
mod migrations;
mod mluvii;
mod plans;
mod privacy;
mod reliability;
mod renormalize;
mod replicas;
mod server;
mod signals;
mod superoffice;
mod superoffice_online;
mod takecontrol;
mod tls;
mod vendor_clients;
mod webhooks;
