//! What a limited key's caller is told: the `x-ratelimit-*` headers on every answer (OpenAI's
//! names and format, describing the caller's own limits instead of the real key's organisation),
//! and the 429 that refuses a request.

use std::fmt;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};

use super::{LimitKind, LimitName, Scope, whole_seconds};

/// One `limit` / `remaining` / `reset` trio.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trio {
    pub limit: u64,
    pub remaining: u64,
    pub reset: Duration,
}

impl Trio {
    pub fn new(limit: u64, remaining: u64, reset: Duration) -> Self {
        Self {
            limit,
            remaining,
            reset,
        }
    }
}

/// The request trio and the token trio, each from the limit with the least room left.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub requests: Option<Trio>,
    pub tokens: Option<Trio>,
}

const REQUESTS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-requests"),
    HeaderName::from_static("x-ratelimit-remaining-requests"),
    HeaderName::from_static("x-ratelimit-reset-requests"),
];
const TOKENS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-tokens"),
    HeaderName::from_static("x-ratelimit-remaining-tokens"),
    HeaderName::from_static("x-ratelimit-reset-tokens"),
];

impl RateHeaders {
    pub fn tokens_only(trio: Trio) -> Self {
        Self {
            requests: None,
            tokens: Some(trio),
        }
    }

    /// Keeps, for each trio, the tighter of the two: less room left, or, as tight, the later reset.
    pub fn merge(&mut self, other: Self) {
        fn tighter(a: Option<Trio>, b: Option<Trio>) -> Option<Trio> {
            match (a, b) {
                (Some(a), Some(b)) => Some(
                    if (b.remaining, std::cmp::Reverse(b.reset))
                        < (a.remaining, std::cmp::Reverse(a.reset))
                    {
                        b
                    } else {
                        a
                    },
                ),
                (a, b) => a.or(b),
            }
        }
        self.requests = tighter(self.requests, other.requests);
        self.tokens = tighter(self.tokens, other.tokens);
    }

    /// Replaces every `x-ratelimit-*` header (the upstream's, the six OpenAI documents and any
    /// other, describe the real key's organisation) with these.
    pub fn apply(&self, headers: &mut HeaderMap) {
        let upstreams: Vec<HeaderName> = headers
            .keys()
            .filter(|name| name.as_str().starts_with("x-ratelimit-"))
            .cloned()
            .collect();
        for name in upstreams {
            headers.remove(name);
        }
        for (names, trio) in [(&REQUESTS, self.requests), (&TOKENS, self.tokens)] {
            let Some(trio) = trio else { continue };
            let [limit, remaining, reset] = names.clone();
            headers.insert(limit, HeaderValue::from(trio.limit));
            headers.insert(remaining, HeaderValue::from(trio.remaining));
            if let Ok(value) = HeaderValue::from_str(&reset_text(trio.reset)) {
                headers.insert(reset, value);
            }
        }
    }
}

/// OpenAI's reset format, Go's duration notation: `250ms`, `12s`, `6m0s`, `10h41m21s`.
pub fn reset_text(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        return format!("{}ms", duration.as_millis());
    }
    let seconds = whole_seconds(duration);
    let (hours, minutes, seconds) = (seconds / 3_600, seconds / 60 % 60, seconds % 60);
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, _) => format!("{minutes}m{seconds}s"),
        _ => format!("{hours}h{minutes}m{seconds}s"),
    }
}

/// A request the limits refused: which limit, and everything the 429 says.
#[derive(Debug)]
pub struct Refusal {
    pub limit: LimitName,
    /// The limit's value.
    value: u64,
    /// Until the refusing window ends.
    reset: Duration,
    headers: RateHeaders,
    /// The request alone is larger than the limit: it reserved this many tokens.
    too_large: Option<u64>,
}

impl Refusal {
    pub fn new(
        limit: LimitName,
        value: u64,
        reset: Duration,
        headers: RateHeaders,
        too_large: Option<u64>,
    ) -> Self {
        Self {
            limit,
            value,
            reset,
            headers,
            too_large,
        }
    }

