//! Pacing requests so that an API rarely has to answer 429.
//!
//! Every request to a host takes a turn from one [`Limiter`] shared by all resources and child
//! chains of a run. The limiter follows two budgets, whichever is tighter:
//!
//! - **Announced**: what the host's last response said ([`announced`]: the IETF `RateLimit` and
//!   `RateLimit-Policy` fields, `RateLimit-*`, `X-RateLimit-*`, `X-Rate-Limit-*`). The remaining
//!   budget is that response's figure minus the requests still in flight (the server has not
//!   counted them yet), and goes down by one with every request sent; at zero, requests wait for
//!   the reset (the earliest any answer of the window gave: a reset in whole seconds from now
//!   is an upper bound). A response whose figure belongs to the window before (it arrived late)
//!   does not raise the estimate.
//! - **Declared** (`client.rate_limit`): at most `requests` in any span of `per` (so also in
//!   each of the API's windows, however they are aligned), and with `burst`, a token bucket of
//!   `requests` per `per` holding at most `burst` tokens (requests spread out instead of sent
//!   together).
//!
//! A 429 or 503 with `Retry-After` and no budget holds every request to the host until then.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use resttap_config::RateLimitConfig;

/// A budget a response announced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Announced {
    /// Requests per window, when said.
    pub limit: Option<u64>,
    /// Requests left in the current window.
    pub remaining: u64,
    /// Time until the window resets, when said.
    pub reset: Option<Duration>,
}

/// Epoch seconds from the year 2001 on: a reset this large is a point in time, not a delay.
const EPOCH_SECONDS: f64 = 1.0e9;
/// Epoch milliseconds from 2001 on.
const EPOCH_MILLIS: f64 = 1.0e12;

/// The budget `headers` announce, if any (`now_epoch`: the current Unix time in seconds, to
/// read resets given as points in time). The IETF fields win over the older ones.
pub fn announced(headers: &HeaderMap, now_epoch: f64) -> Option<Announced> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(a) = text("ratelimit").and_then(|v| structured(v, text("ratelimit-policy"), now_epoch)) {
        return Some(a);
    }
    for prefix in ["ratelimit-", "x-ratelimit-", "x-rate-limit-"] {
        let field = |suffix: &str| text(&format!("{prefix}{suffix}"));
        let Some(remaining) = field("remaining").and_then(number) else { continue };
        let limit = field("limit").and_then(first_number).map(|l| l as u64);
        let reset = field("reset").and_then(number).map(|r| reset_after(r, now_epoch));
        return Some(Announced { limit, remaining: remaining.max(0.0) as u64, reset });
    }
    None
}

/// A reset as a delay: epoch seconds or milliseconds are told from seconds by their size.
fn reset_after(value: f64, now_epoch: f64) -> Duration {
    let secs = if value >= EPOCH_MILLIS {
        value / 1000.0 - now_epoch
    } else if value >= EPOCH_SECONDS {
        value - now_epoch
    } else {
        value
    };
    Duration::from_secs_f64(secs.clamp(0.0, 86400.0 * 7.0))
}

fn number(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|n| n.is_finite())
}

/// The first number of a field such as `100, 100;w=60` (draft `RateLimit-Limit` with policies).
fn first_number(s: &str) -> Option<f64> {
    number(s.split([',', ';']).next()?)
}

