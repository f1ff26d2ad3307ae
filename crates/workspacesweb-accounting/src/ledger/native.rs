//! The native (exponential) histogram of session durations: the buckets Prometheus's native
//! histograms use, filled exactly, one observation per terminated session.
//!
//! # Buckets
//!
//! A schema `s` (-4 to 8) divides each power of two into `2^s` buckets (for `s < 0`, one bucket
//! spans `2^-s` powers of two). Bucket `i` holds the values `v` with
//! `base^(i-1) < v <= base^i`, `base = 2^(2^-s)`: the upper bound is inclusive, and bucket 0 ends
//! at 1. With a zero threshold of 0, only a duration of exactly 0 goes to the zero bucket.
//!
//! The index is computed as Prometheus's Go client computes it (and as the Prometheus server
//! reads it back): `v = frac * 2^exp` with `frac` in `[0.5, 1)` (C's `frexp`); for `s > 0`, the
//! first of the schema's `2^s` fraction bounds that is `>= frac`, plus `(exp - 1) * 2^s`; for
//! `s <= 0`, `exp` (minus one when `frac == 0.5`, a power of two) divided by `2^-s`, rounding up.
//! The fraction bounds are not `2^(k/2^s - 1)` correctly rounded: they are the float64 values
//! of the Go client's table, which [`fraction_bounds`] rebuilds exactly (same recurrence, same
//! operations, from the Go values of the eight factors `2^(2^-s)`), so that a value on or next
//! to a bound lands in the bucket Prometheus puts it in.
//!
//! # Schema changes
//!
//! Lowering the schema merges buckets exactly (bucket `i` of schema `s` lies inside bucket
//! `ceil(i / 2^(s - t))` of schema `t < s`); raising it cannot split them, so the histogram
//! starts empty again ([`NativeHistogram::with_schema`]).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use crate::session::UnixMillis;

/// Lowest schema Prometheus accepts.
pub const MIN_SCHEMA: i8 = -4;
/// Highest schema Prometheus accepts.
pub const MAX_SCHEMA: i8 = 8;
/// Schema used unless configured (`global.native_histogram_schema`): 8 buckets per power of two,
/// each about 9 % wide.
pub const DEFAULT_SCHEMA: i8 = 3;

/// Half of the Go client's factor `2^(2^-s)` of each schema `s` from 1 to 8: its table's second
/// fraction bound, `0.5 * 2^(2^-s)` (halving and doubling are exact). `2^(1/2)` is one ulp below
/// the correctly rounded square root of 2, as Go's `math.Exp2` returned it.
const HALF_FACTORS: [f64; 8] = [
    0.7071067811865475,
    0.5946035575013605,
    0.5452538663326288,
    0.5221368912137069,
    0.5109485743270583,
    0.5054446430258502,
    0.5027149505564014,
    0.5013556375251013,
];

/// The fraction bounds of every schema from 0 to 8 (index = schema): built once.
static BOUNDS: LazyLock<Vec<Vec<f64>>> = LazyLock::new(build_bounds);

/// Builds the table as the Go client's generator does: schema `s` takes the bounds of `s - 1`
/// at its even positions and, at each odd position, the bound before it times `2^(2^-s)`.
fn build_bounds() -> Vec<Vec<f64>> {
    let mut all: Vec<Vec<f64>> = vec![vec![0.5]];
    for (i, half) in HALF_FACTORS.iter().enumerate() {
        let factor = 2.0 * half;
        let prev = &all[i];
        let n = prev.len() * 2;
        let mut bounds = Vec::with_capacity(n);
        bounds.push(0.5);
        for j in 0..n - 1 {
            let bound = if (j + 1) % 2 == 0 {
                prev[j / 2 + 1]
            } else {
                bounds[j] * factor
            };
            bounds.push(bound);
        }
        all.push(bounds);
    }
    all
}

/// The fraction bounds of a schema from 1 to 8 (empty for other schemas): `2^s` values in
/// `[0.5, 1)`, the first 0.5.
pub fn fraction_bounds(schema: i8) -> &'static [f64] {
    usize::try_from(schema)
        .ok()
        .filter(|s| (1..=8).contains(s))
        .and_then(|s| BOUNDS.get(s))
        .map_or(&[], Vec::as_slice)
}

