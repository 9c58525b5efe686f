//! Label values bounded in number: a metric labelled by callers or tenants names the first
//! [`MAX_LABELED`] it sees and counts the rest as `other`.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};

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

impl BoundedNames {
    /// Whether upstream `name` keeps its own label: a static namespace always; a tenant's
    /// upstream (`t{tenant}.{server}`, `catalog::naming::tenant_of`) if it is one of the first
    /// [`MAX_LABELED`] tenants' upstreams seen (else it counts as [`TENANT_OTHER`]).
    pub(super) fn keeps_upstream(&self, name: &str) -> bool {
        crate::catalog::naming::tenant_of(name).is_none() || self.keeps(name)
    }
}

/// The label of tenants' upstreams past the first [`MAX_LABELED`].
pub const TENANT_OTHER: &str = "tenant-other";

/// A label value that costs no allocation on the hot path: a literal, or a shared name.
#[derive(Clone, Debug)]
pub enum Name {
    /// A `'static` literal (method names, `gateway`).
    Static(&'static str),
    /// A shared string (upstream namespaces).
    Shared(Arc<str>),
}

impl Name {
    /// The text.
    pub fn as_str(&self) -> &str {
        match self {
            Name::Static(s) => s,
            Name::Shared(s) => s,
        }
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Name {}

impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl EncodeLabelValue for Name {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
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

    #[test]
    fn tenant_upstream_labels_are_bounded_and_static_ones_are_not() {
        let names = BoundedNames::default();
        assert!((0..MAX_LABELED).all(|i| names.keeps_upstream(&format!("t{i}.tools"))));
        assert!(!names.keeps_upstream("t9999.tools"), "past the bound");
        assert!(names.keeps_upstream("t7.tools"), "seen before: keeps its label");
        assert!(names.keeps_upstream("weather"), "static namespaces are never bounded");
    }
}