/// The IETF `RateLimit` field: the dictionary of drafts 03 to 07 (`limit=100, remaining=50,
/// reset=30`) or the list of later drafts (`"default";r=50;t=30`, the quota in
/// `RateLimit-Policy: "default";q=100;w=60`). Of several policies, the one with the least left.
fn structured(value: &str, policy: Option<&str>, now_epoch: f64) -> Option<Announced> {
    let mut best: Option<Announced> = None;
    let params = |item: &str| -> Vec<(String, String)> {
        item.split(';')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().trim_matches('"').to_string()))
            .collect()
    };
    // the dictionary form: keys separated by commas
    let dict: Vec<(String, String)> = value
        .split(',')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.split(';').next().unwrap_or("").trim().to_string()))
        .collect();
    let get = |kv: &[(String, String)], k: &str| kv.iter().find(|(key, _)| key == k).and_then(|(_, v)| number(v));
    if let Some(r) = get(&dict, "remaining") {
        let reset = get(&dict, "reset").map(|t| reset_after(t, now_epoch));
        return Some(Announced { limit: get(&dict, "limit").map(|l| l as u64), remaining: r.max(0.0) as u64, reset });
    }
    // the list form: one item per policy
    let quotas: Vec<(String, f64)> = policy
        .into_iter()
        .flat_map(|p| p.split(','))
        .filter_map(|item| {
            let name = item.split(';').next()?.trim().trim_matches('"').to_string();
            Some((name, get(&params(item), "q")?))
        })
        .collect();
    for item in value.split(',') {
        let name = item.split(';').next().unwrap_or("").trim().trim_matches('"').to_string();
        let kv = params(item);
        let Some(r) = get(&kv, "r") else { continue };
        let reset = get(&kv, "t").map(|t| reset_after(t, now_epoch));
        let limit = quotas.iter().find(|(n, _)| *n == name).map(|(_, q)| *q as u64);
        let a = Announced { limit, remaining: r.max(0.0) as u64, reset };
        if best.is_none_or(|b| a.remaining < b.remaining) {
            best = Some(a);
        }
    }
    best
}

/// What the limiter knows of one host.
#[derive(Debug)]
struct Host {
    /// Requests the announced budget still allows (negative: over it).
    remaining: Option<i64>,
    /// When the announced window resets.
    reset_at: Option<Instant>,
    /// The announced remaining figure last taken, to tell a new window from a late response.
    last_announced: u64,
    limit: Option<u64>,
    in_flight: u64,
    /// Declared budget: when the requests of the last `per` went, and the burst's tokens with
    /// when they were counted.
    sent: std::collections::VecDeque<Instant>,
    tokens: f64,
    counted: Instant,
    /// Nothing is sent before this (a 429's or 503's `Retry-After`).
    hold_until: Option<Instant>,
}

/// Paces the requests to each host ([module documentation](self)).
#[derive(Debug, Default)]
pub struct Limiter {
    declared: Option<RateLimitConfig>,
    hosts: Mutex<HashMap<String, Host>>,
    /// Microseconds requests spent waiting for their turn, all hosts together.
    waited_us: AtomicU64,
}

/// How long to wait after a reset time, for the host's clock and its rounding.
const RESET_MARGIN: Duration = Duration::from_millis(20);
/// Added to a declared `per`: requests sent `per` apart may arrive closer together.
const DECLARED_MARGIN: Duration = Duration::from_millis(10);

tokio::task_local! {
    /// The wait of the requests sent inside [`measure_wait`]'s future, in microseconds.
    static WAITED: std::cell::Cell<u64>;
}

/// Runs `f` and says how long the requests it sent waited for their turns under rate limits:
/// every attempt, redirect hop and token request, failed ones included.
pub async fn measure_wait<F: std::future::Future>(f: F) -> (F::Output, Duration) {
    WAITED
        .scope(std::cell::Cell::new(0), async {
            let out = f.await;
            (out, Duration::from_micros(WAITED.with(std::cell::Cell::get)))
        })
        .await
}

impl Limiter {
    pub fn new(declared: Option<RateLimitConfig>) -> Self {
        Limiter { declared, ..Default::default() }
    }

    /// Time spent waiting so far.
    pub fn waited(&self) -> Duration {
        Duration::from_micros(self.waited_us.load(Ordering::Relaxed))
    }

    /// The declared burst as a token bucket (rate per second, capacity), when one is set.
    fn rate(&self) -> Option<(f64, f64)> {
        let d = self.declared.as_ref()?;
        Some((f64::from(d.requests) / d.per.as_secs_f64(), f64::from(d.burst?)))
    }

