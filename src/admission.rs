//! Who may open one more: connections to a door, streams of a kind. A bound in total and a
//! bound per client, so one client cannot take what every client shares; a [`Ticket`] is held
//! while the thing is open and gives its place back when dropped.
//!
//! Used by the gRPC door (connections, Watch streams), the DNS door (TCP connections) and the
//! gateway (MCP sessions). Pure bookkeeping: no sockets, no clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Why a client was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    #[error("the limit of {limit} open at once is reached")]
    Full { limit: usize },
    #[error("this client already has {limit} open (the limit per client)")]
    ClientFull { limit: usize },
}

/// The bounds of one kind of thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub total: usize,
    pub per_client: usize,
}

/// Counts what is open, in total and per client address.
#[derive(Debug)]
pub struct Admission {
    bounds: Bounds,
    // std Mutex: held for a map update only, never across an await.
    open: Mutex<Open>,
    refused: AtomicU64,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

impl Admission {
    pub fn new(bounds: Bounds) -> Arc<Admission> {
        Arc::new(Admission {
            bounds,
            open: Mutex::new(Open::default()),
            refused: AtomicU64::new(0),
        })
    }

    pub fn bounds(&self) -> Bounds {
        self.bounds
    }

    /// A place for one more from `client`, or why not.
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Result<Ticket, Refusal> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let refusal = if open.total >= self.bounds.total {
            Some(Refusal::Full {
                limit: self.bounds.total,
            })
        } else if open.by_client.get(&client).copied().unwrap_or(0) >= self.bounds.per_client {
            Some(Refusal::ClientFull {
                limit: self.bounds.per_client,
            })
        } else {
            None
        };
        if let Some(refusal) = refusal {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(refusal);
        }
        open.total += 1;
        *open.by_client.entry(client).or_default() += 1;
        Ok(Ticket {
            admission: Arc::clone(self),
            client,
        })
    }

    /// How many are open now.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).total
    }

    /// How full it is, from 0 to 1.
    pub fn pressure(&self) -> f64 {
        self.open() as f64 / self.bounds.total.max(1) as f64
    }

    /// Refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn release(&self, client: IpAddr) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.by_client.get_mut(&client) {
            *count -= 1;
            if *count == 0 {
                open.by_client.remove(&client);
            }
        }
    }
}

/// One admitted place; given back when dropped.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    client: IpAddr,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.release(self.client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn one_client_cannot_take_every_place_and_places_come_back() {
        let admission = Admission::new(Bounds {
            total: 4,
            per_client: 2,
        });
        let a1 = admission.admit(ip("10.0.0.1")).unwrap();
        let _a2 = admission.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(
            admission.admit(ip("10.0.0.1")).unwrap_err(),
            Refusal::ClientFull { limit: 2 }
        );
        let _b1 = admission.admit(ip("10.0.0.2")).unwrap();
        let _b2 = admission.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(
            admission.admit(ip("10.0.0.3")).unwrap_err(),
            Refusal::Full { limit: 4 }
        );
        assert_eq!(admission.refused(), 2);
        assert!((admission.pressure() - 1.0).abs() < f64::EPSILON);
        drop(a1);
        assert_eq!(admission.open(), 3);
        admission.admit(ip("10.0.0.3")).unwrap();
    }
}
