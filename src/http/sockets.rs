//! How many WebSockets this instance holds: at most WS_MAX_PER_IP from one client address
//! and a total below the open-file limit, so sockets can never take the descriptors the
//! database pool, SMTP and ordinary requests need.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::Config;

/// Descriptors kept for everything but sockets, besides the pool and SMTP connections:
/// HTTP requests in flight, the listener, files, the embedded PostgreSQL's pipes.
const RESERVE: u64 = 256;

/// The open sockets, by client address.
pub struct Sockets {
    open: AtomicUsize,
    by_ip: Mutex<HashMap<IpAddr, u32>>,
    max_total: usize,
    max_per_ip: u32,
}

/// Why a socket was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// WS_MAX_PER_IP sockets from this address are open.
    TooManyFromAddress,
    /// The instance holds as many sockets as it may.
    Full,
}

/// One admitted socket; it counts until dropped.
pub struct Admitted {
    sockets: Arc<Sockets>,
    ip: Option<IpAddr>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.sockets.open.fetch_sub(1, Ordering::SeqCst);
        if let Some(ip) = self.ip {
            let mut by_ip = self.sockets.by_ip.lock().expect("sockets lock");
            if let Some(n) = by_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    by_ip.remove(&ip);
                }
            }
        }
    }
}

impl Sockets {
    /// The limits of `config`; the total from WS_MAX_CONNECTIONS, else from the open-file
    /// limit (raised to its hard limit first, as servers do) less a reserve.
    pub fn new(config: &Config) -> Sockets {
        let max_total = match config.http.ws_max_connections {
            Some(n) => n as usize,
            None => {
                let files = raise_open_file_limit();
                let reserve = RESERVE + 2 * u64::from(config.db.db_pool_size) + u64::from(config.mail.smtp_concurrency);
                files.saturating_sub(reserve).max(16) as usize
            }
        };
        Sockets {
            open: AtomicUsize::new(0),
            by_ip: Mutex::default(),
            max_total,
            max_per_ip: config.http.ws_max_per_ip,
        }
    }

    pub fn max_total(&self) -> usize {
        self.max_total
    }

    /// Counts a new socket from `ip`, or says why it may not open.
    pub fn admit(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<Admitted, Refused> {
        if self.open.fetch_add(1, Ordering::SeqCst) >= self.max_total {
            self.open.fetch_sub(1, Ordering::SeqCst);
            return Err(Refused::Full);
        }
        if let Some(ip) = ip {
            let mut by_ip = self.by_ip.lock().expect("sockets lock");
            let n = by_ip.entry(ip).or_insert(0);
            if *n >= self.max_per_ip {
                drop(by_ip);
                self.open.fetch_sub(1, Ordering::SeqCst);
                return Err(Refused::TooManyFromAddress);
            }
            *n += 1;
        }
        Ok(Admitted {
            sockets: self.clone(),
            ip,
        })
    }
}

/// RLIMIT_NOFILE's soft limit raised to the hard one; the limit now in force.
fn raise_open_file_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Err(_) => 1024,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_are_counted_per_address_and_in_all() {
        let config = Config::from_args(["server", "--ws-max-per-ip", "2", "--ws-max-connections", "3"]).unwrap();
        let sockets = Arc::new(Sockets::new(&config));
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = sockets.admit(Some(a)).unwrap();
        let _second = sockets.admit(Some(a)).unwrap();
        assert_eq!(sockets.admit(Some(a)).err(), Some(Refused::TooManyFromAddress));
        let _third = sockets.admit(Some(b)).unwrap();
        assert_eq!(sockets.admit(Some(b)).err(), Some(Refused::Full));
        drop(first);
        assert!(sockets.admit(Some(a)).is_ok());
    }

    #[test]
    fn the_total_follows_the_open_file_limit() {
        let config = Config::from_args(["server"]).unwrap();
        let sockets = Sockets::new(&config);
        let (soft, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        assert!(sockets.max_total() < soft as usize, "{} of {soft}", sockets.max_total());
    }
}