    /// Waits for a turn to send a request to `host`, and counts it as in flight until the
    /// turn is finished ([`Turn::finish`]) or dropped (a request abandoned).
    pub async fn acquire(&self, host: &str) -> Turn<'_> {
        let started = Instant::now();
        loop {
            let wait = self.try_take(host, Instant::now());
            match wait {
                None => break,
                Some(d) => tokio::time::sleep(d).await,
            }
        }
        let waited = started.elapsed();
        if waited > Duration::from_millis(1) {
            let us = waited.as_micros() as u64;
            self.waited_us.fetch_add(us, Ordering::Relaxed);
            // outside a measured future there is nothing to add to
            let _ = WAITED.try_with(|w| w.set(w.get() + us));
        }
        Turn { limiter: self, host: host.to_string(), done: false }
    }

    /// Takes a turn at `now` (`None`), or says how long to wait before asking again.
    fn try_take(&self, host: &str, now: Instant) -> Option<Duration> {
        let rate = self.rate();
        let mut hosts = self.hosts.lock().expect("limiter");
        let h = hosts.entry(host.to_string()).or_insert_with(|| Host {
            remaining: None,
            reset_at: None,
            last_announced: 0,
            limit: None,
            in_flight: 0,
            sent: Default::default(),
            tokens: rate.map_or(0.0, |(_, burst)| burst),
            counted: now,
            hold_until: None,
        });
        if let Some(t) = h.hold_until {
            if t > now {
                return Some(t - now);
            }
            h.hold_until = None;
        }
        if h.remaining.is_some_and(|r| r <= 0) {
            match h.reset_at {
                Some(t) if t + RESET_MARGIN > now => return Some(t + RESET_MARGIN - now),
                // the window is over: its full budget, less what is in flight; when the limit
                // is not known, one request, whose answer tells the new budget
                Some(_) => {
                    h.remaining = Some(h.limit.map_or(1, |l| l as i64 - h.in_flight as i64).max(1));
                    h.reset_at = None;
                }
                // spent, and no reset said: one request at a time until an answer says more
                None if h.in_flight > 0 => return Some(Duration::from_millis(10)),
                None => h.remaining = Some(1),
            }
        }
        if let Some(d) = &self.declared {
            // at most `requests` in any span of `per` (a little more, for the spread of the
            // requests' travel times), aligned or not with the API's own windows
            let span = d.per + DECLARED_MARGIN;
            while h.sent.front().is_some_and(|t| now.saturating_duration_since(*t) >= span) {
                h.sent.pop_front();
            }
            if h.sent.len() >= d.requests as usize {
                return Some((h.sent[0] + span).saturating_duration_since(now));
            }
            if let Some((per_second, burst)) = rate {
                h.tokens = (h.tokens + now.saturating_duration_since(h.counted).as_secs_f64() * per_second).min(burst);
                h.counted = now;
                if h.tokens < 1.0 {
                    return Some(Duration::from_secs_f64((1.0 - h.tokens) / per_second));
                }
                h.tokens -= 1.0;
            }
            h.sent.push_back(now);
        }
        if let Some(r) = h.remaining.as_mut() {
            *r -= 1;
        }
        h.in_flight += 1;
        None
    }

    /// Records the end of a request to `host`: the budget its response announced (`headers`),
    /// and a hold on the host when it was refused (`hold`).
    fn release(&self, host: &str, headers: Option<&HeaderMap>, hold: Option<Duration>) {
        let now = Instant::now();
        let epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        let mut hosts = self.hosts.lock().expect("limiter");
        let Some(h) = hosts.get_mut(host) else { return };
        h.in_flight = h.in_flight.saturating_sub(1);
        let budget = headers.and_then(|hd| announced(hd, epoch));
        if let Some(a) = budget {
            let reset_at = a.reset.map(|r| now + r);
            let estimate = a.remaining as i64 - h.in_flight as i64;
            let later = match (reset_at, h.reset_at) {
                (Some(new), Some(old)) => new > old + Duration::from_millis(500),
                _ => true,
            };
            // answers of one window can arrive out of order, so more left than the last answer
            // said means a new window only when the jump is more than the reordering of the
            // requests in flight explains
            let jumped = a.remaining > h.last_announced + h.in_flight + 1;
            let new_window = h.remaining.is_none() || later || jumped;
            let stale =
                matches!((reset_at, h.reset_at), (Some(new), Some(old)) if new + Duration::from_millis(500) < old);
            if !stale {
                h.remaining = Some(if new_window { estimate } else { estimate.min(h.remaining.unwrap_or(estimate)) });
                // within a window every answer bounds the one reset from above (a reset in
                // whole seconds from now is rounded up): the earliest bound is the tightest
                h.reset_at = match (new_window, reset_at, h.reset_at) {
                    (false, Some(new), Some(old)) => Some(new.min(old)),
                    (_, new, old) => new.or(old),
                };
                h.last_announced = a.remaining;
                h.limit = a.limit.or(h.limit);
            }
        }
        if let Some(d) = hold {
            let until = now + d;
            if h.hold_until.is_none_or(|t| t < until) {
                h.hold_until = Some(until);
            }
        }
    }
}

