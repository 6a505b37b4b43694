//! Schedules (helper in progress).
