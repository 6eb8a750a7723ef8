//! A lock-free latency histogram: log-linear buckets (16 per power of two, so a value is
//! known within 1/16), recorded from every connection task with one atomic add.

use std::sync::atomic::{AtomicU64, Ordering};

const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
/// Values up to 2^40 µs (12 days) are distinguished; larger ones share the last bucket.
const BUCKETS: usize = (40 * SUB) as usize;

/// Latencies in microseconds.
pub struct Histogram {
    buckets: Vec<AtomicU64>,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

fn index(value: u64) -> usize {
    if value < SUB {
        return value as usize;
    }
    let power = 63 - value.leading_zeros();
    let sub = (value >> (power - SUB_BITS)) & (SUB - 1);
    (((power - SUB_BITS + 1) as u64 * SUB + sub) as usize).min(BUCKETS - 1)
}

/// The largest value a bucket holds.
fn upper(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB {
        return index;
    }
    let power = index / SUB + u64::from(SUB_BITS) - 1;
    let sub = index % SUB;
    ((SUB + sub + 1) << (power - u64::from(SUB_BITS))) - 1
}

impl Histogram {
    /// Records one value.
    pub fn record(&self, micros: u64) {
        self.buckets[index(micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// Forgets every value.
    pub fn reset(&self) {
        for b in &self.buckets {
            b.store(0, Ordering::Relaxed);
        }
    }

    /// The values at the given quantiles (0.0 to 1.0), in µs; `None` when empty.
    pub fn quantiles(&self, qs: &[f64]) -> Option<Vec<u64>> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        Some(
            qs.iter()
                .map(|q| {
                    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
                    let mut seen = 0;
                    for (i, c) in counts.iter().enumerate() {
                        seen += c;
                        if seen >= rank {
                            return upper(i);
                        }
                    }
                    upper(BUCKETS - 1)
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bound_their_values() {
        for v in [
            0,
            1,
            15,
            16,
            17,
            31,
            32,
            100,
            1000,
            12_345,
            999_999,
            1 << 35,
        ] {
            let i = index(v);
            assert!(upper(i) >= v, "{v} above bucket {i} ({})", upper(i));
            assert!(upper(i) - v <= v / 16 + 1, "{v} in a bucket too wide");
            if i > 0 {
                assert!(upper(i - 1) < v, "{v} belongs to an earlier bucket");
            }
        }
    }

    #[test]
    fn quantiles_of_a_uniform_run() {
        let h = Histogram::default();
        for v in 1..=1000 {
            h.record(v);
        }
        let q = h.quantiles(&[0.5, 0.99, 1.0]).unwrap();
        assert!((480..=530).contains(&q[0]), "{q:?}");
        assert!((960..=1040).contains(&q[1]), "{q:?}");
        assert!(q[2] >= 1000);
        h.reset();
        assert!(h.quantiles(&[0.5]).is_none());
    }
}
