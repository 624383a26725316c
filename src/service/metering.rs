//! What a tenant's checks cost and who may try again: usage per UTC day (what relying parties are billed by),
//! quotas on session creation, and lockouts of a subject (`reference`) after repeated failed checks.

use std::sync::Arc;

use super::{Clock, ServiceError};
use crate::domain::policy::{Lockout, Quota};
use crate::domain::{Session, SessionState};
use crate::store::{MeteringStore, StoreError, SubjectRecord, UsageDay, UsageDelta};

const DAY_MS: i64 = 86_400_000;
const MINUTE_MS: i64 = 60_000;

/// The most days one usage answer holds.
pub const MAX_USAGE_DAYS: i64 = 366;

/// Attempts at a conditional write of a subject's record before giving up.
const SUBJECT_WRITE_ATTEMPTS: usize = 8;

/// The UTC date of `epoch_ms` as `YYYY-MM-DD` (the proleptic Gregorian calendar).
pub fn utc_date(epoch_ms: i64) -> String {
    let days = epoch_ms.div_euclid(DAY_MS);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The epoch milliseconds of midnight UTC of a `YYYY-MM-DD` date; `None` unless it is one that [`utc_date`] writes.
pub fn parse_date(text: &str) -> Option<i64> {
    let parts: Vec<&str> = text.split('-').collect();
    let [year, month, day] = parts.as_slice() else { return None };
    if (year.len(), month.len(), day.len()) != (4, 2, 2) {
        return None;
    }
    let (year, month, day): (i64, i64, i64) = (year.parse().ok()?, month.parse().ok()?, day.parse().ok()?);
    // Days from a civil date (the inverse of `utc_date`'s algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y.rem_euclid(400);
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let epoch_ms = (era * 146_097 + day_of_era - 719_468) * DAY_MS;
    // Anything that does not come back the same (a 13th month, a 30th of February) is not a date.
    (utc_date(epoch_ms) == text).then_some(epoch_ms)
}

/// The dates from `from` to `to` inclusive, at most `max_days` of them (none when `from` is after `to`), and the
/// date that follows the last one when the range goes on beyond; `None` if either is not a date.
pub fn date_range(from: &str, to: &str, max_days: i64) -> Option<(Vec<String>, Option<String>)> {
    let (start, end) = (parse_date(from)?, parse_date(to)?);
    let days = ((end - start) / DAY_MS + 1).max(0);
    let dates = (0..days.min(max_days)).map(|d| utc_date(start + d * DAY_MS)).collect();
    let next = (days > max_days).then(|| utc_date(start + max_days * DAY_MS));
    Some((dates, next))
}

/// Seconds from `now_ms` until `until_ms`, at least one (a `Retry-After`).
pub fn seconds_until(now_ms: i64, until_ms: i64) -> u64 {
    ((until_ms - now_ms).max(0) as u64).div_ceil(1000).max(1)
}

/// What a change of a session adds to its tenant's usage: frames analysed, and its end when it just ended.
pub fn usage_of_change(before: &Session, after: &Session) -> UsageDelta {
    let ended = after.state.is_terminal() && !before.state.is_terminal();
    let live = after.is_live == Some(true);
    UsageDelta {
        frames_analysed: u64::from(after.frames_received.saturating_sub(before.frames_received)),
        sessions_live: u64::from(ended && live),
        sessions_not_live: u64::from(ended && !live),
        ..UsageDelta::default()
    }
}

/// Whether a change of a session ends a failed check of its subject: it ended not live, with frames seen (a
/// session that expires untouched is not an attempt).
pub fn is_failed_attempt(before: &Session, after: &Session) -> bool {
    after.state.is_terminal()
        && !before.state.is_terminal()
        && after.is_live != Some(true)
        && !(after.state == SessionState::Expired && after.frames_received == 0)
}

/// Usage, quotas and lockouts over a metering store.
#[derive(Clone)]
pub struct Metering {
    store: Arc<dyn MeteringStore>,
    clock: Arc<dyn Clock>,
}

impl Metering {
    pub fn new(store: Arc<dyn MeteringStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Adds `delta` to the tenant's counters of today. A failure is logged, never the request's: the session
    /// write it follows has happened.
    pub async fn record(&self, tenant_id: &str, delta: UsageDelta) {
        if delta.is_empty() {
            return;
        }
        let date = utc_date(self.clock.now_ms());
        if let Err(error) = self.store.add_usage(tenant_id, &date, delta).await {
            tracing::error!(tenant = %tenant_id, ?delta, %error, "usage could not be recorded");
        }
    }

    /// The tenant's usage per UTC day from `from` to `to` (`YYYY-MM-DD`, inclusive), every day present (zeros
    /// where nothing was counted): at most [`MAX_USAGE_DAYS`] days, with the date to ask from next when the range
    /// goes on beyond them. `from` after `to` is an empty range.
    pub async fn usage(
        &self,
        tenant_id: &str,
        from: &str,
        to: &str,
    ) -> Result<(Vec<UsageDay>, Option<String>), ServiceError> {
        let (dates, next_from) = date_range(from, to, MAX_USAGE_DAYS).ok_or_else(|| {
            ServiceError::InvalidParameter { name: "from", message: "from and to must be dates (YYYY-MM-DD)".into() }
        })?;
        let (Some(first), Some(last)) = (dates.first(), dates.last()) else { return Ok((Vec::new(), None)) };
        let counted = self.store.usage(tenant_id, first, last).await?;
        let day = |date: String| {
            counted.iter().find(|d| d.date == date).cloned().unwrap_or(UsageDay { date, ..UsageDay::default() })
        };
        Ok((dates.into_iter().map(day).collect(), next_from))
    }

    /// Refuses a new session past the tenant's quotas (per minute, per UTC day).
    pub async fn check_quota(&self, tenant_id: &str, quota: &Quota) -> Result<(), ServiceError> {
        let now = self.clock.now_ms();
        let minute_ends = (now.div_euclid(MINUTE_MS) + 1) * MINUTE_MS;
        let bucket = format!("{tenant_id}#{}", now.div_euclid(MINUTE_MS));
        let this_minute = self.store.count(&bucket, minute_ends + MINUTE_MS).await?;
        if this_minute > u64::from(quota.sessions_per_minute) {
            return Err(ServiceError::QuotaExceeded {
                detail: format!("at most {} sessions a minute", quota.sessions_per_minute),
                retry_after_seconds: seconds_until(now, minute_ends),
            });
        }
        let today = utc_date(now);
        let created = self.store.usage(tenant_id, &today, &today).await?.first().map_or(0, |d| d.sessions_created);
        if created >= u64::from(quota.sessions_per_day) {
            return Err(ServiceError::QuotaExceeded {
                detail: format!("at most {} sessions a day (UTC)", quota.sessions_per_day),
                retry_after_seconds: seconds_until(now, (now.div_euclid(DAY_MS) + 1) * DAY_MS),
            });
        }
        Ok(())
    }

    /// Refuses a new session for a locked-out subject.
    pub async fn check_lockout(&self, tenant_id: &str, reference: &str) -> Result<(), ServiceError> {
        let now = self.clock.now_ms();
        match self.store.subject(tenant_id, reference).await? {
            Some(record) if record.locked_until_ms > now => {
                Err(ServiceError::TooManyAttempts { retry_after_seconds: seconds_until(now, record.locked_until_ms) })
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed check against the subject; past `lockout.max_failures` within the window, locks it.
    pub async fn record_failure(&self, tenant_id: &str, reference: &str, lockout: &Lockout) {
        let now = self.clock.now_ms();
        for _ in 0..SUBJECT_WRITE_ATTEMPTS {
            let stored = match self.store.subject(tenant_id, reference).await {
                Ok(stored) => stored.unwrap_or_default(),
                Err(error) => return tracing::error!(tenant = %tenant_id, %error, "a failed check was not counted"),
            };
            let window_start = now - (lockout.window_seconds as i64) * 1000;
            let mut record = SubjectRecord { version: stored.version + 1, ..stored };
            record.failures_ms.retain(|&at| at > window_start);
            record.failures_ms.push(now);
            if record.failures_ms.len() >= lockout.max_failures as usize {
                record.locked_until_ms = now + (lockout.lock_seconds as i64) * 1000;
                tracing::warn!(tenant = %tenant_id, failures = record.failures_ms.len(), "subject locked out");
            }
            match self.store.put_subject(tenant_id, reference, &record).await {
                Ok(()) => return,
                Err(StoreError::Conflict) => continue,
                Err(error) => return tracing::error!(tenant = %tenant_id, %error, "a failed check was not counted"),
            }
        }
        tracing::error!(tenant = %tenant_id, "a failed check was not counted: too many concurrent writes");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_days() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(DAY_MS - 1), "1970-01-01");
        assert_eq!(utc_date(951_782_400_000), "2000-02-29");
        assert_eq!(utc_date(1_796_000_000_000), "2026-11-30");
        assert_eq!(utc_date(-1), "1969-12-31");
        for date in ["1970-01-01", "2000-02-29", "2026-11-30", "2400-12-31"] {
            assert_eq!(utc_date(parse_date(date).unwrap()), date);
        }
        for bad in ["2026-13-01", "2026-02-30", "26-11-30", "2026-1-30", "x", ""] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
        let range = |from, to| date_range(from, to, 366).unwrap();
        assert_eq!(range("2026-02-27", "2026-03-01").0, ["2026-02-27", "2026-02-28", "2026-03-01"]);
        assert_eq!(range("2026-03-01", "2026-02-27"), (vec![], None), "an empty range");
        let (dates, next) = range("2025-01-01", "2026-12-31");
        assert_eq!((dates.len(), dates[365].as_str(), next.as_deref()), (366, "2026-01-01", Some("2026-01-02")));
        assert_eq!(range("2025-01-01", "2026-01-01").1, None, "366 days fit in one answer");
        assert_eq!(date_range("2026-02-30", "2026-03-01", 366), None);
    }
}