    /// A day or month budget: it does not come back in seconds, so clients must not retry.
    pub fn is_budget(&self) -> bool {
        matches!(
            self.limit.kind,
            LimitKind::TokensPerDay | LimitKind::TokensPerMonth
        )
    }

    /// OpenAI's `type`: `requests` or `tokens` for a rate, `insufficient_quota` for a budget.
    pub fn error_type(&self) -> &'static str {
        match self.limit.kind {
            _ if self.is_budget() => "insufficient_quota",
            LimitKind::RequestsPerMinute => "requests",
            _ => "tokens",
        }
    }

    /// `retry-after` for a per-minute limit; `x-should-retry: false` for a budget, or a request
    /// that could never fit (the official SDKs honour it); the rate-limit headers either way.
    pub fn add_headers(&self, headers: &mut HeaderMap) {
        self.headers.apply(headers);
        if self.is_budget() || self.too_large.is_some() {
            headers.insert("x-should-retry", HeaderValue::from_static("false"));
        } else {
            let seconds = whole_seconds(self.reset).max(1);
            headers.insert("retry-after", HeaderValue::from(seconds));
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whose = match self.limit.scope {
            Scope::Key => "this API key",
            Scope::Tenant => "this API key's tenant (shared by its keys)",
        };
        let (what, period) = match self.limit.kind {
            LimitKind::RequestsPerMinute => ("requests", "minute"),
            LimitKind::TokensPerMinute => ("tokens", "minute"),
            LimitKind::TokensPerDay => ("tokens", "day"),
            LimitKind::TokensPerMonth => ("tokens", "month"),
        };
        let (limit, reset) = (self.value, reset_text(self.reset));
        if let Some(requested) = self.too_large {
            return write!(
                f,
                "Request too large for the {what} per {period} of {whose}: limit {limit}, requested about {requested} (its input plus max_tokens, or the proxy's default output allowance). Send a smaller request or set a lower max_tokens."
            );
        }
        if self.is_budget() {
            write!(
                f,
                "You exceeded the token budget per {period} of {whose}: limit {limit} tokens. It renews in {reset} (UTC {period})."
            )
        } else {
            write!(
                f,
                "Rate limit reached for the {what} per {period} of {whose}: limit {limit}. Please try again in {reset}."
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resets_are_written_as_openai_does() {
        assert_eq!(reset_text(Duration::from_millis(250)), "250ms");
        assert_eq!(reset_text(Duration::from_secs(12)), "12s");
        assert_eq!(reset_text(Duration::from_millis(11_200)), "12s");
        assert_eq!(reset_text(Duration::from_secs(360)), "6m0s");
        assert_eq!(reset_text(Duration::from_secs(38_481)), "10h41m21s");
    }

    #[test]
    fn the_tighter_trio_wins() {
        let mut headers = RateHeaders {
            requests: Some(Trio::new(100, 40, Duration::from_secs(30))),
            tokens: None,
        };
        headers.merge(RateHeaders {
            requests: Some(Trio::new(20, 5, Duration::from_secs(30))),
            tokens: Some(Trio::new(1_000, 900, Duration::from_secs(30))),
        });
        assert_eq!(
            headers.requests,
            Some(Trio::new(20, 5, Duration::from_secs(30)))
        );
        assert_eq!(headers.tokens.map(|trio| trio.remaining), Some(900));
        let mut map = HeaderMap::new();
        map.insert(
            "x-ratelimit-limit-requests",
            HeaderValue::from_static("10000"),
        );
        map.insert(
            "x-ratelimit-limit-tokens",
            HeaderValue::from_static("2000000"),
        );
        headers.apply(&mut map);
        assert_eq!(map["x-ratelimit-limit-requests"], "20");
        assert_eq!(map["x-ratelimit-remaining-requests"], "5");
        assert_eq!(map["x-ratelimit-reset-requests"], "30s");
        assert_eq!(map["x-ratelimit-limit-tokens"], "1000");
        assert!(map.get("x-ratelimit-limit-project-tokens").is_none());
    }
}
