//! Connections per client IP: `max.connections.per.ip` and
//! `max.connections.per.ip.overrides`, as Kafka's `ConnectionQuotas` counts them.
//!
//! The accept loop asks for an [`IpSlot`] before it serves a connection; a connection over its
//! IP's limit is closed at once. The slot is given back when the connection's task ends
//! (dropped, so also on a panic or an abort). The limits change live with the dynamic broker
//! configs ([`ConnectionQuotas::set_limits`]); connections already open stay. Invariant: an IP's count equals the slots alive
//! for it, and IPs with no slot have no entry (the map holds at most one entry per open
//! connection).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Connection counts per client IP against their limits.
pub struct ConnectionQuotas {
    limits: std::sync::RwLock<Limits>,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// `max.connections.per.ip` and its overrides.
struct Limits {
    per_ip_max: usize,
    overrides: HashMap<IpAddr, usize>,
}

/// One connection counted against its IP; released when dropped.
pub struct IpSlot {
    quotas: Arc<ConnectionQuotas>,
    ip: IpAddr,
}

impl ConnectionQuotas {
    pub fn new(per_ip_max: usize, overrides: HashMap<IpAddr, usize>) -> Arc<ConnectionQuotas> {
        Arc::new(ConnectionQuotas {
            limits: std::sync::RwLock::new(Limits {
                per_ip_max,
                overrides,
            }),
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// Replaces the limits (a dynamic config change); they apply to new connections.
    pub fn set_limits(&self, per_ip_max: usize, overrides: HashMap<IpAddr, usize>) {
        *self
            .limits
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Limits {
            per_ip_max,
            overrides,
        };
    }

    /// The limit for `ip`: its override, else `max.connections.per.ip`.
    pub fn limit(&self, ip: IpAddr) -> usize {
        // Each update replaces the whole value; a panic elsewhere cannot leave it half done.
        let limits = self
            .limits
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        limits
            .overrides
            .get(&ip)
            .copied()
            .unwrap_or(limits.per_ip_max)
    }

    /// Counts a new connection from `ip`, or `None` if `ip` is at its limit.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let limit = self.limit(ip);
        let mut counts = self.lock();
        let count = counts.entry(ip).or_insert(0);
        if *count >= limit {
            if *count == 0 {
                counts.remove(&ip);
            }
            return None;
        }
        *count += 1;
        Some(IpSlot {
            quotas: Arc::clone(self),
            ip,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // Each update is one insert or decrement; a panic elsewhere cannot leave it half done.
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = self.quotas.lock();
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_apply_per_ip_with_overrides_and_slots_come_back() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let blocked: IpAddr = "10.0.0.3".parse().unwrap();
        let quotas = ConnectionQuotas::new(2, HashMap::from([(b, 1), (blocked, 0)]));
        let first = quotas.try_acquire(a).expect("first");
        let _second = quotas.try_acquire(a).expect("second");
        assert!(quotas.try_acquire(a).is_none());
        let _only = quotas.try_acquire(b).expect("b's one");
        assert!(quotas.try_acquire(b).is_none());
        assert!(quotas.try_acquire(blocked).is_none());
        drop(first);
        assert!(quotas.try_acquire(a).is_some());
        assert!(!quotas.lock().contains_key(&blocked));
        quotas.set_limits(2, HashMap::from([(blocked, 1)]));
        assert!(quotas.try_acquire(blocked).is_some());
    }
}
