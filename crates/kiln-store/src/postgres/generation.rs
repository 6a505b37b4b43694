//! The database-wide write counter that lets the API's answer cache serve on PostgreSQL.
//!
//! Every write transaction bumps one row (in the same transaction, under the writer lock, so
//! once per batch); a read transaction reads it in its own snapshot, so an answer knows the
//! generation it was read at. A cached answer may be served only if a counter read that *began
//! after the request arrived* returns that generation: no write committed since the answer
//! was read, and every write acknowledged before the request arrived (by any process) had
//! committed, so had bumped the counter, before that read began.
//!
//! Those counter reads are coalesced: a caller is served by the first one sent after it
//! arrived, so concurrent Gets share one round trip, and at most a few are in flight at once.
//!
//! The row lives in `settings` rather than a table of its own, so that it needs no migration of
//! its own. A Kiln that writes without bumping it (one from before it) must not share the
//! database with one that caches: the counter ships with schema version 2 (the build leases),
//! which such Kilns refuse.

use super::PgStore;
use crate::error::StoreError;
use std::sync::{Condvar, Mutex};

/// The `settings` row holding the counter.
pub(super) const NAME: &str = "kiln.write-generation";

/// What a failed counter read answers: never the generation of a stored answer.
const UNKNOWN: u64 = u64::MAX;

/// The prepared statements (see `txn::DEFERRED`) that bump the counter (creating it on first
/// use) and read it, by name; `EXECUTE`d inside simple queries, so planned once per connection.
pub(super) const PREPARED: &[(&str, &str)] = &[
    (
        BUMP,
        "INSERT INTO settings (name, value) VALUES ('kiln.write-generation', '1')
         ON CONFLICT (name) DO UPDATE SET value = (settings.value::bigint + 1)::text",
    ),
    (
        READ,
        "SELECT value FROM settings WHERE name = 'kiln.write-generation'",
    ),
];
pub(super) const BUMP: &str = "kiln_bump_generation";
pub(super) const READ: &str = "kiln_read_generation";

/// The counter's text as stored; an absent row is generation 0.
pub(super) fn parse(value: Option<&str>) -> Result<u64, StoreError> {
    match value {
        None => Ok(0),
        Some(v) => v.parse().map_err(|_| StoreError::Corrupt {
            arn: NAME.to_string(),
            message: format!("the write generation '{v}' is not a number"),
        }),
    }
}

#[derive(Default)]
pub(super) struct Counter {
    state: Mutex<State>,
    read: Condvar,
}

#[derive(Default)]
struct State {
    /// Counter reads numbered so far; a read is numbered just before it is sent.
    sent: u64,
    /// The highest-numbered read answered so far, and its answer.
    answered: u64,
    value: u64,
    in_flight: usize,
}

/// Most counter reads in flight at once. A caller is served by the first read sent after it
/// arrived; with one in flight it waits for the rest of that one and then a whole one, with a
/// few it sends its own at once.
const MAX_IN_FLIGHT: usize = 3;

impl PgStore {
    /// The write generation as read by a query sent after this call began; see the module doc.
    pub(super) fn current_generation(&self) -> u64 {
        let counter = &self.counter;
        let mut state = super::lock(&counter.state);
        // Any read numbered from here on is sent after now.
        let wanted = state.sent + 1;
        loop {
            if state.answered >= wanted {
                return state.value;
            }
            if state.sent < wanted && state.in_flight < MAX_IN_FLIGHT {
                state.in_flight += 1;
                state.sent += 1;
                let mine = state.sent;
                drop(state);
                let value = self.read_generation().unwrap_or(UNKNOWN);
                state = super::lock(&counter.state);
                state.in_flight -= 1;
                // A later-numbered read that answered first saw at least as much.
                if mine > state.answered {
                    state.answered = mine;
                    state.value = value;
                }
                counter.read.notify_all();
                continue;
            }
            state = counter.read.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// One round trip on a pooled connection, outside any transaction: it sees every commit
    /// that ended before it began.
    fn read_generation(&self) -> Result<u64, StoreError> {
        let mut conn = self.connect()?;
        match conn.client.simple_query(&format!("EXECUTE {READ}")) {
            Ok(messages) => {
                self.put_back(conn);
                parse(first_value(&messages))
            }
            Err(e) => {
                if super::is_closed(&e, &conn) {
                    drop(conn);
                    self.forget();
                } else {
                    self.put_back(conn);
                }
                Err(e.into())
            }
        }
    }
}

/// The first column of the first row a simple query returned.
pub(super) fn first_value(messages: &[postgres::SimpleQueryMessage]) -> Option<&str> {
    messages.iter().find_map(|m| match m {
        postgres::SimpleQueryMessage::Row(row) => row.get(0),
        _ => None,
    })
}
