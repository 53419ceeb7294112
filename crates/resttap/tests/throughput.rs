//! Throughput against APIs that limit it: budgets announced in response headers (every style
//! the mock speaks) and budgets declared in the config are kept, so the API has no reason to
//! answer 429; `Retry-After: 0` does not spend every retry at once; pages known ahead are
//! requested several at once, each exactly once, with stop conditions and maximums honoured.

mod common;

use common::*;

/// The seed workload: 200 records in pages of 10 (20 pages for each of the two big resources,
/// 2 for each of the four others: 48 requests).
const SEED: [&str; 4] = ["--records", "200", "--page-size", "10"];
const SEED_REQUESTS: u64 = 48;

fn loaded_seed(s: &Scratch) {
    let c = open(&s.db());
    for (table, rows) in [("suggestions", 200), ("feedback_records", 200), ("forums", 20), ("features", 20)] {
        assert_eq!(count(&c, &format!("SELECT count(DISTINCT id) FROM t_dataset.{table}")), rows, "{table}");
    }
}

/// The mock's rate limit was exceeded by none of the run's requests, and the run needed more
/// than one window (so that pacing, not luck, kept it under).
fn kept_the_budget(mock: &Mock, limit: u64) {
    let stats = mock.stats();
    let (requests, refused) = (stats["requests"].as_u64().unwrap(), stats["rate_limited"].as_u64().unwrap());
    assert_eq!(requests - refused, SEED_REQUESTS, "{stats}");
    assert!(SEED_REQUESTS > limit, "the workload fits one window");
    assert_eq!(refused, 0, "429s: {stats}");
}

#[test]
fn budgets_announced_in_every_header_style_are_kept() {
    for style in ["ietf", "ratelimit-fields", "github", "x-rate-limit"] {
        let mut args = SEED.to_vec();
        args.extend(["--rate-limit", "20", "--rate-limit-style", style, "--slow-ms", "5"]);
        let mock = Mock::start(&args);
        let s = Scratch::new();
        let out = run(&seed_config(), &mock, &s.db(), TOKEN, &[]);
        assert_ok(&out);
        kept_the_budget(&mock, 20);
        loaded_seed(&s);
        let (stdout, _) = text(&out);
        assert!(stdout.contains("rate limits: requests waited"), "{style}: {stdout}");
        assert!(stdout.contains("0 response(s) 429"), "{style}: {stdout}");
    }
}

/// The seed workload behind a limit of 20 a second that the API does not announce.
fn unannounced() -> Mock {
    let mut args = SEED.to_vec();
    args.extend(["--rate-limit", "20", "--rate-limit-style", "none", "--slow-ms", "5"]);
    Mock::start(&args)
}

#[test]
fn without_pacing_the_mock_does_refuse() {
    // the control for the test above: the same workload with the budget not announced and not
    // declared gets 429s (and recovers through retries)
    let mock = unannounced();
    let s = Scratch::new();
    let cfg = s.seed_with_client("  retry: {max_retries: 8, backoff_factor: 0.2}\n");
    let out = run(&cfg, &mock, &s.db(), TOKEN, &[]);
    assert_ok(&out);
    assert!(mock.stats()["rate_limited"].as_u64().unwrap() > 0, "{}", mock.stats());
    loaded_seed(&s);
}

#[test]
fn a_declared_budget_is_kept_when_the_api_announces_none() {
    let mock = unannounced();
    let s = Scratch::new();
    let cfg = s.seed_with_client("  rate_limit: {requests: 20, per: 1s}\n");
    assert_ok(&run(&cfg, &mock, &s.db(), TOKEN, &[]));
    kept_the_budget(&mock, 20);
    loaded_seed(&s);
    // with a burst of 2, requests are spread: never more than a few in flight
    let mock = unannounced();
    let s = Scratch::new();
    let cfg = s.seed_with_client("  rate_limit: {requests: 20, per: 1s, burst: 2}\n");
    assert_ok(&run(&cfg, &mock, &s.db(), TOKEN, &[]));
    kept_the_budget(&mock, 20);
    assert!(mock.stats()["max_in_flight"].as_u64().unwrap() <= 3, "{}", mock.stats());
}

