-- Fencing for streams whose runs hold no connection while they wait on a vendor. A replica that
-- takes a stream's advisory lock bumps `claim` and remembers the value; every window it commits
-- checks, under the row lock of this row, that the value is still its own and that its
-- lock-keeping connection still holds the lock. A replica that lost the lock (its connection
-- dropped or was terminated) therefore never commits another window of the stream: the next
-- holder's bump waits for any commit in flight, and every later commit of the old one fails.

ALTER TABLE sync_state ADD COLUMN claim bigint NOT NULL DEFAULT 0;
COMMENT ON COLUMN sync_state.claim IS 'Fencing token: bumped by each process that takes the stream''s lock; a window commits only under the value its process took';
