//! Label values bounded in number: a metric labelled by callers or tenants names the first
//! [`MAX_LABELED`] it sees and counts the rest as `other`.

use std::sync::Arc;

/// Distinct callers (and, apart, tenants) that get a label value of their own in
/// `sekisho_rate_limited_total`; later ones are counted as `other`, so a fleet of keys from
/// the store cannot grow the exposition without bound.
pub const MAX_LABELED: usize = 200;

/// A set of label values bounded at [`MAX_LABELED`]: a value seen before (or while there is
/// room) keeps its name, any other is to be counted as `other`.
#[derive(Default)]
pub(super) struct BoundedNames(std::sync::Mutex<std::collections::HashSet<Arc<str>>>);

impl BoundedNames {
    /// Whether `name` keeps its own label: it is one of the first [`MAX_LABELED`] seen.
    pub(super) fn keeps(&self, name: &str) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.contains(name) {
            return true;
        }
        seen.len() < MAX_LABELED && seen.insert(Arc::from(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_bounded() {
        let names = BoundedNames::default();
        assert!((0..MAX_LABELED).all(|i| names.keeps(&format!("k{i}"))));
        assert!(!names.keeps("late"), "past the bound");
        assert!(names.keeps("k7"), "a name seen before keeps its label");
    }
}