/// `v = frac * 2^exp`, `frac` in `[0.5, 1)`, for a positive finite `v` (subnormals included).
fn frexp(v: f64) -> (f64, i32) {
    const MANTISSA: u64 = (1 << 52) - 1;
    let (v, shift) = if v < f64::MIN_POSITIVE {
        (v * f64::from_bits(0x4350_0000_0000_0000), 54) // * 2^54
    } else {
        (v, 0)
    };
    let bits = v.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let frac = f64::from_bits((bits & MANTISSA) | (1022 << 52));
    (frac, biased - 1022 - shift)
}

/// The index of the positive bucket of `v` under `schema`, `None` for the zero bucket (`v` of 0,
/// or not above the zero threshold of 0). `v` must not be NaN; `+Inf` goes to the bucket after
/// the last finite one, as in the Go client.
pub fn bucket_index(v: f64, schema: i8) -> Option<i32> {
    if v.is_nan() || v <= 0.0 {
        return None;
    }
    let infinite = v.is_infinite();
    let (frac, exp) = frexp(if infinite { f64::MAX } else { v });
    let key = if schema > 0 {
        let bounds = fraction_bounds(schema);
        let below = bounds.partition_point(|b| *b < frac) as i32;
        below + (exp - 1) * bounds.len() as i32
    } else {
        let exp = if frac == 0.5 { exp - 1 } else { exp };
        let shift = -i32::from(schema);
        (exp + (1 << shift) - 1) >> shift
    };
    Some(if infinite { key + 1 } else { key })
}

/// The upper bound (inclusive) of positive bucket `index` under `schema`, as Prometheus computes
/// it (`frac * 2^exp` from the same table).
pub fn upper_bound(index: i32, schema: i8) -> f64 {
    if schema <= 0 {
        let exp = index << -i32::from(schema);
        return 2f64.powi(exp);
    }
    let bounds = fraction_bounds(schema);
    let n = bounds.len() as i32;
    let frac = bounds[index.rem_euclid(n) as usize];
    let exp = index.div_euclid(n) + 1;
    frac * 2f64.powi(exp)
}

/// Where bucket `index` of schema `from` lies in the coarser schema `to <= from`.
pub fn coarser_index(index: i32, from: i8, to: i8) -> i32 {
    let delta = i32::from(from) - i32::from(to);
    ((index - 1) >> delta) + 1
}

/// The native histogram of one portal's session durations since its start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NativeHistogram {
    /// Bucket schema, [`MIN_SCHEMA`] to [`MAX_SCHEMA`].
    pub schema: i8,
    /// Observations of exactly 0.
    pub zero_count: u64,
    /// Positive buckets that hold observations: index → count.
    pub buckets: BTreeMap<i32, u64>,
    /// Number of observations.
    pub count: u64,
    /// Sum of the observations, in exact milliseconds.
    pub sum_ms: i64,
    /// When it started counting (the created timestamp): the portal's T0, or the moment it
    /// started empty after a restart from a state without it, or a raised schema.
    pub created_ms: UnixMillis,
}

impl Default for NativeHistogram {
    fn default() -> Self {
        NativeHistogram::new(DEFAULT_SCHEMA, 0)
    }
}

/// What became of stored native buckets under the configured schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeResume {
    /// Same schema: kept as stored.
    Kept,
    /// A lower schema: the stored buckets merged into it, exactly.
    Merged {
        /// The schema stored.
        from: i8,
    },
    /// A higher schema: the histogram starts empty.
    Raised {
        /// The schema stored.
        from: i8,
    },
    /// None stored (a state written before native histograms): the histogram starts empty.
    Absent,
}

impl NativeHistogram {
    /// An empty histogram of `schema` (clamped to the valid range) started at `created_ms`.
    pub fn new(schema: i8, created_ms: UnixMillis) -> Self {
        NativeHistogram {
            schema: schema.clamp(MIN_SCHEMA, MAX_SCHEMA),
            zero_count: 0,
            buckets: BTreeMap::new(),
            count: 0,
            sum_ms: 0,
            created_ms,
        }
    }

