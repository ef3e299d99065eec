//! Notifications (docs/spec.md §8): events recorded for users by jobs enqueued in
//! the transaction of the change that caused them, rendered at read time
//! in the reader's language, read through the feed endpoints or pushed live
//! over Server-Sent Events.

pub mod deliver;
pub mod event;
pub mod hub;
pub mod notification;
pub mod queries;
pub mod retention;
pub mod routes;
pub mod stream;
pub mod stream_slots;
pub mod texts;
pub mod views;
