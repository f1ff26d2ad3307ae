//! The control API of sessions: ground truth, and sessions and raw records added or ended by tests.

use bytes::Bytes;

use super::Simulator;
use crate::error::SimError;
use crate::portals::RawRecord;
use crate::record::{SimSession, UnixMillis};

impl Simulator {
    /// Ground truth: the sessions `ListSessions` would list (all pages, no filter) at `at_ms`,
    /// oldest start first; `end_ms` is `None` for those active at `at_ms`. Empty for an unknown portal.
    pub fn sessions_at(&self, portal_id: &str, at_ms: UnixMillis) -> Vec<SimSession> {
        self.state
            .portals
            .get(portal_id)
            .map(|p| p.state().store.at(at_ms))
            .unwrap_or_default()
    }

    /// Ground truth now (by the simulator's clock).
    pub fn sessions_now(&self, portal_id: &str) -> Vec<SimSession> {
        self.sessions_at(portal_id, self.state.clock.now_ms())
    }

    /// Every session starting in `[from_ms, to_ms)` with its planned end, even if that lies in
    /// the future (what will happen, not what is listed).
    pub fn timeline(
        &self,
        portal_id: &str,
        from_ms: UnixMillis,
        to_ms: UnixMillis,
    ) -> Vec<SimSession> {
        self.state
            .portals
            .get(portal_id)
            .map(|p| p.state().store.timeline(from_ms, to_ms))
            .unwrap_or_default()
    }

    /// Adds a session to a portal (scripted or generated); it is listed once the clock reaches its start.
    pub fn add_session(&self, portal_id: &str, session: SimSession) -> Result<(), SimError> {
        self.state
            .portals
            .find(portal_id)?
            .state()
            .store
            .add(&session)
    }

    /// Adds a raw wire record (a JSON object, sent verbatim) that `ListSessions` lists on its last
    /// page, possibly making it longer than `maxResults`: for malformed or incomplete records (no
    /// `sessionId`, no `startTime`, an unknown `status`...). Filters compare its fields as strings.
    pub fn add_raw_record(
        &self,
        portal_id: &str,
        record: serde_json::Value,
    ) -> Result<(), SimError> {
        let bytes = Bytes::from(record.to_string());
        self.push_raw(
            portal_id,
            RawRecord {
                bytes,
                fields: Some(record),
            },
        )
    }

    /// Like [`add_raw_record_bytes`](Self::add_raw_record_bytes), but listed whatever the filters,
    /// as by a server that lets a record through its `status` filter (e.g. an unknown status, or a
    /// `status` that is not a string).
    pub fn add_raw_record_unfiltered(
        &self,
        portal_id: &str,
        bytes: impl Into<Bytes>,
    ) -> Result<(), SimError> {
        self.push_raw(
            portal_id,
            RawRecord {
                bytes: bytes.into(),
                fields: None,
            },
        )
    }

    /// Like [`add_raw_record`](Self::add_raw_record), but with arbitrary bytes spliced into the
    /// `sessions` array as they are (non-UTF-8, broken JSON...). Filters compare the fields of the
    /// lossy UTF-8 reading of the bytes when that parses as JSON; otherwise the record matches
    /// every filter.
    pub fn add_raw_record_bytes(
        &self,
        portal_id: &str,
        bytes: impl Into<Bytes>,
    ) -> Result<(), SimError> {
        let bytes = bytes.into();
        let fields = serde_json::from_str(&String::from_utf8_lossy(&bytes)).ok();
        self.push_raw(portal_id, RawRecord { bytes, fields })
    }

    fn push_raw(&self, portal_id: &str, record: RawRecord) -> Result<(), SimError> {
        self.state
            .portals
            .find(portal_id)?
            .state()
            .raw_records
            .push(record);
        Ok(())
    }

    /// Removes every raw record of a portal.
    pub fn clear_raw_records(&self, portal_id: &str) -> Result<(), SimError> {
        self.state
            .portals
            .find(portal_id)?
            .state()
            .raw_records
            .clear();
        Ok(())
    }

    /// Ends a session at `end_ms` (it shows as Terminated once the clock reaches `end_ms`).
    pub fn end_session(
        &self,
        portal_id: &str,
        session_id: &str,
        end_ms: UnixMillis,
    ) -> Result<(), SimError> {
        self.state
            .portals
            .find(portal_id)?
            .state()
            .store
            .end(session_id, end_ms)
    }
}
