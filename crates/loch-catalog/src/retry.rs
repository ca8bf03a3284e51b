//! The one retry policy of pointer changes. A commit, drop or view change that lost the
//! compare-and-swap to another writer is applied again to the new state, as often and as
//! patiently as the table's Iceberg `commit.retry.*` properties say, within bounds that keep a
//! request from being held for long (the client has its own retries).

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

/// Longest wait between two attempts inside one request.
const MAX_WAIT_CAP: Duration = Duration::from_secs(1);
/// Longest total wait inside one request.
const TOTAL_WAIT_CAP: Duration = Duration::from_secs(10);

/// How often and how patiently a lost race is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first.
    pub retries: u32,
    /// First wait.
    pub min_wait: Duration,
    /// Longest wait.
    pub max_wait: Duration,
    /// Total wait.
    pub total_wait: Duration,
}

impl RetryPolicy {
    /// The server's policy: `retries` re-applications (`catalog.commit-retries`), Iceberg's
    /// default waits (100 ms doubling) within the caps.
    pub fn server(retries: u32) -> Self {
        Self { retries, min_wait: Duration::from_millis(100), max_wait: MAX_WAIT_CAP, total_wait: TOTAL_WAIT_CAP }
    }

    /// A table's policy: its `commit.retry.num-retries`, `min-wait-ms`, `max-wait-ms` and
    /// `total-timeout-ms`, the server's policy where one is missing or unreadable, and the
    /// waits within the caps.
    pub fn for_table(properties: &HashMap<String, String>, server_retries: u32) -> Self {
        let server = Self::server(server_retries);
        let number = |key: &str| properties.get(key).and_then(|v| v.trim().parse::<u64>().ok());
        let millis =
            |key: &str, default: Duration, cap: Duration| number(key).map_or(default, Duration::from_millis).min(cap);
        let min_wait = millis("commit.retry.min-wait-ms", server.min_wait, MAX_WAIT_CAP);
        Self {
            retries: number("commit.retry.num-retries").map_or(server.retries, |n| n.min(100) as u32),
            min_wait,
            max_wait: millis("commit.retry.max-wait-ms", server.max_wait, MAX_WAIT_CAP).max(min_wait),
            total_wait: millis("commit.retry.total-timeout-ms", server.total_wait, TOTAL_WAIT_CAP),
        }
    }

    /// Runs `attempt(n)` (n = 0, 1, ...) until it succeeds, fails with an error `conflict` does
    /// not accept, or the policy is spent; the error comes back with the number of attempts.
    pub async fn run<T, E, Fut>(
        &self,
        mut attempt: impl FnMut(u32) -> Fut,
        conflict: impl Fn(&E) -> bool,
    ) -> Result<T, (E, u32)>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.min_wait)
            .with_max_delay(self.max_wait)
            .with_max_times(self.retries as usize)
            .with_total_delay(Some(self.total_wait))
            .with_jitter();
        let mut attempts = 0u32;
        let outcome = (|| {
            let n = attempts;
            attempts += 1;
            attempt(n)
        })
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|e| conflict(e))
        .notify(|_, wait| lost_race(wait))
        .await;
        outcome.map_err(|e| (e, attempts))
    }
}

/// Runs `attempt(0)`; if it loses the race (`conflict`), awaits `policy` — reading a table's
/// policy costs a metadata read, so only a lost race pays it — and applies the change again as
/// that policy allows. An error comes back with the number of attempts made.
pub async fn run_with_retries<T, E, Fut>(
    policy: impl Future<Output = RetryPolicy>,
    mut attempt: impl FnMut(u32) -> Fut,
    conflict: impl Fn(&E) -> bool,
) -> Result<T, (E, u32)>
where
    Fut: Future<Output = Result<T, E>>,
{
    let lost = match attempt(0).await {
        Err(e) if conflict(&e) => e,
        other => return other.map_err(|e| (e, 1)),
    };
    let policy = policy.await;
    if policy.retries == 0 {
        return Err((lost, 1));
    }
    // The first retry waits like any other; the rest of the policy runs from there.
    lost_race(policy.min_wait);
    tokio::time::sleep(policy.min_wait).await;
    let rest = RetryPolicy {
        retries: policy.retries - 1,
        min_wait: (policy.min_wait * 2).min(policy.max_wait),
        total_wait: policy.total_wait.saturating_sub(policy.min_wait),
        ..policy
    };
    rest.run(|n| attempt(n + 1), conflict).await.map_err(|(e, n)| (e, n + 1))
}