#[test]
fn a_rate_limit_that_is_not_a_budget_is_refused_with_its_key() {
    let mock = Mock::start(&["--records", "10"]);
    for (extra, says) in [
        ("  rate_limit: {requests: 0}\n", "client.rate_limit"),
        ("  rate_limit: {requests: 5, per: soon}\n", "client.rate_limit.per"),
        ("  rate_limit: {requests: 5, burst: 0}\n", "client.rate_limit.burst"),
        ("  rate_limit: {requests: 5, every: 1s}\n", "every"),
        ("  page_concurrency: 0\n", "client.page_concurrency"),
    ] {
        let s = Scratch::new();
        let out = run(&s.seed_with_client(extra), &mock, &s.db(), TOKEN, &[]);
        assert_eq!(out.status.code(), Some(2), "{extra}");
        let (_, stderr) = text(&out);
        assert!(stderr.contains(says), "{says:?} not in:\n{stderr}");
    }
    assert_eq!(mock.requests(), 0);
}

#[test]
fn retry_after_zero_does_not_spend_every_retry_at_once() {
    let mock = Mock::start(&["--records", "10"]);
    mock.set_faults(r#"{"always": 429, "retry_after": "0"}"#);
    let s = Scratch::new();
    let cfg = s.seed_with_client("  retry: {max_retries: 3, backoff_factor: 0.2}\n");
    let out = run(&cfg, &mock, &s.db(), TOKEN, &["--resources", "forums"]);
    assert_eq!(out.status.code(), Some(1));
    let (_, stderr) = text(&out);
    // half the backoff's steps (0.2, 0.4, 0.8 s): the floor under a `Retry-After` that says less
    for wait in ["in 0.1 s", "in 0.2 s", "in 0.4 s"] {
        assert!(stderr.contains(wait), "{wait:?} not in:\n{stderr}");
    }
    assert!(stderr.contains("HTTP 429"), "{stderr}");
}

/// A configuration of the mock with one resource, `suggestions` keyed by `id`; `rest` is the
/// rest of its entry.
fn suggestions_config(mock: &Mock, rest: &str) -> String {
    format!(
        r#"
client:
  base_url: {url}
  auth: {{type: bearer, token: "{{secrets.api_key}}"}}
resources:
  - name: suggestions
    primary_key: id
{rest}"#,
        url = mock.url
    )
}

fn offset_config(mock: &Mock, paginator_extra: &str) -> String {
    suggestions_config(
        mock,
        &format!(
            r#"    endpoint:
      path: /styles/offset/suggestions
      data_selector: items
      paginator: {{type: offset, limit: 10, total_path: total{paginator_extra}}}
"#
        ),
    )
}

#[test]
fn pages_known_ahead_are_fetched_several_at_once_each_exactly_once() {
    for (concurrency, most) in [("4", 4), ("1", 1)] {
        let mock = Mock::start(&["--records", "200", "--slow-ms", "40"]);
        let s = Scratch::new();
        let out = run(
            &s.write("c.yaml", &offset_config(&mock, "")),
            &mock,
            &s.db(),
            TOKEN,
            &["--page-concurrency", concurrency],
        );
        assert_ok(&out);
        let stats = mock.stats();
        assert_eq!(stats["requests"], 20, "every page once: {stats}");
        let in_flight = stats["max_in_flight"].as_u64().unwrap();
        if most == 1 {
            assert_eq!(in_flight, 1, "{stats}");
        } else {
            assert!(in_flight > 1 && in_flight <= most, "{stats}");
        }
        let c = open(&s.db());
        assert_eq!(count(&c, "SELECT count(*) FROM t_dataset.suggestions"), 200);
        assert_eq!(count(&c, "SELECT count(DISTINCT id) FROM t_dataset.suggestions"), 200);
        // in page order: the load's rows are numbered as they came
        let ids: Vec<i64> = {
            let mut st = c.prepare("SELECT id FROM t_dataset.suggestions ORDER BY rowid").unwrap();
            st.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
        };
        assert_eq!(ids, (1..=200).collect::<Vec<i64>>());
    }
}

#[test]
fn concurrent_pages_honour_maximum_offset_and_stop_conditions() {
    let mock = Mock::start(&["--records", "200", "--slow-ms", "20"]);
    let s = Scratch::new();
    assert_ok(&run(&s.write("c.yaml", &offset_config(&mock, ", maximum_offset: 100")), &mock, &s.db(), TOKEN, &[]));
    assert_eq!(mock.stats()["requests"], 10, "no request past maximum_offset");
    assert_eq!(count(&open(&s.db()), "SELECT count(*) FROM t_dataset.suggestions"), 100);
    // the page whose first record is id 51 is the last one loaded; pages fetched ahead of it
    // are dropped
    let s = Scratch::new();
    let cfg = offset_config(&mock, ", stop_condition: 'items[0].id >= 51'");
    assert_ok(&run(&s.write("c.yaml", &cfg), &mock, &s.db(), TOKEN, &[]));
    let c = open(&s.db());
    assert_eq!(count(&c, "SELECT count(*) FROM t_dataset.suggestions"), 60);
    assert_eq!(count(&c, "SELECT max(id) FROM t_dataset.suggestions"), 60);
}

fn windowed_config(mock: &Mock, incremental_extra: &str) -> String {
    suggestions_config(
        mock,
        &format!(
            r#"    write_disposition: merge
    endpoint:
      path: /v1/suggestions
      data_selector: suggestions
      params: {{sort: updated_at, limit: 20}}
      paginator: {{type: cursor, cursor_path: pagination.cursor, cursor_param: cursor}}
      incremental:
        cursor_path: updated_at
        initial_value: "2024-01-01T00:00:00Z"
        start_param: updated_after
        end_param: updated_before
{incremental_extra}
"#
        ),
    )
}

#[test]
fn a_windowed_backfill_loads_every_record_once_several_windows_at_once() {
    // 200 suggestions updated within the first five days of 2024: seven windows of a day
    let mock = Mock::start(&["--records", "200", "--slow-ms", "30"]);
    let s = Scratch::new();
    let cfg = windowed_config(&mock, "        end_value: \"2024-01-08T00:00:00Z\"\n        window: P1D");
    assert_ok(&run(&s.write("c.yaml", &cfg), &mock, &s.db(), TOKEN, &[]));
    let c = open(&s.db());
    assert_eq!(count(&c, "SELECT count(*) FROM t_dataset.suggestions"), 200);
    assert_eq!(count(&c, "SELECT count(DISTINCT id) FROM t_dataset.suggestions"), 200);
    let stats = mock.stats();
    let requests = stats["requests"].as_u64().unwrap();
    // each window is one request chain: at least one page each, 10 pages of 20 in all
    assert!((7..=7 + 10).contains(&requests), "{stats}");
    // four windows at a time (the default page_concurrency), each one cursor chain
    assert!((2..=4).contains(&stats["max_in_flight"].as_u64().unwrap()), "windows at once: {stats}");
    drop(c);

    // to now, without end_value: the state advances to the newest record, and the next run,
    // from there, finds nothing new
    let mock = Mock::start(&["--records", "200"]);
    let s = Scratch::new();
    let cfg = s.write("c.yaml", &windowed_config(&mock, "        window: P30D"));
    assert_ok(&run(&cfg, &mock, &s.db(), TOKEN, &[]));
    assert_eq!(count(&open(&s.db()), "SELECT count(*) FROM t_dataset.suggestions"), 200);
    let first = mock.requests();
    assert!(first > 30, "about a window a month from 2024 to now: {first}");
    let out = run(&cfg, &mock, &s.db(), TOKEN, &[]);
    assert_ok(&out);
    let (stdout, _) = text(&out);
    let line = stdout.lines().find(|l| l.starts_with("suggestions")).unwrap_or_default().to_string();
    assert!(line.split_whitespace().last() == Some("0"), "{stdout}");
    assert!(mock.requests() - first < first, "the second run starts from the stored position");
}

#[test]
fn a_window_without_a_way_to_send_it_is_refused_with_its_key() {
    let mock = Mock::start(&["--records", "10"]);
    for (extra, says) in [
        ("        window: P1M", "no fixed length"),
        ("        window: 0", "more than zero"),
        ("        window: P1D\n        last_value_func: min", "last_value_func: max"),
    ] {
        let s = Scratch::new();
        let out = run(&s.write("c.yaml", &windowed_config(&mock, extra)), &mock, &s.db(), TOKEN, &[]);
        assert_eq!(out.status.code(), Some(2), "{extra}");
        let (_, stderr) = text(&out);
        assert!(stderr.contains("endpoint.incremental.window") && stderr.contains(says), "{says:?} not in:\n{stderr}");
    }
    let s = Scratch::new();
    let cfg = windowed_config(&mock, "        window: P1D").replace("        end_param: updated_before\n", "");
    let out = run(&s.write("c.yaml", &cfg), &mock, &s.db(), TOKEN, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("needs `end_param`"), "{}", text(&out).1);
    assert_eq!(mock.requests(), 0);
}