    /// Counts one duration, in milliseconds (observed as `ms / 1000` seconds).
    pub fn observe_ms(&mut self, ms: i64) {
        match bucket_index(ms as f64 / 1000.0, self.schema) {
            Some(i) => {
                let c = self.buckets.entry(i).or_insert(0);
                *c = c.saturating_add(1);
            }
            None => self.zero_count = self.zero_count.saturating_add(1),
        }
        self.count = self.count.saturating_add(1);
        self.sum_ms = self.sum_ms.saturating_add(ms);
    }

    /// Sum of the observations, in seconds.
    pub fn sum(&self) -> f64 {
        self.sum_ms as f64 / 1000.0
    }

    /// This histogram under `schema`: the same when equal, merged exactly when lower, and
    /// empty from `now_ms` when higher (buckets cannot be split).
    pub fn with_schema(self, schema: i8, now_ms: UnixMillis) -> (Self, NativeResume) {
        let schema = schema.clamp(MIN_SCHEMA, MAX_SCHEMA);
        let from = self.schema;
        if schema == from {
            return (self, NativeResume::Kept);
        }
        if schema > from {
            return (
                NativeHistogram::new(schema, now_ms),
                NativeResume::Raised { from },
            );
        }
        let mut buckets = BTreeMap::new();
        for (i, c) in self.buckets {
            let slot = buckets
                .entry(coarser_index(i, from, schema))
                .or_insert(0u64);
            *slot = slot.saturating_add(c);
        }
        let merged = NativeHistogram {
            schema,
            buckets,
            ..self
        };
        (merged, NativeResume::Merged { from })
    }

