//! The domain's types and every input check: what a valid username, email, target
//! URL, short code or page is. Handlers parse into these; nothing below them re-checks.

use chrono::NaiveDateTime;
use rand::Rng;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, FieldErrors, Result};

// === Entities ===

/// Timestamps travel as UTC `YYYY-MM-DDTHH:MM:SS`, as the old API wrote them.
pub mod timestamp {
    use chrono::NaiveDateTime;
    use serde::Serializer;

    pub const FORMAT: &str = "%Y-%m-%dT%H:%M:%S";
    /// What PostgreSQL's COPY takes.
    pub const FORMAT_SQL: &str = "%Y-%m-%d %H:%M:%S";

    pub fn serialize<S: Serializer>(t: &NaiveDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&t.format(FORMAT))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub email: String,
    #[serde(with = "timestamp")]
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Serialize)]
pub struct Url {
    pub id: i64,
    pub user_id: i64,
    pub short_code: String,
    pub original_url: String,
    pub title: String,
    pub is_active: bool,
    #[serde(with = "timestamp")]
    pub created_at: NaiveDateTime,
    #[serde(with = "timestamp")]
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub id: i64,
    pub url_id: Option<i64>,
    pub user_id: Option<i64>,
    pub event_type: String,
    #[serde(with = "timestamp")]
    pub timestamp: NaiveDateTime,
    pub details: Value,
}

/// What a redirect needs to know about a short code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub url_id: i64,
    pub user_id: i64,
    pub is_active: bool,
    pub target: String,
}

impl Link {
    /// `active|url_id|user_id|target`: the cache's compact form (targets may contain `|`,
    /// so the target is last and taken whole).
    pub fn encode(&self) -> String {
        format!(
            "{}|{}|{}|{}",
            u8::from(self.is_active),
            self.url_id,
            self.user_id,
            self.target
        )
    }

    pub fn decode(s: &str) -> Option<Link> {
        let mut parts = s.splitn(4, '|');
        let is_active = match parts.next()? {
            "1" => true,
            "0" => false,
            _ => return None,
        };
        let url_id = parts.next()?.parse().ok()?;
        let user_id = parts.next()?.parse().ok()?;
        let target = parts.next()?.to_owned();
        Some(Link {
            url_id,
            user_id,
            is_active,
            target,
        })
    }
}

// === Field checks ===

pub const USERNAME_MAX: usize = 255;
pub const EMAIL_MAX: usize = 254;
pub const URL_MAX_BYTES: usize = 2048;
pub const TITLE_MAX: usize = 1000;
pub const EVENT_TYPE_MAX: usize = 64;

/// Words the API uses as path segments; never short codes.
pub const RESERVED_CODES: &[&str] = &["users", "urls", "events", "health", "ready", "metrics"];

pub fn username(s: String) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("must be a non-empty string".into());
    }
    if s.chars().count() > USERNAME_MAX {
        return Err(format!("must be at most {USERNAME_MAX} characters"));
    }
    if s.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(s)
}

/// A pragmatic address check: one `@`, a non-empty local part, a dotted domain of
/// letters, digits and hyphens, no spaces. Uniqueness (case-insensitive) is the database's job.
pub fn email(s: String) -> Result<String, String> {
    const MSG: &str = "must be a valid email address like name@example.com";
    if s.is_empty() {
        return Err(MSG.into());
    }
    if s.len() > EMAIL_MAX {
        return Err(format!("must be at most {EMAIL_MAX} characters"));
    }
    let (local, domain) = s.split_once('@').ok_or_else(|| MSG.to_owned())?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local.chars().all(|c| {
            c.is_ascii_graphic()
                && !matches!(
                    c,
                    '@' | '(' | ')' | ',' | ';' | ':' | '<' | '>' | '[' | ']' | '\\' | '"'
                )
        })
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..");
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
    if local_ok && domain_ok {
        Ok(s)
    } else {
        Err(MSG.into())
    }
}

/// An absolute http(s) URL with a host, at most 2048 bytes, kept byte for byte as given.
pub fn target_url(s: String) -> Result<String, String> {
    if s.is_empty() {
        return Err("must be a non-empty absolute http or https URL".into());
    }
    if s.len() > URL_MAX_BYTES {
        return Err(format!("must be at most {URL_MAX_BYTES} bytes"));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters".into());
    }
    let parsed =
        url::Url::parse(&s).map_err(|e| format!("must be an absolute http or https URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must use the http or https scheme".into());
    }
    if parsed.host_str().is_none_or(str::is_empty) || !has_raw_authority(&s) {
        return Err("must have a host, as in https://example.com/path".into());
    }
    Ok(s)
}

