//! Domain values, each parsed once at the edge (as zero-to-production's
//! `SubscriberName::parse`): holding one proves the check ran. Each `parse` returns
//! the reason a value is refused, which `Input` files under the field's name.
//!
//! No value may contain NUL: PostgreSQL's `text` and `jsonb` cannot store it, and
//! letting it through turned a client's typo into a 500.

use std::borrow::Cow;

use super::code::is_code_char;

/// Parsing a checked value out of a string.
pub trait Parse: Sized {
    /// # Errors
    /// The reason the value is refused, phrased to follow the field's name.
    fn parse(s: String) -> Result<Self, String>;
}

macro_rules! string_value {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

pub const USERNAME_MAX: usize = 255;
pub const EMAIL_MAX: usize = 254;
pub const URL_MAX_BYTES: usize = 2048;
pub const TITLE_MAX: usize = 1000;
pub const EVENT_TYPE_MAX: usize = 64;

/// Words the API uses as path segments; never short codes.
pub const RESERVED_CODES: &[&str] = &[
    "users",
    "urls",
    "events",
    "health",
    "ready",
    "metrics",
    "analytics",
];

const NO_NUL: &str = "must not contain NUL characters";

string_value!(
    /// A display name: non-blank, at most 255 characters, no control characters.
    Username
);

impl Parse for Username {
    fn parse(s: String) -> Result<Self, String> {
        if s.contains('\0') {
            return Err(NO_NUL.into());
        }
        if s.trim().is_empty() {
            return Err("must be a non-empty string".into());
        }
        if s.chars().count() > USERNAME_MAX {
            return Err(format!("must be at most {USERNAME_MAX} characters"));
        }
        if s.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok(Username(s))
    }
}

string_value!(
    /// A pragmatic address check: one `@`, a non-empty local part, a dotted domain of
    /// letters, digits and hyphens, no spaces. Uniqueness (case-insensitive) is the
    /// database's job.
    Email
);

impl Parse for Email {
    fn parse(s: String) -> Result<Self, String> {
        const MSG: &str = "must be a valid email address like name@example.com";
        if s.contains('\0') {
            return Err(NO_NUL.into());
        }
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
            Ok(Email(s))
        } else {
            Err(MSG.into())
        }
    }
}

string_value!(
    /// An absolute http(s) URL with a host, at most 2048 bytes, kept byte for byte as
    /// given (the JSON API returns it unchanged; `Location` gets `uri_form`).
    TargetUrl
);

