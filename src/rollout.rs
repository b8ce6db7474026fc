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

/// One batch of a rollout: the hosts deployed together (indices into the targeted hosts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub hosts: Vec<usize>,
    /// The `first` item this batch deploys (`first = ["db", …]`), or `None` for the rest.
    pub first: Option<String>,
}

/// The `first` hosts of a rollout, resolved: one stage per `first` item, in order, each the
/// targeted hosts it matches (in inventory order) that no earlier item took.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirstStages(pub Vec<(String, Vec<usize>)>);

impl Policy {
    /// Splits `count` targeted hosts into batches of host indices: each `first` stage alone
    /// (in order), then the rest (in inventory order): the canary batch, then batches of
    /// `batch` hosts, a percentage being of the rest.
    pub fn batches(&self, count: usize, first: &FirstStages) -> Vec<Batch> {
        let mut batches: Vec<Batch> = Vec::new();
        for (item, hosts) in &first.0 {
            let hosts: Vec<usize> = hosts.iter().copied().filter(|&i| i < count).collect();
            if !hosts.is_empty() {
                batches.push(Batch {
                    hosts,
                    first: Some(item.clone()),
                });
            }
        }
        let taken: std::collections::HashSet<usize> = batches
            .iter()
            .flat_map(|b| b.hosts.iter().copied())
            .collect();
        let rest: Vec<usize> = (0..count).filter(|i| !taken.contains(i)).collect();
        let mut next = 0;
        let canary = self.canary.min(rest.len());
        let mut push = |hosts: &[usize]| {
            batches.push(Batch {
                hosts: hosts.to_vec(),
                first: None,
            })
        };
        if canary > 0 {
            push(&rest[..canary]);
            next = canary;
        }
        let size = self.batch.map_or(rest.len(), |b| b.of(rest.len())).max(1);
        while next < rest.len() {
            let end = (next + size).min(rest.len());
            push(&rest[next..end]);
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

    /// The host indices of each batch, for `first` given as (item, hosts) pairs.
    fn plan(policy: &Policy, count: usize, first: &[(&str, &[usize])]) -> Vec<Vec<usize>> {
        let first = FirstStages(
            first
                .iter()
                .map(|(item, hosts)| (item.to_string(), hosts.to_vec()))
                .collect(),
        );
        policy
            .batches(count, &first)
            .into_iter()
            .map(|b| b.hosts)
            .collect()
    }

    #[test]
    fn canary_then_percentage_batches() {
        assert_eq!(
            plan(&policy(1, "30%"), 10, &[]),
            vec![vec![0], vec![1, 2, 3], vec![4, 5, 6], vec![7, 8, 9]]
        );
    }

    #[test]
    fn count_batches_and_no_canary() {
        assert_eq!(
            plan(&policy(0, "2"), 5, &[]),
            vec![vec![0, 1], vec![2, 3], vec![4]]
        );
        assert_eq!(plan(&Policy::default(), 3, &[]), vec![vec![0, 1, 2]]);
        assert_eq!(plan(&policy(5, "1"), 2, &[]), vec![vec![0, 1]]);
        assert!(plan(&Policy::default(), 0, &[]).is_empty());
    }

    #[test]
    fn first_stages_go_alone_in_order_then_canary_and_batches_over_the_rest() {
        // db (hosts 3 and 7) first, then cache (host 0), then the rest: canary 1, then 50% of
        // the 7 remaining hosts (4 at a time).
        let batches = policy(1, "50%").batches(
            10,
            &FirstStages(vec![("db".into(), vec![3, 7]), ("cache".into(), vec![0])]),
        );
        assert_eq!(
            batches,
            vec![
                Batch {
                    hosts: vec![3, 7],
                    first: Some("db".into())
                },
                Batch {
                    hosts: vec![0],
                    first: Some("cache".into())
                },
                Batch {
                    hosts: vec![1],
                    first: None
                },
                Batch {
                    hosts: vec![2, 4, 5, 6],
                    first: None
                },
                Batch {
                    hosts: vec![8, 9],
                    first: None
                },
            ]
        );
        // Without [rollout] otherwise: the first stage, then everyone else at once.
        assert_eq!(
            plan(&Policy::default(), 4, &[("db", &[1])]),
            vec![vec![1], vec![0, 2, 3]]
        );
        // Only first hosts targeted: no empty batch after them; an empty stage is no batch.
        assert_eq!(
            plan(&policy(1, "1"), 2, &[("db", &[0, 1]), ("none", &[])]),
            vec![vec![0, 1]]
        );
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
