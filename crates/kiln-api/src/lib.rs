//! API (in progress).