    /// Whether its counts add up: the buckets and the zero bucket make the count, no bucket is
    /// empty, the sum is not negative.
    pub fn is_consistent(&self) -> bool {
        let in_buckets = self
            .buckets
            .values()
            .try_fold(self.zero_count, |a, c| a.checked_add(*c));
        (MIN_SCHEMA..=MAX_SCHEMA).contains(&self.schema)
            && in_buckets == Some(self.count)
            && self.buckets.values().all(|c| *c > 0)
            && self.sum_ms >= 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Go client's table, schema 3 whole and schema 4's new odd positions: the rebuilt
    /// values are bit for bit these.
    #[test]
    fn the_rebuilt_bounds_are_the_go_clients() {
        assert_eq!(
            fraction_bounds(3),
            [
                0.5,
                0.5452538663326288,
                0.5946035575013605,
                0.6484197773255048,
                0.7071067811865475,
                0.7711054127039704,
                0.8408964152537144,
                0.9170040432046711,
            ]
        );
        let s4 = fraction_bounds(4);
        let odd = [
            0.5221368912137069,
            0.5693943173783458,
            0.620928906036742,
            0.6771277734684463,
            0.7384130729697496,
            0.805245165974627,
            0.8781260801866495,
            0.9576032806985735,
        ];
        for (k, v) in odd.iter().enumerate() {
            assert_eq!(s4[2 * k + 1], *v, "schema 4, position {}", 2 * k + 1);
        }
        let s8 = fraction_bounds(8);
        assert_eq!(s8.len(), 256);
        assert_eq!(s8[1], 0.5013556375251013);
        assert_eq!(s8[2], 0.5027149505564014);
        assert_eq!(s8[128], 0.7071067811865475);
        assert_eq!(s8[254], 0.9945994234836328);
        assert_eq!(s8[255], 0.9972960560854698);
        // Each bound is 2^(k/2^s - 1) to within a few dozen ulps (the chained products of the Go
        // generator drift a little; the values above are what must match exactly).
        for s in 1..=8 {
            for (k, b) in fraction_bounds(s).iter().enumerate() {
                let exact = 2f64.powf(k as f64 / f64::from(1u32 << s) - 1.0);
                assert!((b - exact).abs() <= 64.0 * f64::EPSILON * exact, "{s} {k}");
            }
        }
    }

    #[test]
    fn frexp_splits_like_c() {
        assert_eq!(frexp(1.0), (0.5, 1));
        assert_eq!(frexp(0.75), (0.75, 0));
        assert_eq!(frexp(3.0), (0.75, 2));
        assert_eq!(frexp(f64::MAX).1, 1024);
        let tiny = f64::from_bits(1); // the smallest subnormal, 2^-1074
        assert_eq!(frexp(tiny), (0.5, -1073));
    }

    fn next_up(v: f64) -> f64 {
        f64::from_bits(v.to_bits() + 1)
    }

    fn next_down(v: f64) -> f64 {
        f64::from_bits(v.to_bits() - 1)
    }

    /// Every upper bound of every schema, over a range of powers of two, lands in its own bucket
    /// (inclusive); the next float above lands in the next bucket, the one below stays.
    #[test]
    fn bounds_are_inclusive_upper_bounds_in_every_schema() {
        for schema in MIN_SCHEMA..=MAX_SCHEMA {
            let per_power = if schema > 0 { 1i32 << schema } else { 1 };
            let lo = -12 * per_power;
            let hi = 50 * per_power;
            for i in lo..=hi {
                let b = upper_bound(i, schema);
                assert_eq!(
                    bucket_index(b, schema),
                    Some(i),
                    "bound of {i}, schema {schema}"
                );
                assert_eq!(
                    bucket_index(next_up(b), schema),
                    Some(i + 1),
                    "above {i}, schema {schema}"
                );
                let below = bucket_index(next_down(b), schema);
                let lower = upper_bound(i - 1, schema);
                let expect = if next_down(b) > lower { i } else { i - 1 };
                assert_eq!(below, Some(expect), "below {i}, schema {schema}");
            }
        }
    }

    #[test]
    fn known_placements() {
        // Schema 0: (0.5, 1] is bucket 0, (1, 2] bucket 1, (2, 4] bucket 2.
        assert_eq!(bucket_index(1.0, 0), Some(0));
        assert_eq!(bucket_index(1.5, 0), Some(1));
        assert_eq!(bucket_index(2.0, 0), Some(1));
        assert_eq!(bucket_index(2.000_001, 0), Some(2));
        // Schema -1: (1, 4] is bucket 1, (4, 16] bucket 2.
        assert_eq!(bucket_index(4.0, -1), Some(1));
        assert_eq!(bucket_index(5.0, -1), Some(2));
        // Schema 3: 64 s = 2^6 is the upper bound of bucket 48.
        assert_eq!(bucket_index(64.0, 3), Some(48));
        assert_eq!(bucket_index(64.001, 3), Some(49));
        assert_eq!(bucket_index(0.001, 3), Some(-79));
        assert_eq!(bucket_index(0.0, 3), None);
        assert_eq!(bucket_index(f64::INFINITY, 0), Some(1025));
    }

    #[test]
    fn lowering_the_schema_merges_exactly() {
        let values_ms = [
            1, 999, 1000, 1001, 60_000, 64_000, 64_001, 3_600_000, 86_400_000, 0,
        ];
        for from in MIN_SCHEMA..=MAX_SCHEMA {
            let mut h = NativeHistogram::new(from, 5);
            values_ms.iter().for_each(|ms| h.observe_ms(*ms));
            for to in MIN_SCHEMA..=from {
                let (merged, how) = h.clone().with_schema(to, 99);
                let mut direct = NativeHistogram::new(to, 5);
                values_ms.iter().for_each(|ms| direct.observe_ms(*ms));
                assert_eq!(merged, direct, "{from} -> {to}");
                let expect = if to == from {
                    NativeResume::Kept
                } else {
                    NativeResume::Merged { from }
                };
                assert_eq!(how, expect);
            }
            if from < MAX_SCHEMA {
                let (raised, how) = h.clone().with_schema(from + 1, 99);
                assert_eq!(raised, NativeHistogram::new(from + 1, 99));
                assert_eq!(how, NativeResume::Raised { from });
            }
        }
    }
}
