//! sessionsync keeps a PostgreSQL warehouse in step with support-session systems.
//!
//! # Layout
//! - [`model`]: the plain data every layer shares (stream key, window, outcome, records set
//!   aside, run totals); a leaf that imports nothing of the crate.
//! - [`secret`]: a value that never prints (keys, tickets, tokens); a leaf.
//! - [`settings`]: the validated settings types every part takes (streams, HTTP clients,
//!   schedules, the server); the warehouse's own are `warehouse::settings`.
//! - [`config`]: the TOML file and `${VAR}` substitution, read once into [`config::Settings`]:
//!   the keys every `[[source]]` entry takes, then each source's own keys (its
//!   [`config::SourceSettings`], declared by its [`config::SourceKind`]), into one
//!   [`config::Account`] per entry that builds its source ([`config::Account::build`]);
//!   secrets are [`config::Secret`] and never print.
//! - [`privacy`]: personal data, in one place: classes and policies, what a policy does to a
//!   record before anything is written, the inventory types each source fills in (its
//!   `personal.rs`), the recorded erasures and the SQL every write shares with them
//!   (`privacy::warehouse`), and what `erase`, `privacy check|apply`, `retention` and the
//!   daemon do to a stored warehouse.
//! - [`engine`]: vendor-agnostic: the seam (`engine/source.rs`: the [`engine::Source`] trait a
//!   source implements, the [`engine::SourceContext`] the engine builds for it, whose
//!   `personal` every record passes before it becomes a row, the [`engine::Stream`] it runs), time windows and the plan of a run, the per-stream claim
//!   (advisory locks held by one lock-keeping connection, fenced by a token: no connection is
//!   held while a stream waits on its vendor), one transaction per window with its watermark,
//!   run records, the scheduler (slots, back-off, missed instants).
//! - [`http`]: the HTTP client every source uses: rate ceiling, retries with backoff and jitter,
//!   `Retry-After`, an account-wide pause on 429.
//! - [`sources`]: one folder per source system (`takecontrol/`, `superoffice/`, `mluvii/`),
//!   each with the same files (`mod.rs` names the parts, `config.rs`, `client.rs`, `source.rs`,
//!   `normalize.rs`, `store.rs`, `personal.rs`, and its own extras), the list
//!   [`sources::SOURCES`], plus lenient field reading and bounded XML helpers shared by them. The simulators are the `sessionsync-sim` crate.
//! - [`warehouse`]: the pool (TLS), the migrations of `sql/` (embedded by `build.rs`),
//!   bookkeeping tables.
//! - [`telemetry`] and [`events`]: Prometheus metrics and logs; an event writes both at once.
//! - [`server`]: `/metrics`, `/healthz`, `/readyz`.
//! - [`webhooks`]: the vendor webhook listener, its inbox table and the worker that re-reads
//!   the sessions events name (the per-vendor part is each source's `webhook.rs`).
//! - [`startup`]: settings → prepared warehouse (migrated, hash keys checked: the one step the
//!   daemon shares) → engine → streams, as the one-shot commands start; [`daemon`]: the daemon assembled once (server, webhooks, migration, scheduler,
//!   storage limits, one shutdown order), for `run`, `demo` and the tests.
//! - [`report`]: run lines, exit codes and live bars for people; [`out`]: standard output
//!   that ends quietly when its reader goes away; [`shutdown`]: the signal every loop is given.
//! - [`cli`]: the command line; `main.rs` only calls it. [`demo`] and [`pgctl`] (a private
//!   PostgreSQL for the demo) serve `sessionsync demo`; [`simulate`] serves `sessionsync
//!   simulate`; `warehouse::bootstrap` finds a server and creates a named database (demo,
//!   examples, test harness).

pub mod cli;
pub mod config;
pub mod daemon;
#[cfg(feature = "demo")]
pub mod demo;
pub mod engine;
pub mod events;
pub mod http;
pub mod model;
pub mod out;
#[cfg(feature = "demo")]
pub mod pgctl;
pub mod privacy;
pub mod report;
pub mod secret;
pub mod server;
pub mod settings;
pub mod shutdown;
#[cfg(feature = "demo")]
pub mod simulate;
pub mod sources;
pub mod startup;
pub mod telemetry;
pub mod warehouse;
pub mod webhooks;
