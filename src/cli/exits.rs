//! Each command's exit status, in one place: shown at the end of its `--help` ("Exit status:
//! …"), and the README and docs/operations.md are checked against it (scripts/check-docs.py).
//! Every command exits 2 on a usage error (clap) and, where it reads the config, on a bad one.

pub const RUN: &str = "Exit status: 0 after a clean stop · 1 an error, or not stopped 20 s after the signal · 2 usage or config error";
pub const SYNC: &str = "Exit status: 0 every stream succeeded (or the vendor reported its tenant down: `unavailable`) · 1 a stream failed · 2 usage or config error · 3 partial (records set aside or a window failed; progress kept)";
pub const BACKFILL: &str = "Exit status: as `sync`: 0 every stream succeeded · 1 a stream failed · 2 usage or config error · 3 partial";
pub const AUDIT: &str = "Exit status: 0 every day's listing completed (repairs made or not) · 1 the audit failed · 2 usage or config error · 3 partial (some days' listings failed: nothing flagged for them)";
pub const RENORMALIZE: &str = "Exit status: 0 done (rows under another privacy policy, left as they are, and records that no longer make a row, set aside, are named in its lines) · 1 it failed (what was committed stays; run it again to resume) · 2 usage or config error";
pub const CHECK: &str = "Exit status: 0 all good (warnings included) · 1 something failed · 2 usage or config error, or no enabled stream (as `sync`)";
pub const MIGRATE: &str =
    "Exit status: 0 the schema is up to date · 1 the warehouse failed · 2 usage or config error";
pub const STATUS: &str = "Exit status: 0 · 1 warehouse unreachable · 2 usage or config error";
pub const DEMO: &str = "Exit status: 0 (with --once: every stream succeeded) · 1 the demo could not start, or (with --once) a stream failed · 2 usage error · 3 (with --once) a stream was partial";
pub const SIMULATE: &str =
    "Exit status: 0 after Ctrl-C · 1 cannot listen there, or an unknown --source · 2 usage error";
pub const WEBHOOKS_REGISTER: &str = "Exit status: 0 registered or updated · 1 the vendor refused (or could not be reached) · 2 usage or config error, no such enabled account, or it has no webhook settings";
pub const HEALTHCHECK: &str =
    "Exit status: 0 healthy (2xx within the timeout) · 1 not · 2 usage error";
pub const ERASE: &str = "Exit status: 0 (also when nothing matched) · 1 warehouse error · 2 usage or config error, no hash_key, or a hash key the warehouse still depends on was removed";
pub const PRIVACY_CHECK: &str = "Exit status: 0 every stored row follows the policy · 3 some do not · 1 failure · 2 usage or config error";
pub const PRIVACY_APPLY: &str = "Exit status: 0 all converted · 3 some need a re-read (`backfill`, named) · 1 failure · 2 usage or config error; with --dry-run as `privacy check`";
pub const PRIVACY_INVENTORY: &str = "Exit status: 0 · 2 usage error";
pub const RETENTION: &str = "Exit status: 0 · 1 failure · 2 usage or config error";
