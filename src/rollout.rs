//! Staged rollouts: the `[rollout]` policy, splitting targeted hosts into batches, and when to halt.

use std::time::Duration;

/// A host count given as a number or a percentage of the targeted hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    Count(usize),
    Percent(u32),
}

/// What is wrong with an amount as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("`{0}` is not a percentage")]
    NotAPercentage(String),
    #[error("`{0}` is more than 100%")]
    OverAHundred(String),
    #[error("`{0}` is neither a count nor a percentage like \"25%\"")]
    Neither(String),
}

/// The playbook points the message at the value with `SourceFile::error_at`, which takes text.
impl Amount {
    /// Parses `3` or `"30%"` (as written in TOML, already turned into text).
    pub fn parse(text: &str) -> Result<Self, AmountError> {
        let text = text.trim();
        if let Some(p) = text.strip_suffix('%') {
            let p: u32 = p
                .trim()
                .parse()
                .map_err(|_| AmountError::NotAPercentage(text.to_string()))?;
            if p > 100 {
                return Err(AmountError::OverAHundred(text.to_string()));
            }
            Ok(Self::Percent(p))
        } else {
            text.parse()
                .map(Self::Count)
                .map_err(|_| AmountError::Neither(text.to_string()))
        }
    }

    /// Hosts this amount stands for among `total`; a percentage rounds up (`30%` of 10 is 3,
    /// of 5 is 2), so a non-zero percentage is never zero hosts.
    pub fn of(self, total: usize) -> usize {
        match self {
            Self::Count(n) => n,
            Self::Percent(p) => (total * p as usize).div_ceil(100),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// The failed batch goes back to its previous release, then the rollout stops.
    Rollback,
    /// The rollout stops where it is.
    Halt,
}

/// The `[rollout]` section, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub canary: usize,
    /// `None`: all remaining hosts in one batch.
    pub batch: Option<Amount>,
    pub pause: Duration,
    pub max_failures: Amount,
    pub on_failure: OnFailure,
}

impl Default for Policy {
    /// Without `[rollout]`: every host at once, any failure fails the run, nothing rolled back.
    fn default() -> Self {
        Self {
            canary: 0,
            batch: None,
            pause: Duration::ZERO,
            max_failures: Amount::Count(0),
            on_failure: OnFailure::Halt,
        }
    }
}

impl Policy {
    /// Splits `count` hosts (in inventory order) into batches of host indices: the canary
    /// batch first, then batches of `batch` hosts (of the whole targeted count).
    pub fn batches(&self, count: usize) -> Vec<Vec<usize>> {
        let mut batches = Vec::new();
        let mut next = 0;
        let canary = self.canary.min(count);
        if canary > 0 {
            batches.push((0..canary).collect());
            next = canary;
        }
        let size = self.batch.map_or(count, |b| b.of(count)).max(1);
        while next < count {
            let end = (next + size).min(count);
            batches.push((next..end).collect());
            next = end;
        }
        batches
    }

    /// True when `failed` hosts out of `total` exceed what the policy tolerates.
    pub fn exceeded(&self, failed: usize, total: usize) -> bool {
        let tolerated = match self.max_failures {
            Amount::Count(n) => n,
            // A percentage tolerates up to that share, rounded down: 10% of 5 hosts is 0.
            Amount::Percent(p) => total * p as usize / 100,
        };
        failed > tolerated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(canary: usize, batch: &str) -> Policy {
        Policy {
            canary,
            batch: Some(Amount::parse(batch).unwrap()),
            ..Policy::default()
        }
    }

    #[test]
    fn canary_then_percentage_batches() {
        let batches = policy(1, "30%").batches(10);
        assert_eq!(
            batches,
            vec![vec![0], vec![1, 2, 3], vec![4, 5, 6], vec![7, 8, 9]]
        );
    }

    #[test]
    fn count_batches_and_no_canary() {
        assert_eq!(
            policy(0, "2").batches(5),
            vec![vec![0, 1], vec![2, 3], vec![4]]
        );
        assert_eq!(Policy::default().batches(3), vec![vec![0, 1, 2]]);
        assert_eq!(policy(5, "1").batches(2), vec![vec![0, 1]]);
        assert!(Policy::default().batches(0).is_empty());
    }

    #[test]
    fn amounts_parse_counts_and_percentages() {
        assert_eq!(Amount::parse("25%").unwrap(), Amount::Percent(25));
        assert_eq!(Amount::parse("3").unwrap(), Amount::Count(3));
        assert!(Amount::parse("150%").is_err());
        assert!(Amount::parse("many").is_err());
        assert_eq!(Amount::Percent(30).of(5), 2);
        assert_eq!(Amount::Percent(1).of(10), 1);
    }

    #[test]
    fn failures_beyond_the_tolerance_halt() {
        let mut p = Policy::default();
        assert!(!p.exceeded(0, 10));
        assert!(p.exceeded(1, 10));
        p.max_failures = Amount::Count(1);
        assert!(!p.exceeded(1, 10));
        assert!(p.exceeded(2, 10));
        p.max_failures = Amount::Percent(20);
        assert!(!p.exceeded(2, 10));
        assert!(p.exceeded(3, 10));
    }
}
