//! Scrubbing secret values out of anything shown to a person.

use resttap_config::Secrets;

/// Replaces every known secret value (as written and percent-encoded) with `***`.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    needles: Vec<String>,
}

impl Redactor {
    /// A redactor for the values in `secrets`.
    pub fn new(secrets: &Secrets) -> Self {
        let mut r = Redactor::default();
        for s in secrets.values() {
            r.add(s.expose());
        }
        r
    }

    /// Adds a value to scrub.
    pub fn add(&mut self, value: &str) {
        if value.is_empty() {
            return;
        }
        let encoded: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
        for v in [value.to_string(), encoded] {
            if !self.needles.contains(&v) {
                self.needles.push(v);
            }
        }
        // longest first, so that a secret containing another is replaced whole
        self.needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
    }

    /// Whether `text` holds a known secret value (as written or percent-encoded).
    pub fn contains_secret(&self, text: &str) -> bool {
        self.needles.iter().any(|n| text.contains(n.as_str()))
    }

    /// `text` with every secret replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for n in &self.needles {
            if out.contains(n.as_str()) {
                out = out.replace(n.as_str(), "***");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_plain_and_encoded() {
        let mut r = Redactor::default();
        r.add("s3cr3t/+=");
        assert_eq!(r.redact("token=s3cr3t%2F%2B%3D&x=s3cr3t/+="), "token=***&x=***");
        assert_eq!(r.redact("nothing here"), "nothing here");
    }
}
