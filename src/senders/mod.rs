//! Senders: the SMTP servers deliveries may go through and the identities mail comes from,
//! set up by admins (`model`, `graphql`); their credentials and DKIM keys sealed under
//! CREDENTIALS_KEY (`secrets`); a mailing's sending window (`window`). The dispatcher reads
//! them (`dispatch::relays`) and shares each server's rate limits with every instance
//! (`dispatch::budget`).

pub mod graphql;
pub mod model;
pub mod secrets;
pub mod window;
