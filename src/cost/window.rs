//! Spending over the trailing hour: 60 one-minute buckets of nanodollars in a ring with a
//! running total, so adding and reading are O(1) (a bucket is emptied when its minute comes
//! round again) and memory is fixed whatever the traffic.

use std::sync::Mutex;

/// Minutes the window spans: spending older than this is forgotten.
pub const MINUTES: u64 = 60;

/// Nanodollars (10⁻⁹ $) in a dollar: spending is summed in integers, so the running total
/// never drifts the way sums and differences of floats do.
pub const NANOS_PER_DOLLAR: f64 = 1e9;

/// Dollars as whole nanodollars (negative, NaN: 0; saturating).
pub fn nanos(dollars: f64) -> u64 {
    if dollars.is_finite() && dollars > 0.0 { (dollars * NANOS_PER_DOLLAR).round() as u64 } else { 0 }
}

struct Ring {
    /// The minute (since the owner's epoch) of the newest bucket.
    head: u64,
    buckets: [u64; MINUTES as usize],
    total: u64,
}

impl Ring {
    /// Move the head to `minute`, emptying the buckets of the minutes passed over.
    fn advance(&mut self, minute: u64) {
        if minute <= self.head {
            return;
        }
        if minute - self.head >= MINUTES {
            self.buckets = [0; MINUTES as usize];
            self.total = 0;
        } else {
            for m in self.head + 1..=minute {
                let i = (m % MINUTES) as usize;
                self.total -= self.buckets[i];
                self.buckets[i] = 0;
            }
        }
        self.head = minute;
    }
}

/// The spending of the minutes `now - 59 ..= now` (see the module doc).
pub struct Window(Mutex<Ring>);

impl Default for Window {
    fn default() -> Self {
        Window(Mutex::new(Ring { head: 0, buckets: [0; MINUTES as usize], total: 0 }))
    }
}

impl Window {
    /// Add `nanos` spent in `minute` (a minute before the newest one counts in the newest);
    /// returns the total of the trailing hour after it.
    pub fn add(&self, minute: u64, nanos: u64) -> u64 {
        let mut r = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        r.advance(minute);
        let i = (r.head % MINUTES) as usize;
        r.buckets[i] = r.buckets[i].saturating_add(nanos);
        r.total = r.total.saturating_add(nanos);
        r.total
    }

    /// The total of the trailing hour at `minute`, in nanodollars.
    pub fn spent(&self, minute: u64) -> u64 {
        let mut r = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        r.advance(minute);
        r.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spending_ages_out_minute_by_minute() {
        let w = Window::default();
        assert_eq!(w.add(0, 5), 5);
        assert_eq!(w.add(30, 7), 12);
        assert_eq!(w.spent(59), 12, "minute 0 is still within the hour at minute 59");
        assert_eq!(w.spent(60), 7, "minute 0 has aged out");
        assert_eq!(w.add(60, 1), 8);
        assert_eq!(w.spent(89), 8);
        assert_eq!(w.spent(90), 1, "minute 30 has aged out");
        assert_eq!(w.spent(500), 0, "a long quiet spell empties the window");
        assert_eq!(w.add(3, 2), 2, "a late minute counts in the newest");
    }

    #[test]
    fn dollars_become_whole_nanodollars() {
        assert_eq!(nanos(0.000_000_001), 1);
        assert_eq!(nanos(1.5), 1_500_000_000);
        assert_eq!((nanos(-1.0), nanos(f64::NAN), nanos(f64::INFINITY)), (0, 0, 0));
    }
}