/// A request's turn ([`Limiter::acquire`]), in flight until finished or dropped.
#[derive(Debug)]
pub struct Turn<'a> {
    limiter: &'a Limiter,
    host: String,
    done: bool,
}

impl Turn<'_> {
    /// Ends the turn with what the answer said: its headers (the budget they announce), and
    /// how long the host asked everyone to hold off (`hold`: a 429's or 503's).
    pub fn finish(mut self, headers: Option<&HeaderMap>, hold: Option<Duration>) {
        self.done = true;
        self.limiter.release(&self.host, headers, hold);
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.limiter.release(&self.host, None, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    const NOW: f64 = 1_800_000_000.0;

    #[test]
    fn every_header_style_is_read() {
        let a = |pairs: &[(&str, &str)]| announced(&headers(pairs), NOW);
        let secs = |s: f64| Some(Duration::from_secs_f64(s));
        // IETF, current drafts: list items with r and t, the quota in the policy
        assert_eq!(
            a(&[("RateLimit", "\"default\";r=50;t=30"), ("RateLimit-Policy", "\"default\";q=100;w=60")]),
            Some(Announced { limit: Some(100), remaining: 50, reset: secs(30.0) })
        );
        // two policies: the tighter one
        assert_eq!(
            a(&[("RateLimit", "\"hour\";r=900;t=3000, \"second\";r=2;t=1")]),
            Some(Announced { limit: None, remaining: 2, reset: secs(1.0) })
        );
        // IETF, drafts 03-07: a dictionary
        assert_eq!(
            a(&[("RateLimit", "limit=100, remaining=7, reset=12")]),
            Some(Announced { limit: Some(100), remaining: 7, reset: secs(12.0) })
        );
        // separate fields: seconds from now
        assert_eq!(
            a(&[("RateLimit-Limit", "20, 20;w=1"), ("RateLimit-Remaining", "3"), ("RateLimit-Reset", "1")]),
            Some(Announced { limit: Some(20), remaining: 3, reset: secs(1.0) })
        );
        // GitHub: the reset as epoch seconds
        assert_eq!(
            a(&[("X-RateLimit-Limit", "5000"), ("X-RateLimit-Remaining", "0"), ("X-RateLimit-Reset", "1800000042")]),
            Some(Announced { limit: Some(5000), remaining: 0, reset: secs(42.0) })
        );
        // the seed's API, and epoch milliseconds
        assert_eq!(
            a(&[("X-Rate-Limit-Remaining", "19"), ("X-Rate-Limit-Reset", "1800000000500")]),
            Some(Announced { limit: None, remaining: 19, reset: secs(0.5) })
        );
        // a reset in the past is now; no remaining, no budget; garbage is ignored
        assert_eq!(a(&[("X-RateLimit-Remaining", "1"), ("X-RateLimit-Reset", "1700000000")]).unwrap().reset, secs(0.0));
        assert_eq!(a(&[("X-RateLimit-Limit", "10")]), None);
        assert_eq!(a(&[("X-RateLimit-Remaining", "lots")]), None);
        assert_eq!(a(&[("RateLimit", "garbage;;=,")]), None);
        assert_eq!(a(&[("X-RateLimit-Remaining", "-3")]).unwrap().remaining, 0);
    }

    #[test]
    fn the_announced_budget_counts_requests_in_flight_and_waits_for_the_reset() {
        let l = Limiter::new(None);
        let t0 = Instant::now();
        // nothing known: requests go
        for _ in 0..3 {
            assert_eq!(l.try_take("h", t0), None);
        }
        // the first answer says 3 left; two are still in flight, so one more may go
        let h = headers(&[("X-RateLimit-Remaining", "3"), ("X-RateLimit-Reset", "2")]);
        l.release("h", Some(&h), None);
        assert_eq!(l.try_take("h", t0), None);
        let wait = l.try_take("h", Instant::now()).expect("budget spent");
        assert!(wait > Duration::from_millis(1900) && wait <= Duration::from_millis(2100), "{wait:?}");
        // a late answer from the same window (more left than the estimate) does not raise it
        let late = headers(&[("X-RateLimit-Remaining", "2"), ("X-RateLimit-Reset", "2")]);
        l.release("h", Some(&late), None);
        assert!(l.try_take("h", Instant::now()).is_some());
        // after the reset: the whole limit (not known here: one at a time)
        let later = Instant::now() + Duration::from_millis(2100);
        assert_eq!(l.try_take("h", later), None, "one request asks for the new budget");
        assert_eq!(l.try_take("h", later), Some(Duration::from_millis(10)), "the others wait for its answer");
    }

    #[test]
    fn answers_out_of_order_do_not_raise_the_estimate() {
        let l = Limiter::new(None);
        let now = Instant::now();
        for _ in 0..4 {
            assert_eq!(l.try_take("h", now), None);
        }
        // the server counted them in another order: the answer saying 1 left comes first
        let reset =
            format!("{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 30);
        let said = |left: &str| headers(&[("X-RateLimit-Remaining", left), ("X-RateLimit-Reset", &reset)]);
        l.release("h", Some(&said("1")), None);
        l.release("h", Some(&said("3")), None);
        l.release("h", Some(&said("2")), None);
        // one request is still in flight: nothing is left
        assert!(l.try_take("h", Instant::now()).is_some());
    }

    #[test]
    fn within_a_window_the_earliest_reset_holds() {
        let l = Limiter::new(None);
        for _ in 0..3 {
            assert_eq!(l.try_take("h", Instant::now()), None);
        }
        let said = |left: &str, reset: &str| headers(&[("RateLimit-Remaining", left), ("RateLimit-Reset", reset)]);
        l.release("h", Some(&said("1", "1")), None);
        std::thread::sleep(Duration::from_millis(300));
        // 300 ms later the same window still says "1 s": the reset is the first answer's
        l.release("h", Some(&said("0", "1")), None);
        let wait = l.try_take("h", Instant::now()).unwrap();
        assert!(wait < Duration::from_millis(750), "{wait:?}");
    }

    #[test]
    fn a_new_window_resets_the_estimate_and_holds_stop_everything() {
        let l = Limiter::new(None);
        let now = Instant::now();
        assert_eq!(l.try_take("h", now), None);
        l.release("h", Some(&headers(&[("RateLimit", "limit=20, remaining=0, reset=1")])), None);
        assert!(l.try_take("h", Instant::now()).is_some());
        // past the reset, the known limit is available again
        let later = Instant::now() + Duration::from_millis(1100);
        for _ in 0..20 {
            assert_eq!(l.try_take("h", later), None);
        }
        assert!(l.try_take("h", later).is_some(), "20 in flight, budget spent");
        // another host is not affected; a hold is
        assert_eq!(l.try_take("other", now), None);
        l.release("other", None, Some(Duration::from_secs(3)));
        let wait = l.try_take("other", Instant::now()).unwrap();
        assert!(wait > Duration::from_millis(2900), "{wait:?}");
    }

    #[test]
    fn the_declared_budget_holds_in_any_span_and_its_burst_spreads_requests() {
        let l = Limiter::new(Some(RateLimitConfig { requests: 3, per: Duration::from_secs(1), burst: None }));
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.try_take("h", now), None);
        }
        let wait = l.try_take("h", now + Duration::from_millis(400)).unwrap();
        assert_eq!(wait, Duration::from_millis(610), "until the first is a span old");
        assert_eq!(l.try_take("h", now + Duration::from_millis(1010)), None);
        // with a burst of 2 at 10 a second: two at once, then one per 100 ms
        let l = Limiter::new(Some(RateLimitConfig { requests: 10, per: Duration::from_secs(1), burst: Some(2) }));
        assert_eq!(l.try_take("h", now), None);
        assert_eq!(l.try_take("h", now), None);
        let wait = l.try_take("h", now).unwrap();
        assert!((wait.as_secs_f64() - 0.1).abs() < 0.001, "{wait:?}");
        assert_eq!(l.try_take("h", now + Duration::from_millis(100)), None);
    }
}
