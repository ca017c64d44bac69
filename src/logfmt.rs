//! Log-safe formatting: values that came from the network are escaped before they are logged,
//! so that a request cannot forge log lines or terminal escapes.

use std::fmt;

/// Displays a string with control characters, quotes and backslashes escaped.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.0.chars().any(|c| c.is_control() || c == '"' || c == '\\') {
            return f.write_str(self.0);
        }
        for c in self.0.chars() {
            if c.is_control() || c == '"' || c == '\\' {
                write!(f, "{}", c.escape_default())?;
            } else {
                fmt::Write::write_char(f, c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Escaped;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(Escaped("/a b").to_string(), "/a b");
        assert_eq!(
            Escaped("x\nFAKE line\u{1b}[31m\"").to_string(),
            "x\\nFAKE line\\u{1b}[31m\\\""
        );
    }
}
