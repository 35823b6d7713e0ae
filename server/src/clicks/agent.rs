//! What a click's headers say about its client: browser family, OS family, device
//! class, whether it is a bot, and the referrer's host. Done by the click writer,
//! never on the request path, with a small cache: the same few user agents make
//! most of a link's traffic.
//!
//! Crates, by their upkeep and cost: `isbot` carries the pattern list of the
//! `isbot` npm package (omrilotan/isbot, the list Shlink and others follow) for
//! bots; `woothee` (the project's shared, hand-written matchers, no regex) for
//! browser, OS and category. A cached lookup is a hash probe; an uncached one is
//! one regex set and the woothee matchers (benches: `agent`).

use std::sync::Arc;

use quick_cache::sync::Cache;

/// The device classes of the `devices` breakdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Device {
    Desktop,
    Mobile,
    Tablet,
    Bot,
    Other,
}

impl Device {
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Desktop => "desktop",
            Device::Mobile => "mobile",
            Device::Tablet => "tablet",
            Device::Bot => "bot",
            Device::Other => "other",
        }
    }
}

/// A classified user agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub browser: Arc<str>,
    pub os: Arc<str>,
    pub device: Device,
    pub bot: bool,
}

/// Longest user agent classified as given; longer ones are cut first (and the
/// cache key is the cut string).
const UA_MAX: usize = 512;

pub struct Classifier {
    bots: isbot::Bots,
    woothee: woothee::parser::Parser,
    cache: Cache<String, Agent>,
    unknown: Agent,
}

impl Classifier {
    pub fn new(cache_entries: usize) -> Self {
        let other: Arc<str> = Arc::from("Other");
        Classifier {
            bots: isbot::Bots::default(),
            woothee: woothee::parser::Parser::new(),
            cache: Cache::new(cache_entries.max(1)),
            unknown: Agent {
                browser: Arc::clone(&other),
                os: other,
                device: Device::Other,
                bot: false,
            },
        }
    }

    /// Classifies a user agent (`None`: the request sent none, which no browser does).
    pub fn classify(&self, ua: Option<&str>) -> Agent {
        let Some(ua) = ua.map(|u| cut(u, UA_MAX)).filter(|u| !u.trim().is_empty()) else {
            return Agent {
                bot: true,
                device: Device::Bot,
                ..self.unknown.clone()
            };
        };
        if let Some(hit) = self.cache.get(ua) {
            return hit;
        }
        let agent = self.parse(ua);
        self.cache.insert(ua.to_owned(), agent.clone());
        agent
    }

    fn parse(&self, ua: &str) -> Agent {
        let bot = self.bots.is_bot(ua);
        let parsed = self.woothee.parse(ua);
        let (browser, os, category) = match &parsed {
            Some(r) => (r.name, r.os, r.category),
            None => ("UNKNOWN", "UNKNOWN", "UNKNOWN"),
        };
        let bot = bot || category == "crawler";
        let device = if bot {
            Device::Bot
        } else {
            match (category, os) {
                (_, "iPad") => Device::Tablet,
                ("smartphone", "Android") if !ua.contains("Mobile") => Device::Tablet,
                ("smartphone" | "mobilephone", _) => Device::Mobile,
                ("pc", _) => Device::Desktop,
                _ => Device::Other,
            }
        };
        let family = |s: &str| -> Arc<str> {
            if s == "UNKNOWN" || s.is_empty() {
                Arc::clone(&self.unknown.browser)
            } else {
                Arc::from(s)
            }
        };
        Agent {
            browser: if bot {
                Arc::from("Bot")
            } else {
                family(browser)
            },
            os: family(os),
            device,
            bot,
        }
    }
}

/// The host of a `Referer` (lower-cased, without `www.`); `direct` when there is
/// none, `other` when it is not a URL with a host.
pub fn referrer_host(referrer: Option<&str>) -> String {
    let Some(r) = referrer.map(str::trim).filter(|r| !r.is_empty()) else {
        return "direct".to_owned();
    };
    match url::Url::parse(r)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
    {
        Some(host) => {
            let host = host.to_ascii_lowercase();
            host.strip_prefix("www.")
                .map_or(host.clone(), str::to_owned)
        }
        None => "other".to_owned(),
    }
}

/// At most `max` bytes, cut on a character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME_WIN: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";
    const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
    const SAFARI_IPAD: &str = "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
    const ANDROID_TABLET: &str = "Mozilla/5.0 (Linux; Android 13; SM-X200) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";
    const GOOGLEBOT: &str =
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

    #[test]
    fn browsers_oses_and_devices_are_recognised() {
        let c = Classifier::new(100);
        let a = c.classify(Some(CHROME_WIN));
        assert_eq!(
            (&*a.browser, &*a.os, a.device, a.bot),
            ("Chrome", "Windows 10", Device::Desktop, false)
        );
        let a = c.classify(Some(SAFARI_IPHONE));
        assert_eq!(
            (&*a.browser, a.device, a.bot),
            ("Safari", Device::Mobile, false)
        );
        assert_eq!(c.classify(Some(SAFARI_IPAD)).device, Device::Tablet);
        assert_eq!(c.classify(Some(ANDROID_TABLET)).device, Device::Tablet);
    }

    #[test]
    fn bots_are_flagged_by_the_pattern_list_and_by_woothee() {
        let c = Classifier::new(100);
        for ua in [
            GOOGLEBOT,
            "curl/8.5.0",
            "python-requests/2.32.3",
            "Go-http-client/1.1",
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        ] {
            let a = c.classify(Some(ua));
            assert!(a.bot, "{ua} not flagged");
            assert_eq!(a.device, Device::Bot);
        }
        assert!(
            c.classify(None).bot,
            "no user agent at all is not a browser"
        );
        assert!(!c.classify(Some(CHROME_WIN)).bot);
    }

    #[test]
    fn repeated_agents_come_from_the_cache_with_the_same_answer() {
        let c = Classifier::new(100);
        let first = c.classify(Some(CHROME_WIN));
        assert_eq!(c.cache.len(), 1);
        assert_eq!(c.classify(Some(CHROME_WIN)), first);
        assert_eq!(c.cache.len(), 1);
    }

    #[test]
    fn referrers_become_hosts() {
        assert_eq!(
            referrer_host(Some("https://www.Google.com/search?q=x")),
            "google.com"
        );
        assert_eq!(referrer_host(Some("android-app://com.slack/")), "com.slack");
        assert_eq!(referrer_host(Some("not a url")), "other");
        assert_eq!(referrer_host(None), "direct");
        assert_eq!(referrer_host(Some("  ")), "direct");
    }
}
