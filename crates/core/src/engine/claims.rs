//! Which streams this process runs, held in PostgreSQL without holding a connection per stream.
//!
//! A running stream spends nearly all its time waiting on its vendor, so it must not keep a
//! warehouse connection for its run. Mutual exclusion across processes stays in PostgreSQL:
//! one **lock-keeping connection** per process holds the session-level advisory locks of all
//! the streams it runs (taken from the pool while any stream runs, given back when none does).
//!
//! The claim is **fenced**: after taking a stream's lock, the run bumps the stream's token
//! (`sync_state.claim`, see [`crate::warehouse::bump_claim`]), and every window it commits
//! checks, under that row's lock, that the token is still its own and that the lock-keeping
//! backend still holds the lock ([`crate::warehouse::still_claimed`]). A process whose
//! lock-keeping connection dropped or was terminated therefore never commits another window of
//! the stream, even if no other process has taken it yet; [`Claim::lost`] also stops its run's
//! fetches at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::model::StreamKey;
use crate::warehouse::{self, Warehouse, WarehouseError};

/// How often the lock-keeping connection is looked at while it holds locks.
const WATCH_EVERY: Duration = Duration::from_millis(200);

/// The lock-keeping connection of one process, shared by all its runs.
#[derive(Clone)]
pub struct Claims {
    warehouse: Warehouse,
    keeper: Arc<Mutex<Keeper>>,
}

#[derive(Default)]
struct Keeper {
    held: Option<Held>,
    /// Bumped for each connection taken, so a watcher knows its own.
    generation: u64,
}

/// The connection while it holds at least one lock.
struct Held {
    conn: deadpool_postgres::Object,
    pid: i32,
    generation: u64,
    /// Cancelled when the connection is found closed: every claim made on it is lost.
    lost: CancellationToken,
    /// Locks held on it.
    count: usize,
}

impl Held {
    /// Forgets a connection that broke: its locks went with its backend, and it is never
    /// handed back to the pool.
    fn discard(self) {
        self.lost.cancel();
        let _ = deadpool_postgres::Object::take(self.conn);
    }
}

/// A stream this process holds (until [`Claims::release`]).
pub struct Claim {
    key: StreamKey,
    pid: i32,
    generation: u64,
    token: Option<i64>,
    lost: CancellationToken,
}

impl Claim {
    /// Bumps the stream's fencing token; every commit of this run checks it.
    pub async fn fence(
        &mut self,
        c: &impl tokio_postgres::GenericClient,
    ) -> Result<(), WarehouseError> {
        self.token = Some(warehouse::bump_claim(c, &self.key).await?);
        Ok(())
    }

    /// Inside a window's transaction: whether the stream is still this process's (its row is
    /// then locked until the commit); a run that lost it ends with `RunError::LostClaim`.
    pub async fn holds(
        &self,
        c: &impl tokio_postgres::GenericClient,
        schema: &str,
    ) -> Result<bool, WarehouseError> {
        let token = self.token.unwrap_or(-1);
        Ok(!self.lost.is_cancelled()
            && warehouse::still_claimed(c, schema, &self.key, token, self.pid).await?)
    }

    /// Cancelled as soon as the lock-keeping connection is found closed.
    pub fn lost(&self) -> &CancellationToken {
        &self.lost
    }
}

/// How [`Claims::claim_waiting`] ended.
pub(super) enum Waited {
    Claimed(Claim),
    /// Still held by another when the wait was over.
    Busy,
    /// Cancelled while waiting.
    Stopped,
}

impl Claims {
    pub fn new(warehouse: Warehouse) -> Self {
        Claims {
            warehouse,
            keeper: Arc::default(),
        }
    }