/// Whether the raw text has `scheme://host`: the WHATWG parser `url` follows reads
/// `https:///path` or `https:/path` as host `path`, but RFC 9110 says an http(s) URI
/// with an empty host is invalid, and the stored text is what clients get.
fn has_raw_authority(raw: &str) -> bool {
    let Some((_, rest)) = raw.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host_port.starts_with('[') {
        host_port
            .split_once(']')
            .map_or("", |(h, _)| h.trim_start_matches('['))
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    !host.is_empty()
}

pub fn title(s: String) -> Result<String, String> {
    if s.chars().count() > TITLE_MAX {
        return Err(format!("must be at most {TITLE_MAX} characters"));
    }
    Ok(s)
}

pub fn event_type(s: String) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("must be a non-empty string".into());
    }
    if s.len() > EVENT_TYPE_MAX
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(format!(
            "must be at most {EVENT_TYPE_MAX} characters of A-Z a-z 0-9 _ - ."
        ));
    }
    Ok(s)
}

// === Short codes ===

pub const GENERATED_CODE_LEN: usize = 6;
const CODE_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A fresh 6-character code of [A-Za-z0-9]. `rand::rng()` is a CSPRNG (ChaCha, seeded
/// from the OS and reseeded), and the index is drawn without modulo bias.
pub fn generate_code() -> String {
    let mut rng = rand::rng();
    (0..GENERATED_CODE_LEN)
        .map(|_| char::from(CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())]))
        .collect()
}

fn is_code_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// A custom short code: 3..=32 of [A-Za-z0-9_-], not one of the API's own words.
pub fn custom_code(s: String) -> Result<String, String> {
    if !(3..=32).contains(&s.len()) || !s.bytes().all(is_code_char) {
        return Err("must be 3-32 characters of A-Z a-z 0-9 _ -".into());
    }
    if RESERVED_CODES.contains(&s.to_ascii_lowercase().as_str()) {
        return Err(format!("'{s}' is reserved by the API"));
    }
    Ok(s)
}

/// Whether a path segment could be a short code at all; anything else is a 404 without a lookup.
pub fn is_plausible_code(s: &str) -> bool {
    (1..=32).contains(&s.len()) && s.bytes().all(is_code_char)
}

// === Request bodies ===

/// Takes typed fields out of a JSON object, collecting every problem, so one 422
/// names all of them; whatever is left at the end is an unknown field.
pub struct Input {
    map: Map<String, Value>,
    errors: FieldErrors,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Input {
    pub fn new(map: Map<String, Value>) -> Self {
        Input {
            map,
            errors: FieldErrors::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn fail(&mut self, name: &str, reason: impl Into<String>) {
        self.errors
            .entry(name.to_owned())
            .or_insert_with(|| reason.into());
    }

    fn take_required(&mut self, name: &str) -> Option<Value> {
        let v = self.map.remove(name);
        if v.is_none() {
            self.fail(name, "is required");
        }
        v
    }

    fn as_string(&mut self, name: &str, v: Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s),
            other => {
                self.fail(name, format!("must be a string, not {}", type_name(&other)));
                None
            }
        }
    }

    fn as_i64(&mut self, name: &str, v: Value) -> Option<i64> {
        match v.as_i64() {
            Some(n) if n > 0 => Some(n),
            Some(_) => {
                self.fail(name, "must be a positive integer");
                None
            }
            None => {
                self.fail(name, format!("must be an integer, not {}", type_name(&v)));
                None
            }
        }
    }

    /// Runs a check on a parsed value, recording its message under the field's name.
    pub fn check<T>(
        &mut self,
        name: &str,
        value: Option<T>,
        f: impl FnOnce(T) -> Result<T, String>,
    ) -> Option<T> {
        match f(value?) {
            Ok(v) => Some(v),
            Err(reason) => {
                self.fail(name, reason);
                None
            }
        }
    }

    pub fn required_str(&mut self, name: &str) -> Option<String> {
        let v = self.take_required(name)?;
        self.as_string(name, v)
    }

    pub fn optional_str(&mut self, name: &str) -> Option<String> {
        let v = self.map.remove(name)?;
        self.as_string(name, v)
    }

    pub fn required_id(&mut self, name: &str) -> Option<i64> {
        let v = self.take_required(name)?;
        self.as_i64(name, v)
    }

    pub fn optional_bool(&mut self, name: &str) -> Option<bool> {
        match self.map.remove(name)? {
            Value::Bool(b) => Some(b),
            other => {
                self.fail(
                    name,
                    format!("must be a boolean, not {}", type_name(&other)),
                );
                None
            }
        }
    }

    pub fn optional_object(&mut self, name: &str) -> Option<Map<String, Value>> {
        match self.map.remove(name)? {
            Value::Object(m) => Some(m),
            other => {
                self.fail(
                    name,
                    format!("must be an object, not {}", type_name(&other)),
                );
                None
            }
        }
    }

    /// Ends parsing: unknown fields and every recorded problem become one 422.
    pub fn finish(mut self) -> Result<()> {
        let unknown: Vec<String> = std::mem::take(&mut self.map)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        for name in unknown {
            self.fail(&name, "unknown field");
        }
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(self.errors))
        }
    }
}

// === Query strings ===

pub const PER_PAGE_MAX: i64 = 1000;
pub const DEFAULT_PER_PAGE: i64 = 20;
const PAGE_MAX: i64 = 10_000_000;

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
    pub event_type: Option<String>,
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
                "event_type" => event_type(v.clone()).map(|s| q.event_type = Some(s)),
                _ => Ok(()),
            };
            if let Err(reason) = res {
                errors.insert(k.clone(), reason);
            }
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

