//! VM naming and ownership (docs/compatibility.md#vm-naming, docs/compatibility.md#ownership).
//!
//! VM name = runner name = `<scale-set-name>-<5 chars [a-z0-9]>`. The controller
//! generates names itself so a failed deploy can always be deleted by name, and owns
//! exactly the VMs whose name is its scale-set name, one dash and a five-character
//! suffix: scale set `mac` owns `mac-x7k2p` but never `mac-large-x7k2p`.

use std::fmt;

use rand::Rng;

use crate::VmBackendError;

/// Length of the random suffix.
pub const SUFFIX_LEN: usize = 5;
/// Longest name Orka accepts, suffix included.
pub const MAX_NAME_LEN: usize = 63;
const SUFFIX_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A VM name owned by one scale set: `<scale_set>-<suffix>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VmName {
    scale_set: String,
    suffix: String,
}

impl VmName {
    /// A fresh random name for `scale_set`. Fails when the result would break Orka's
    /// naming rules (the scale-set name is validated here, before any deploy).
    pub fn generate(scale_set: &str) -> Result<Self, VmBackendError> {
        validate_scale_set_name(scale_set)?;
        Ok(Self::with_suffix(scale_set, random_suffix(&mut rand::rng())))
    }

    /// The same scale set with a new random suffix (used once after a name conflict).
    pub fn regenerate(&self) -> Self {
        Self::with_suffix(&self.scale_set, random_suffix(&mut rand::rng()))
    }

    /// Parses `name` as a VM of `scale_set`; `None` when `scale_set` does not own it.
    pub fn parse_owned(scale_set: &str, name: &str) -> Option<Self> {
        let suffix = name.strip_prefix(scale_set)?.strip_prefix('-')?;
        let well_formed = suffix.len() == SUFFIX_LEN && suffix.bytes().all(|b| SUFFIX_ALPHABET.contains(&b));
        well_formed.then(|| Self::with_suffix(scale_set, suffix.to_owned()))
    }

    /// The owning scale set's name.
    pub fn scale_set(&self) -> &str {
        &self.scale_set
    }

    /// The random suffix.
    pub fn suffix(&self) -> &str {
        &self.suffix
    }

    fn with_suffix(scale_set: &str, suffix: String) -> Self {
        Self { scale_set: scale_set.to_owned(), suffix }
    }
}

impl fmt::Display for VmName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.scale_set, self.suffix)
    }
}

/// Whether `scale_set` owns the VM called `name` (the exact ownership test).
pub fn is_owned_by(scale_set: &str, name: &str) -> bool {
    VmName::parse_owned(scale_set, name).is_some()
}

/// Checks that VMs of `scale_set` will have names Orka accepts:
/// `^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`, at most 63 characters with the suffix.
pub fn validate_scale_set_name(scale_set: &str) -> Result<(), VmBackendError> {
    let full_len = scale_set.len() + 1 + SUFFIX_LEN;
    let starts_with_letter = scale_set.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
    let allowed = scale_set.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !starts_with_letter || !allowed || full_len > MAX_NAME_LEN {
        return Err(VmBackendError::Config(format!(
            "scale set name {scale_set:?} cannot prefix Orka VM names: it must start with a \
             lowercase letter, use only lowercase letters, digits and '-', and be at most {} characters",
            MAX_NAME_LEN - 1 - SUFFIX_LEN
        )));
    }
    Ok(())
}

/// Whether `name` satisfies Orka's VM naming rules.
pub fn is_valid_vm_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    name.len() <= MAX_NAME_LEN
        && first.is_ascii_lowercase()
        && (last.is_ascii_lowercase() || last.is_ascii_digit())
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

fn random_suffix(rng: &mut impl Rng) -> String {
    (0..SUFFIX_LEN).map(|_| SUFFIX_ALPHABET[rng.random_range(0..SUFFIX_ALPHABET.len())] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_is_exact() {
        assert!(is_owned_by("mac", "mac-x7k2p"));
        for foreign in
            ["mac-large-x7k2p", "mac-x7k2", "macx7k2p", "other-x7k2p", "mac-x7k2pq", "mac-X7K2P", "mac-"]
        {
            assert!(!is_owned_by("mac", foreign), "mac must not own {foreign}");
        }
        assert!(is_owned_by("mac-large", "mac-large-x7k2p"));
    }

    #[test]
    fn generated_names_are_owned_valid_and_distinct() {
        let a = VmName::generate("mac").unwrap();
        let b = a.regenerate();
        for name in [&a, &b] {
            let text = name.to_string();
            assert!(is_owned_by("mac", &text), "{text}");
            assert!(is_valid_vm_name(&text), "{text}");
            assert_eq!(VmName::parse_owned("mac", &text).as_ref(), Some(name));
        }
        // 36^5 possibilities: two equal draws in a row would point at a broken generator.
        assert_ne!(a, VmName::generate("mac").unwrap().regenerate().regenerate());
    }

    #[test]
    fn scale_set_names_that_break_orka_rules_are_rejected() {
        for bad in ["", "Mac", "1mac", "mac_os", "mac.os", &"m".repeat(58)] {
            assert!(VmName::generate(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(VmName::generate(&"m".repeat(57)).is_ok());
    }

    #[test]
    fn vm_name_rules() {
        assert!(is_valid_vm_name("a"));
        assert!(is_valid_vm_name("ci-7k2pq"));
        assert!(!is_valid_vm_name("ci-"));
        assert!(!is_valid_vm_name("-ci"));
        assert!(!is_valid_vm_name(&"a".repeat(64)));
    }
}