    /// Takes the stream's lock, waiting up to `wait` while another holder (its sync) has it,
    /// checking every half second; stops waiting when `cancel` fires. For the audit and
    /// `renormalize`, which must write a stream's rows under the claim its sync takes.
    pub(super) async fn claim_waiting(
        &self,
        key: &StreamKey,
        wait: Duration,
        cancel: Option<&CancellationToken>,
    ) -> Result<Waited, WarehouseError> {
        let until = std::time::Instant::now() + wait;
        loop {
            if let Some(c) = self.try_claim(key).await? {
                return Ok(Waited::Claimed(c));
            }
            if std::time::Instant::now() >= until {
                return Ok(Waited::Busy);
            }
            let pause = tokio::time::sleep(Duration::from_millis(500));
            match cancel {
                Some(cancel) => tokio::select! {
                    _ = cancel.cancelled() => return Ok(Waited::Stopped),
                    _ = pause => {}
                },
                None => pause.await,
            }
        }
    }

    /// Takes the stream's lock if no process holds it; `None` when another one does.
    pub async fn try_claim(&self, key: &StreamKey) -> Result<Option<Claim>, WarehouseError> {
        let mut keeper = self.keeper.lock().await;
        if keeper
            .held
            .as_ref()
            .is_some_and(|h| h.conn.is_closed() || h.lost.is_cancelled())
            && let Some(h) = keeper.held.take()
        {
            h.discard();
        }
        let h = match keeper.held.take() {
            Some(h) => keeper.held.insert(h),
            None => {
                let conn = self.warehouse.conn().await?;
                let pid = warehouse::backend_pid(&conn).await?;
                keeper.generation += 1;
                let generation = keeper.generation;
                tokio::spawn(watch(self.keeper.clone(), generation));
                keeper.held.insert(Held {
                    conn,
                    pid,
                    generation,
                    lost: CancellationToken::new(),
                    count: 0,
                })
            }
        };
        match warehouse::try_lock_stream(&h.conn, self.warehouse.schema(), key).await {
            Ok(true) => {
                h.count += 1;
                Ok(Some(Claim {
                    key: key.clone(),
                    pid: h.pid,
                    generation: h.generation,
                    token: None,
                    lost: h.lost.clone(),
                }))
            }
            Ok(false) => {
                if h.count == 0 {
                    // Holding nothing: back to the pool.
                    keeper.held = None;
                }
                Ok(None)
            }
            Err(e) => {
                if let Some(h) = keeper.held.take() {
                    h.discard();
                }
                Err(e)
            }
        }
    }

    /// Gives the stream's lock back (nothing to do when it was lost with its connection).
    pub async fn release(&self, claim: Claim) {
        let mut keeper = self.keeper.lock().await;
        let Some(h) = keeper.held.as_mut() else {
            return;
        };
        if h.generation != claim.generation || claim.lost.is_cancelled() {
            return;
        }
        match warehouse::unlock_stream(&h.conn, self.warehouse.schema(), &claim.key).await {
            Ok(()) => {
                h.count = h.count.saturating_sub(1);
                if h.count == 0 {
                    // No lock left on it: back to the pool.
                    keeper.held = None;
                }
            }
            Err(e) => {
                tracing::warn!(stream = %claim.key, error = %e, "could not release the stream's lock; closing the connection that holds it");
                if let Some(h) = keeper.held.take() {
                    h.discard();
                }
            }
        }
    }
}

/// Watches the lock-keeping connection of `generation` while it holds locks: once it is
/// closed (the server went away or the backend was terminated) every claim on it is lost.
async fn watch(keeper: Arc<Mutex<Keeper>>, generation: u64) {
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        let mut k = keeper.lock().await;
        match k.held.as_ref() {
            Some(h) if h.generation == generation => {
                if h.conn.is_closed() {
                    tracing::warn!(
                        backend = h.pid,
                        streams = h.count,
                        "the connection that holds the running streams' locks was closed; they stop at their next window"
                    );
                    if let Some(h) = k.held.take() {
                        h.discard();
                    }
                    return;
                }
            }
            // Given back, or replaced after it broke.
            _ => return,
        }
    }
}