/// An id from a path segment: not a positive integer that fits an i64 → 404.
pub fn path_id(seg: &str, what: &'static str) -> Result<i64> {
    match seg.parse::<i64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(Error::NotFound(what)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_are_six_alphanumerics_and_vary() {
        let codes: std::collections::HashSet<String> = (0..1000).map(|_| generate_code()).collect();
        assert!(codes.len() > 990, "codes repeat too often");
        for c in &codes {
            assert_eq!(c.len(), GENERATED_CODE_LEN);
            assert!(c.bytes().all(|b| b.is_ascii_alphanumeric()), "{c}");
        }
    }

    #[test]
    fn generated_codes_use_the_whole_alphabet() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2000 {
            seen.extend(generate_code().chars());
        }
        assert_eq!(seen.len(), CODE_ALPHABET.len());
    }

    #[test]
    fn custom_codes_follow_the_documented_shape() {
        assert!(custom_code("abc".into()).is_ok());
        assert!(custom_code("my-link_2024".into()).is_ok());
        assert!(custom_code("ab".into()).is_err());
        assert!(custom_code("a".repeat(33)).is_err());
        assert!(custom_code("has space".into()).is_err());
        assert!(custom_code("ümlaut".into()).is_err());
        assert!(custom_code("users".into()).is_err());
        assert!(custom_code("Health".into()).is_err());
    }

    #[test]
    fn target_urls_must_be_absolute_http_with_a_host() {
        assert!(target_url("https://example.com/a?b=c#d".into()).is_ok());
        assert!(target_url("http://localhost:8080".into()).is_ok());
        assert!(target_url("javascript:alert(1)".into()).is_err());
        assert!(target_url("ftp://example.com/file".into()).is_err());
        assert!(target_url("https://exa mple.com".into()).is_err());
        assert!(target_url("/relative/path".into()).is_err());
        assert!(target_url("https://".into()).is_err());
        assert!(target_url("https:///path-only".into()).is_err());
        assert!(target_url("https:/path-only".into()).is_err());
        assert!(target_url("http://:80/x".into()).is_err());
        assert!(target_url("http://user@:80/x".into()).is_err());
        assert!(target_url("http://user:pw@host.io:8080/x".into()).is_ok());
        assert!(target_url("http://[::1]:8080/x".into()).is_ok());
        assert!(target_url(format!("https://example.com/{}", "a".repeat(2048))).is_err());
        assert!(target_url(String::new()).is_err());
    }

    #[test]
    fn target_urls_are_kept_byte_for_byte() {
        let raw = "HTTPS://Example.com/%7Euser/../x?q=a%20b";
        assert_eq!(target_url(raw.into()).as_deref(), Ok(raw));
    }

    #[test]
    fn emails_need_a_local_part_and_a_dotted_domain() {
        assert!(email("a@b.co".into()).is_ok());
        assert!(email("first.last+tag@sub.example.org".into()).is_ok());
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@b",
            "a b@c.com",
            "a@@b.com",
            "a@b..com",
            "a@-b.com",
            "a@b.c0",
        ] {
            assert!(email(bad.into()).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn usernames_must_not_be_blank() {
        assert!(username("alice".into()).is_ok());
        assert!(username("".into()).is_err());
        assert!(username("   ".into()).is_err());
        assert!(username("a".repeat(256)).is_err());
    }

    #[test]
    fn input_collects_every_problem_and_unknown_fields() {
        let map = serde_json::json!({"username": 123, "extra": true})
            .as_object()
            .cloned()
            .expect("object");
        let mut input = Input::new(map);
        assert_eq!(input.required_str("username"), None);
        assert_eq!(input.required_str("email"), None);
        let Err(Error::Invalid(errors)) = input.finish() else {
            panic!("expected 422")
        };
        assert!(errors["username"].contains("must be a string"));
        assert_eq!(errors["email"], "is required");
        assert_eq!(errors["extra"], "unknown field");
    }

    #[test]
    fn ids_must_be_json_integers() {
        let map = serde_json::json!({"a": "1", "b": 1.5, "c": -1, "d": 7})
            .as_object()
            .cloned()
            .expect("object");
        let mut input = Input::new(map);
        assert_eq!(input.required_id("a"), None);
        assert_eq!(input.required_id("b"), None);
        assert_eq!(input.required_id("c"), None);
        assert_eq!(input.required_id("d"), Some(7));
        assert!(input.finish().is_err());
    }

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
    }

    #[test]
    fn links_round_trip_through_their_cache_form_even_with_pipes() {
        let link = Link {
            url_id: 7,
            user_id: 3,
            is_active: false,
            target: "https://x.io/a|b".into(),
        };
        assert_eq!(Link::decode(&link.encode()), Some(link));
        assert_eq!(Link::decode("garbage"), None);
    }

    #[test]
    fn path_ids_must_be_positive_integers() {
        assert_eq!(path_id("42", "user").ok(), Some(42));
        for bad in ["0", "-1", "abc", "99999999999999999999", "1.5"] {
            assert!(path_id(bad, "user").is_err(), "{bad}");
        }
    }
}
