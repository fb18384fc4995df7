//! Deliverability: what happens after a send. Bounces and complaints come in three ways
//! (the SMTP reply, the bounce mailbox over IMAP, provider webhooks), are tied to their
//! delivery by a signed VERP token, recorded once each, and put addresses on the owner's
//! suppression list, which every run's expansion leaves out.

pub mod bounces;
pub mod classify;
pub mod graphql;
pub mod mailbox;
pub mod report;
pub mod ses;
pub mod suppressions;
pub mod verp;
pub mod webhooks;
