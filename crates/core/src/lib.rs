//! sessionsync's core: everything a source and the binary build on, and nothing of any vendor
//! (this crate depends on no source; the compiler keeps it so).
//!
//! # Layout
//! - [`model`]: the plain data every layer shares (stream key, session id, window, outcome,
//!   records set aside, run totals); a leaf that imports nothing of the crate.
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
//!   `personal.rs`, with any one-off conversion it needs), the recorded erasures and the SQL
//!   every write shares with them (`privacy::warehouse`), and what `erase`, `privacy
//!   check|apply`, `retention` and the daemon do to a stored warehouse.
//! - [`engine`]: the seam (`engine/source.rs`: the [`engine::Source`] trait a source
//!   implements, the [`engine::SourceContext`] the engine builds for it, whose `personal`
//!   every record passes, returning the [`engine::Vetted`] proof a row requires), time windows
//!   and the plan of a run, the per-stream claim (advisory locks held by one lock-keeping
//!   connection, fenced by a token), one transaction per window with its watermark, run
//!   records, the scheduler, the completeness audit and `renormalize`.
//! - [`http`]: the HTTP client every source uses: rate ceiling, retries with backoff and jitter,
//!   `Retry-After`, an account-wide pause on 429.
//! - [`warehouse`]: the pool (TLS), the migrations of the workspace's `sql/` (embedded by
//!   `build.rs`), bookkeeping tables.
//! - [`telemetry`] and [`events`]: Prometheus metrics and logs; an event writes both at once.
//! - [`out`]: standard output that ends quietly when its reader goes away; [`shutdown`]: the
//!   signal every loop is given.

pub mod config;
pub mod engine;
pub mod events;
pub mod http;
pub mod model;
pub mod out;
pub mod privacy;
pub mod secret;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
pub mod warehouse;
