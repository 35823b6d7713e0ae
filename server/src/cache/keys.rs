//! The key scheme and the values' wire format. Every key is under CACHE_KEY_PREFIX:
//!
//! - `user:{id}`, `url:{id}`: the entity's JSON, as served;
//! - `code:{code}`: the redirect lookup (`encode_link`, or `-` for an unknown code);
//! - `code-stale:{code}`: the same, kept STALE_IF_ERROR_SECONDS, read only while
//!   PostgreSQL cannot be asked;
//! - `lists:{users|urls|events}`: a hash of cached list pages, one field per
//!   distinct query (at most CACHE_LIST_MAX_PAGES of them), dropped whole by a write.
//!
//! Invalidations travel on the channel `{prefix}near-invalidate`, as short codes
//! separated by spaces (codes never contain one).

use crate::domain::Link;

/// A Valkey key: `{prefix}{kind}:{id}`.
pub fn key(prefix: &str, kind: &str, id: impl std::fmt::Display) -> String {
    format!("{prefix}{kind}:{id}")
}

/// The cached answer for a short code known not to exist.
pub(crate) const NEGATIVE: &str = "-";
/// What a write leaves in place of an entry: read as a miss, and it blocks `SET NX`
/// fills for a while. Longer than any lookup that could race the write (the pool
/// wait is 2 s by default and a statement's time is bounded by
/// DATABASE_STATEMENT_TIMEOUT_MS).
pub(crate) const TOMBSTONE: &str = "";
pub(crate) const TOMBSTONE_MS: u64 = 10_000;

/// `active|url_id|user_id|target`: the cache's compact form of a redirect answer
/// (targets may contain `|`, so the target is last and taken whole).
pub fn encode_link(link: &Link) -> String {
    format!(
        "{}|{}|{}|{}",
        u8::from(link.is_active),
        link.url_id,
        link.user_id,
        link.target
    )
}

pub fn decode_link(s: &str) -> Option<Link> {
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

/// The invalidation messages for a set of codes: codes joined by spaces, at most
/// `per_message` codes each.
pub(crate) fn invalidation_messages<'a>(
    codes: &'a [String],
    per_message: usize,
) -> impl Iterator<Item = String> + 'a {
    codes
        .chunks(per_message.max(1))
        .map(|chunk| chunk.join(" "))
}

/// The codes one invalidation message names.
pub(crate) fn codes_in_message(payload: &str) -> impl Iterator<Item = &str> {
    payload.split(' ').filter(|c| !c.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_round_trip_through_their_cache_form_even_with_pipes() {
        let link = Link {
            url_id: 7,
            user_id: 3,
            is_active: false,
            target: "https://x.io/a|b".into(),
        };
        assert_eq!(decode_link(&encode_link(&link)), Some(link));
        assert_eq!(decode_link("garbage"), None);
    }

    #[test]
    fn invalidation_messages_carry_every_code_once() {
        let codes: Vec<String> = (0..2500).map(|i| format!("c{i}")).collect();
        let msgs: Vec<String> = invalidation_messages(&codes, 1000).collect();
        assert_eq!(msgs.len(), 3);
        let back: Vec<&str> = msgs.iter().flat_map(|m| codes_in_message(m)).collect();
        assert_eq!(back, codes.iter().map(String::as_str).collect::<Vec<_>>());
    }
}