/// Logs and counts a retry after a lost race.
fn lost_race(wait: Duration) {
    tracing::debug!(?wait, "a change lost the pointer race; applying it again to the new state");
    metrics::counter!("loch_catalog_commit_retries_total").increment(1);
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[test]
    fn table_properties_set_the_policy_within_the_caps() {
        let props = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(RetryPolicy::for_table(&HashMap::new(), 4), RetryPolicy::server(4));
        let policy = RetryPolicy::for_table(
            &props(&[
                ("commit.retry.num-retries", "50"),
                ("commit.retry.min-wait-ms", "5"),
                ("commit.retry.max-wait-ms", "200"),
                ("commit.retry.total-timeout-ms", "1800000"),
            ]),
            4,
        );
        assert_eq!(
            policy,
            RetryPolicy {
                retries: 50,
                min_wait: Duration::from_millis(5),
                max_wait: Duration::from_millis(200),
                total_wait: TOTAL_WAIT_CAP
            }
        );
        let odd = RetryPolicy::for_table(&props(&[("commit.retry.num-retries", "many")]), 3);
        assert_eq!(odd.retries, 3, "an unreadable value falls back to the server's");
    }

    #[tokio::test]
    async fn conflicts_are_retried_as_often_as_the_policy_allows_and_other_errors_never() {
        let policy = RetryPolicy { retries: 3, ..RetryPolicy::server(0) };
        let policy = RetryPolicy { min_wait: Duration::from_millis(1), max_wait: Duration::from_millis(2), ..policy };
        let calls = AtomicU32::new(0);
        let always_conflict = policy
            .run(
                |_| async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err::<(), _>("conflict")
                },
                |e| *e == "conflict",
            )
            .await;
        assert_eq!(always_conflict, Err(("conflict", 4)));
        assert_eq!(calls.load(Ordering::SeqCst), 4);

        let third_time =
            policy.run(|n| async move { if n < 2 { Err("conflict") } else { Ok(n) } }, |e| *e == "conflict");
        assert_eq!(third_time.await, Ok(2));

        let other = policy.run(|_| async { Err::<(), _>("broken") }, |e| *e == "conflict");
        assert_eq!(other.await, Err(("broken", 1)));
    }

    #[tokio::test]
    async fn the_policy_is_read_only_after_a_lost_race() {
        let read = AtomicU32::new(0);
        let policy = || async {
            read.fetch_add(1, Ordering::SeqCst);
            RetryPolicy {
                retries: 2,
                min_wait: Duration::from_millis(1),
                max_wait: Duration::from_millis(1),
                ..RetryPolicy::server(0)
            }
        };
        let first = run_with_retries(policy(), |n| async move { Ok::<_, &str>(n) }, |e| *e == "conflict");
        assert_eq!(first.await, Ok(0));
        assert_eq!(read.load(Ordering::SeqCst), 0, "a first attempt that wins reads no policy");

        let second = run_with_retries(
            policy(),
            |n| async move { if n < 1 { Err("conflict") } else { Ok(n) } },
            |e| *e == "conflict",
        );
        assert_eq!(second.await, Ok(1));
        let spent = run_with_retries(policy(), |_| async { Err::<(), _>("conflict") }, |e| *e == "conflict");
        assert_eq!(spent.await, Err(("conflict", 3)), "the first attempt and the policy's two retries");
        assert_eq!(read.load(Ordering::SeqCst), 2);
    }
}
