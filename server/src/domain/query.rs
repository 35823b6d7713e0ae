//! The list endpoints' query parameters and pages.

use crate::error::{Error, FieldErrors, Result};

use super::values::{EventType, Parse};

pub const PER_PAGE_MAX: i64 = 1000;
pub const DEFAULT_PER_PAGE: i64 = 20;
const PAGE_MAX: i64 = 10_000_000;
/// The largest OFFSET a page may have (`(page - 1) × per_page`): OFFSET walks every
/// row before the page, so an unbounded page held a pooled connection for as long
/// as the scan took. A million rows is still a fraction of a second on an index;
/// deeper than that, filter instead.
pub const PAGE_OFFSET_MAX: i64 = 1_000_000;

/// LIMIT / OFFSET of one page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub page: i64,
    pub per_page: i64,
}

impl Page {
    pub fn limit(&self) -> i64 {
        self.per_page
    }
    pub fn offset(&self) -> i64 {
        (self.page - 1) * self.per_page
    }
}

/// The known query parameters of the list endpoints, parsed and checked.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub page: Option<i64>,
    pub per_page: Option<i64>,
    pub user_id: Option<i64>,
    pub url_id: Option<i64>,
    pub is_active: Option<bool>,
    pub event_type: Option<EventType>,
}

impl ListQuery {
    /// Parses the parameters that `allowed` names; others are ignored, as the old API did.
    pub fn parse(pairs: &[(String, String)], allowed: &[&str]) -> Result<Self> {
        let mut q = ListQuery::default();
        let mut errors = FieldErrors::new();
        for (k, v) in pairs {
            if !allowed.contains(&k.as_str()) {
                continue;
            }
            let int = |min: i64, max: i64| -> Result<i64, String> {
                match v.parse::<i64>() {
                    Ok(n) if (min..=max).contains(&n) => Ok(n),
                    _ => Err(format!("must be an integer from {min} to {max}")),
                }
            };
            let res = match k.as_str() {
                "page" => int(1, PAGE_MAX).map(|n| q.page = Some(n)),
                "per_page" => int(1, PER_PAGE_MAX).map(|n| q.per_page = Some(n)),
                "user_id" => int(1, i64::MAX).map(|n| q.user_id = Some(n)),
                "url_id" => int(1, i64::MAX).map(|n| q.url_id = Some(n)),
                "is_active" => match v.as_str() {
                    "true" | "True" | "1" => {
                        q.is_active = Some(true);
                        Ok(())
                    }
                    "false" | "False" | "0" => {
                        q.is_active = Some(false);
                        Ok(())
                    }
                    _ => Err("must be true or false".to_owned()),
                },
                "event_type" => EventType::parse(v.clone()).map(|s| q.event_type = Some(s)),
                _ => Ok(()),
            };
            if let Err(reason) = res {
                errors.insert(k.clone(), reason);
            }
        }
        let offset =
            (q.page.unwrap_or(1) - 1).saturating_mul(q.per_page.unwrap_or(DEFAULT_PER_PAGE));
        if offset > PAGE_OFFSET_MAX && !errors.contains_key("page") {
            errors.insert(
                "page".into(),
                format!(
                    "(page - 1) x per_page must be at most {PAGE_OFFSET_MAX}: narrow the list with its filters instead"
                ),
            );
        }
        if errors.is_empty() {
            Ok(q)
        } else {
            Err(Error::Invalid(errors))
        }
    }

    /// The page to serve, with the default page size when none was asked for.
    pub fn page_or_default(&self) -> Page {
        Page {
            page: self.page.unwrap_or(1),
            per_page: self.per_page.unwrap_or(DEFAULT_PER_PAGE),
        }
    }

    /// Whether the client asked for pagination at all.
    pub fn is_paginated(&self) -> bool {
        self.page.is_some() || self.per_page.is_some()
    }

    /// A canonical form, so `?a=1&b=2` and `?b=2&a=1` share one cache entry.
    pub fn cache_field(&self, page: Option<Page>) -> String {
        use std::fmt::Write;
        let mut s = String::with_capacity(48);
        if let Some(p) = page {
            let _ = write!(s, "p={}&n={}", p.page, p.per_page);
        } else {
            s.push_str("all");
        }
        if let Some(v) = self.user_id {
            let _ = write!(s, "&user_id={v}");
        }
        if let Some(v) = self.url_id {
            let _ = write!(s, "&url_id={v}");
        }
        if let Some(v) = self.is_active {
            let _ = write!(s, "&is_active={v}");
        }
        if let Some(v) = &self.event_type {
            let _ = write!(s, "&event_type={v}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_queries_are_checked_and_canonical() {
        let pairs = |s: &str| {
            url::form_urlencoded::parse(s.as_bytes())
                .into_owned()
                .collect::<Vec<_>>()
        };
        let all = &["page", "per_page", "user_id", "is_active"];
        let a = ListQuery::parse(&pairs("user_id=3&page=2"), all).expect("valid");
        let b = ListQuery::parse(&pairs("page=2&user_id=3&ignored=x"), all).expect("valid");
        assert_eq!(
            a.cache_field(Some(a.page_or_default())),
            b.cache_field(Some(b.page_or_default()))
        );
        assert_eq!(a.page_or_default().offset(), 20);
        assert!(ListQuery::parse(&pairs("per_page=0"), all).is_err());
        assert!(ListQuery::parse(&pairs("per_page=1001"), all).is_err());
        assert!(ListQuery::parse(&pairs("page=abc"), all).is_err());
        assert!(ListQuery::parse(&pairs("is_active=maybe"), all).is_err());
        assert!(ListQuery::parse(&pairs("page=99999999999999999999"), all).is_err());
        assert!(ListQuery::parse(&pairs("page=1001&per_page=1000"), all).is_ok());
        let Err(Error::Invalid(e)) = ListQuery::parse(&pairs("page=1002&per_page=1000"), all)
        else {
            panic!("a page past the window must be refused")
        };
        assert!(e["page"].contains("1000000"), "{e:?}");
        assert!(ListQuery::parse(&pairs("page=9999999&per_page=1000"), all).is_err());
        assert!(ListQuery::parse(&pairs("page=50001"), all).is_ok());
        assert!(
            ListQuery::parse(&pairs("page=50002"), all).is_err(),
            "default per_page 20"
        );
    }
}