impl Parse for TargetUrl {
    fn parse(s: String) -> Result<Self, String> {
        if s.is_empty() {
            return Err("must be a non-empty absolute http or https URL".into());
        }
        if s.len() > URL_MAX_BYTES {
            return Err(format!("must be at most {URL_MAX_BYTES} bytes"));
        }
        if s.contains('\0') {
            return Err(NO_NUL.into());
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("must not contain spaces or control characters".into());
        }
        let parsed = url::Url::parse(&s)
            .map_err(|e| format!("must be an absolute http or https URL ({e})"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err("must use the http or https scheme".into());
        }
        if parsed.host_str().is_none_or(str::is_empty) || !has_raw_authority(&s) {
            return Err("must have a host, as in https://example.com/path".into());
        }
        Ok(TargetUrl(s))
    }
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

/// A stored target in the form a `Location` header can carry (RFC 3986 URI, ASCII
/// only): an all-ASCII target is returned byte for byte; otherwise a non-ASCII host
/// becomes its IDNA (punycode) form and every other non-ASCII byte is
/// percent-encoded as UTF-8, while what was already percent-encoded stays as it was.
/// Control characters and spaces (only possible in a row edited by hand) are
/// percent-encoded too, so the result is always a valid header value.
pub fn uri_form(target: &str) -> Cow<'_, str> {
    if target.bytes().all(|b| b.is_ascii_graphic()) {
        return Cow::Borrowed(target);
    }
    let mut out = String::with_capacity(target.len() + 16);
    let (head, rest) = match target.split_once("://") {
        Some((scheme, rest)) => {
            out.push_str(scheme);
            out.push_str("://");
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let (authority, path) = rest.split_at(end);
            (Some(authority), path)
        }
        None => (None, target),
    };
    if let Some(authority) = head {
        let (userinfo, host_port) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        if let Some(u) = userinfo {
            percent_encode_into(&mut out, u);
            out.push('@');
        }
        let (host, port) = match host_port.rfind(':') {
            Some(i) if !host_port.starts_with('[') || host_port[..i].ends_with(']') => {
                host_port.split_at(i)
            }
            _ => (host_port, ""),
        };
        match (host.is_ascii(), url::Host::parse(host)) {
            (false, Ok(url::Host::Domain(ascii))) => out.push_str(&ascii),
            _ => percent_encode_into(&mut out, host),
        }
        percent_encode_into(&mut out, port);
    }
    percent_encode_into(&mut out, rest);
    Cow::Owned(out)
}

fn percent_encode_into(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        if b.is_ascii_graphic() {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

string_value!(
    /// Free text, at most 1000 characters, no NUL.
    Title
);

impl Title {
    /// No title (what `POST /urls` stores when none is sent).
    pub fn empty() -> Self {
        Title(String::new())
    }
}

impl Parse for Title {
    fn parse(s: String) -> Result<Self, String> {
        if s.contains('\0') {
            return Err(NO_NUL.into());
        }
        if s.chars().count() > TITLE_MAX {
            return Err(format!("must be at most {TITLE_MAX} characters"));
        }
        Ok(Title(s))
    }
}

string_value!(
    /// A client-chosen short code: 3..=32 of [A-Za-z0-9_-], not one of the API's own words.
    ShortCode
);

impl Parse for ShortCode {
    fn parse(s: String) -> Result<Self, String> {
        if !(3..=32).contains(&s.len()) || !s.bytes().all(is_code_char) {
            return Err("must be 3-32 characters of A-Z a-z 0-9 _ -".into());
        }
        if RESERVED_CODES.contains(&s.to_ascii_lowercase().as_str()) {
            return Err(format!("'{s}' is reserved by the API"));
        }
        Ok(ShortCode(s))
    }
}

impl ShortCode {
    /// A fresh generated code (always valid: 6 of [A-Za-z0-9]).
    pub fn generate() -> Self {
        ShortCode(super::code::generate_code())
    }
}

string_value!(
    /// An event's type: 1..=64 of [A-Za-z0-9_.-].
    EventType
);

impl Parse for EventType {
    fn parse(s: String) -> Result<Self, String> {
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
        Ok(EventType(s))
    }
}

/// A client's free-form JSON (`POST /events` `details`): anything but NUL, which
/// `jsonb` cannot store, in a key or a string at any depth.
///
/// # Errors
/// Where the NUL is, as a JSON pointer.
pub fn check_json_has_no_nul(v: &serde_json::Value) -> Result<(), String> {
    fn walk(v: &serde_json::Value, path: &mut String) -> Result<(), String> {
        match v {
            serde_json::Value::String(s) if s.contains('\0') => {
                Err(format!("{NO_NUL} (at {})", display_path(path)))
            }
            serde_json::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let len = path.len();
                    path.push('/');
                    path.push_str(&i.to_string());
                    walk(item, path)?;
                    path.truncate(len);
                }
                Ok(())
            }
            serde_json::Value::Object(map) => {
                for (k, item) in map {
                    let len = path.len();
                    path.push('/');
                    path.push_str(&k.replace('\0', "\\u0000"));
                    if k.contains('\0') {
                        return Err(format!("{NO_NUL} (in the key at {})", display_path(path)));
                    }
                    walk(item, path)?;
                    path.truncate(len);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
    fn display_path(p: &str) -> &str {
        if p.is_empty() {
            "/"
        } else {
            p
        }
    }
    walk(v, &mut String::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok<T: Parse>(s: &str) -> bool {
        T::parse(s.to_owned()).is_ok()
    }

    #[test]
    fn custom_codes_follow_the_documented_shape() {
        assert!(ok::<ShortCode>("abc"));
        assert!(ok::<ShortCode>("my-link_2024"));
        assert!(!ok::<ShortCode>("ab"));
        assert!(!ok::<ShortCode>(&"a".repeat(33)));
        assert!(!ok::<ShortCode>("has space"));
        assert!(!ok::<ShortCode>("ümlaut"));
        assert!(!ok::<ShortCode>("users"));
        assert!(!ok::<ShortCode>("Health"));
    }

    #[test]
    fn target_urls_must_be_absolute_http_with_a_host() {
        assert!(ok::<TargetUrl>("https://example.com/a?b=c#d"));
        assert!(ok::<TargetUrl>("http://localhost:8080"));
        for bad in [
            "javascript:alert(1)",
            "ftp://example.com/file",
            "https://exa mple.com",
            "/relative/path",
            "https://",
            "https:///path-only",
            "https:/path-only",
            "http://:80/x",
            "http://user@:80/x",
            "https://example.com/a\0b",
            "",
        ] {
            assert!(!ok::<TargetUrl>(bad), "{bad:?} accepted");
        }
        assert!(ok::<TargetUrl>("http://user:pw@host.io:8080/x"));
        assert!(ok::<TargetUrl>("http://[::1]:8080/x"));
        assert!(!ok::<TargetUrl>(&format!(
            "https://example.com/{}",
            "a".repeat(2048)
        )));
    }

    #[test]
    fn target_urls_are_kept_byte_for_byte() {
        let raw = "HTTPS://Example.com/%7Euser/../x?q=a%20b";
        assert_eq!(
            TargetUrl::parse(raw.into()).map(TargetUrl::into_inner),
            Ok(raw.to_owned())
        );
    }

    #[test]
    fn the_uri_form_of_an_ascii_target_is_the_target_itself() {
        let raw = "HTTPS://Example.com/%7Euser/../x?q=a%20b";
        assert!(matches!(uri_form(raw), Cow::Borrowed(s) if s == raw));
    }

    #[test]
    fn the_uri_form_encodes_non_ascii_and_keeps_existing_escapes() {
        assert_eq!(
            uri_form("https://bücher.example/straße?q=ü%20x&r=%E2%82%AC#frag-é"),
            "https://xn--bcher-kva.example/stra%C3%9Fe?q=%C3%BC%20x&r=%E2%82%AC#frag-%C3%A9"
        );
        assert_eq!(
            uri_form("http://user:pä@bücher.example:8080/é"),
            "http://user:p%C3%A4@xn--bcher-kva.example:8080/%C3%A9"
        );
        assert_eq!(uri_form("http://[::1]:8080/é"), "http://[::1]:8080/%C3%A9");
        assert_eq!(uri_form("https://x.io/a b\u{7f}"), "https://x.io/a%20b%7F");
        for t in ["https://bücher.example/ä", "https://x.io/\u{1}\n"] {
            assert!(
                http::HeaderValue::from_str(&uri_form(t)).is_ok(),
                "{t:?} is not a valid header value in URI form"
            );
        }
    }

    #[test]
    fn emails_need_a_local_part_and_a_dotted_domain() {
        assert!(ok::<Email>("a@b.co"));
        assert!(ok::<Email>("first.last+tag@sub.example.org"));
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
            "a\0@b.co",
        ] {
            assert!(!ok::<Email>(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn usernames_must_not_be_blank_or_hold_nul() {
        assert!(ok::<Username>("alice"));
        assert!(!ok::<Username>(""));
        assert!(!ok::<Username>("   "));
        assert!(!ok::<Username>(&"a".repeat(256)));
        assert_eq!(
            Username::parse("a\0b".into()),
            Err("must not contain NUL characters".into())
        );
    }

    #[test]
    fn titles_are_free_text_without_nul() {
        assert!(ok::<Title>("Ça va? \u{1F600}\n"));
        assert!(!ok::<Title>("a\0"));
        assert!(!ok::<Title>(&"a".repeat(1001)));
    }

    #[test]
    fn json_with_nul_anywhere_is_refused_naming_where() {
        let fine = serde_json::json!({"a": [1, "x", {"b": null}]});
        assert!(check_json_has_no_nul(&fine).is_ok());
        let deep = serde_json::json!({"a": [1, {"b": "x\u{0}"}]});
        assert!(check_json_has_no_nul(&deep)
            .expect_err("refused")
            .contains("/a/1/b"));
        let key = serde_json::json!({"k\u{0}": 1});
        assert!(check_json_has_no_nul(&key)
            .expect_err("refused")
            .contains("key"));
    }
}
