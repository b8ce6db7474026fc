//! Host name ranges: `web-[01:20]` is web-01 … web-20; several ranges in one name multiply.

/// The most hosts one name may expand to: the product of all its ranges.
pub const MAX_HOSTS_PER_NAME: u64 = 100_000;

/// What is wrong with a host name pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("`{pattern}` expands to more than {MAX_HOSTS_PER_NAME} hosts")]
    TooMany { pattern: String },
    #[error("unclosed `[` in host name `{pattern}`")]
    Unclosed { pattern: String },
    #[error("unbalanced `]` in host name `{pattern}`")]
    Unbalanced { pattern: String },
    #[error("range `[{range}]` in `{pattern}` has no `:`")]
    NoColon { pattern: String, range: String },
    #[error("range `[{range}]` in `{pattern}`: `{number}` is not a number")]
    NotANumber {
        pattern: String,
        range: String,
        number: String,
    },
    #[error("range `[{range}]` in `{pattern}` goes backwards")]
    Backwards { pattern: String, range: String },
}

impl RangeError {
    /// The same for every range error: how a range is written.
    pub fn hint(&self) -> &'static str {
        "a range looks like `web-[01:20]`: two numbers, the first not larger; leading zeros set the width; all ranges of one name together make at most 100000 hosts"
    }
}

/// A piece of a host name pattern.
enum Part<'a> {
    Text(&'a str),
    Range { first: u64, last: u64, width: usize },
}

/// Expands numeric ranges in a host name: `web-[01:03]` → web-01, web-02, web-03. The number
/// of names is checked before any is built: at most [`MAX_HOSTS_PER_NAME`].
pub fn expand_range(pattern: &str) -> Result<Vec<String>, RangeError> {
    let parts = parse(pattern)?;
    let mut count: u64 = 1;
    for part in &parts {
        if let Part::Range { first, last, .. } = part {
            count = (last - first)
                .checked_add(1)
                .and_then(|n| count.checked_mul(n))
                .filter(|n| *n <= MAX_HOSTS_PER_NAME)
                .ok_or_else(|| RangeError::TooMany {
                    pattern: pattern.to_string(),
                })?;
        }
    }
    let mut names = vec![String::new()];
    for part in parts {
        match part {
            Part::Text(text) => names.iter_mut().for_each(|n| n.push_str(text)),
            Part::Range { first, last, width } => {
                let mut longer = Vec::with_capacity(names.len() * (last - first + 1) as usize);
                for name in &names {
                    for number in first..=last {
                        longer.push(format!("{name}{number:0width$}"));
                    }
                }
                names = longer;
            }
        }
    }
    Ok(names)
}

fn parse(pattern: &str) -> Result<Vec<Part<'_>>, RangeError> {
    let mut parts = Vec::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('[') {
        parts.push(text_part(pattern, &rest[..open])?);
        let close =
            rest[open..]
                .find(']')
                .map(|i| i + open)
                .ok_or_else(|| RangeError::Unclosed {
                    pattern: pattern.to_string(),
                })?;
        let inner = &rest[open + 1..close];
        let (start, end) = inner.split_once(':').ok_or_else(|| RangeError::NoColon {
            pattern: pattern.to_string(),
            range: inner.to_string(),
        })?;
        let number = |s: &str| {
            // u64 has 20 digits: a longer number is a typo (and a width nobody wants).
            s.parse::<u64>()
                .ok()
                .filter(|_| s.len() <= 20)
                .ok_or_else(|| RangeError::NotANumber {
                    pattern: pattern.to_string(),
                    range: inner.to_string(),
                    number: s.to_string(),
                })
        };
        let (first, last) = (number(start)?, number(end)?);
        if first > last {
            return Err(RangeError::Backwards {
                pattern: pattern.to_string(),
                range: inner.to_string(),
            });
        }
        let width = if start.len() > 1 && start.starts_with('0') {
            start.len()
        } else {
            0
        };
        parts.push(Part::Range { first, last, width });
        rest = &rest[close + 1..];
    }
    parts.push(text_part(pattern, rest)?);
    Ok(parts)
}

fn text_part<'a>(pattern: &str, text: &'a str) -> Result<Part<'a>, RangeError> {
    if text.contains(']') {
        return Err(RangeError::Unbalanced {
            pattern: pattern.to_string(),
        });
    }
    Ok(Part::Text(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_zero_padded_ranges() {
        assert_eq!(
            expand_range("web-[01:03]").unwrap(),
            ["web-01", "web-02", "web-03"]
        );
        assert_eq!(
            expand_range("db[8:10].x").unwrap(),
            ["db8.x", "db9.x", "db10.x"]
        );
        assert_eq!(
            expand_range("r[1:2]-[3:4]").unwrap(),
            ["r1-3", "r1-4", "r2-3", "r2-4"]
        );
        assert_eq!(
            expand_range("r[1:2]-[a:b]").unwrap_err().to_string(),
            "range `[a:b]` in `r[1:2]-[a:b]`: `a` is not a number"
        );
        assert!(
            expand_range("web-[3:1]")
                .unwrap_err()
                .to_string()
                .contains("goes backwards")
        );
        assert!(
            expand_range("web]")
                .unwrap_err()
                .to_string()
                .contains("unbalanced")
        );
        assert!(
            expand_range("web-[1:2")
                .unwrap_err()
                .to_string()
                .contains("unclosed")
        );
    }

    #[test]
    fn the_cap_is_on_the_product_of_all_ranges() {
        // Each range alone is under the cap; together they are 10^10 names, refused unbuilt.
        let started = std::time::Instant::now();
        for name in [
            "h-[1:1000]-[1:1000]",
            "h-[1:100000]-[1:100000]",
            "h[0:18446744073709551615]",
            "h[1:100001]",
        ] {
            assert_eq!(
                expand_range(name).unwrap_err().to_string(),
                format!("`{name}` expands to more than 100000 hosts"),
            );
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(expand_range("h-[1:100]-[1:1000]").unwrap().len(), 100_000);
    }
}
