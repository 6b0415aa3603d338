//! Validated request values, parsed once at the boundary (CLI or HTTP).
//!
//! Owns: the rules for `k`, dates and query text, and their error messages. Must not:
//! know where the values came from.

use time::macros::format_description;
use time::Date;

pub use crate::error_code::ErrorCode;

/// A value that failed validation: `code` is stable for scripts, `message` says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    pub code: ErrorCode,
    pub message: String,
}

impl Invalid {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// How many results to return: 1..=100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopK(usize);

impl TopK {
    pub const MAX: usize = 100;
    pub const DEFAULT: TopK = TopK(10);

    pub fn new(k: usize) -> Result<Self, Invalid> {
        if (1..=Self::MAX).contains(&k) {
            Ok(Self(k))
        } else {
            Err(Invalid::new(
                ErrorCode::InvalidK,
                format!("k must be between 1 and {}, got {k}", Self::MAX),
            ))
        }
    }

    pub fn get(self) -> usize {
        self.0
    }
}

/// Inclusive range of publication days; either end may be open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DateRange {
    since: Option<Date>,
    until: Option<Date>,
}

fn parse_day(name: &str, value: &str) -> Result<Date, Invalid> {
    Date::parse(value, format_description!("[year]-[month]-[day]")).map_err(|_| {
        Invalid::new(
            ErrorCode::InvalidDate,
            format!("{name} must be a date like 2026-01-06, got {value:?}"),
        )
    })
}

/// `YYYYMMDD` as used by the store's day column.
fn day_number(d: Date) -> u32 {
    d.year() as u32 * 10_000 + u8::from(d.month()) as u32 * 100 + d.day() as u32
}

impl DateRange {
    pub const ALL: DateRange = DateRange {
        since: None,
        until: None,
    };

    /// Parses `since`/`until` (`YYYY-MM-DD`, empty meaning open) and checks their order.
    pub fn parse(since: Option<&str>, until: Option<&str>) -> Result<Self, Invalid> {
        let since = since
            .filter(|s| !s.is_empty())
            .map(|s| parse_day("since", s))
            .transpose()?;
        let until = until
            .filter(|s| !s.is_empty())
            .map(|s| parse_day("until", s))
            .transpose()?;
        if let (Some(s), Some(u)) = (since, until) {
            if s > u {
                return Err(Invalid::new(
                    ErrorCode::InvalidDateRange,
                    format!("since ({s}) is after until ({u})"),
                ));
            }
        }
        Ok(Self { since, until })
    }

    /// The days from `since` to `until`, both included.
    pub fn between(since: Date, until: Date) -> Self {
        Self {
            since: Some(since),
            until: Some(until),
        }
    }

    pub fn is_all(&self) -> bool {
        self.since.is_none() && self.until.is_none()
    }

    /// The bounds as `YYYYMMDD` day numbers (the store's `day` column).
    pub fn days(&self) -> (Option<u32>, Option<u32>) {
        (self.since.map(day_number), self.until.map(day_number))
    }

    /// Whether a story published on `day` (`YYYYMMDD`; `None` = undated) is in range.
    /// Undated stories only match an unbounded range.
    pub fn contains_day(&self, day: Option<u32>) -> bool {
        if self.is_all() {
            return true;
        }
        let Some(day) = day else { return false };
        self.since.is_none_or(|s| day >= day_number(s))
            && self.until.is_none_or(|u| day <= day_number(u))
    }
}

/// Free-text query: non-empty after trimming, at most 2,000 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryText(String);

impl QueryText {
    pub const MAX_CHARS: usize = 2_000;

    pub fn new(text: &str) -> Result<Self, Invalid> {
        // Blank is Unicode White_Space plus the information separators U+001C..U+001F
        // and U+FEFF, which Python's and JavaScript's `\s` also count: the OpenAPI
        // document says a query must match `\S`, and clients validate with those.
        let trimmed = text.trim_matches(|c: char| {
            c.is_whitespace() || matches!(c, '\u{1c}'..='\u{1f}' | '\u{feff}')
        });
        if trimmed.is_empty() {
            return Err(Invalid::new(
                ErrorCode::EmptyQuery,
                "query must not be empty",
            ));
        }
        let chars = trimmed.chars().count();
        if chars > Self::MAX_CHARS {
            return Err(Invalid::new(
                ErrorCode::QueryTooLong,
                format!(
                    "query has {chars} characters; the limit is {}",
                    Self::MAX_CHARS
                ),
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k_outside_one_to_a_hundred_is_rejected() {
        assert!(TopK::new(0).is_err());
        assert!(TopK::new(101).is_err());
        assert_eq!(TopK::new(100).unwrap().get(), 100);
        assert_eq!(TopK::new(0).unwrap_err().code, "invalid_k");
    }

    #[test]
    fn date_range_is_inclusive_and_ordered() {
        let r = DateRange::parse(Some("2026-01-06"), Some("2026-01-07")).unwrap();
        assert!(r.contains_day(Some(20260106)));
        assert!(r.contains_day(Some(20260107)));
        assert!(!r.contains_day(Some(20260108)));
        assert!(!r.contains_day(None));
        assert!(DateRange::ALL.contains_day(None));
        let err = DateRange::parse(Some("2026-01-08"), Some("2026-01-07")).unwrap_err();
        assert_eq!(err.code, "invalid_date_range");
        let err = DateRange::parse(Some("yesterday"), None).unwrap_err();
        assert_eq!(err.code, "invalid_date");
        assert!(err.message.contains("yesterday"));
    }

    #[test]
    fn query_must_be_non_empty_and_short_enough() {
        assert_eq!(QueryText::new("  ").unwrap_err().code, "empty_query");
        assert_eq!(
            QueryText::new(&"字".repeat(2001)).unwrap_err().code,
            "query_too_long"
        );
        assert_eq!(QueryText::new(" 英伟达 ").unwrap().as_str(), "英伟达");
    }
}
