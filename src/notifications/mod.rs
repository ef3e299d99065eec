//! Notifications: events recorded for users by jobs enqueued with the change
//! that caused them. The feed endpoints, texts and the live stream come with
//! the notifications issue.

pub mod deliver;
pub mod notification;
