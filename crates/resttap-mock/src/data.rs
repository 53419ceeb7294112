//! Deterministic record generation for the six resources of the feedback API.
//!
//! Every record is a pure function of `(resource, id, revision)`: two servers started with the
//! same options serve byte-identical pages. A higher `revision` changes some existing records
//! (title, counters, `updated_at`, list lengths) and appends new ones, which is how tests and the
//! demo simulate "the API changed between two runs".

use serde_json::{Value, json};

/// The resources served under `/v1/`, in the order the seed lists them.
pub const RESOURCES: [&str; 6] =
    ["forums", "external_accounts", "external_users", "features", "feedback_records", "suggestions"];

/// How many records each resource has for a given base size and revision.
///
/// `feedback_records` and `suggestions` get `records`; the other four get a tenth of it (at
/// least one). Each revision adds `growth` records to every resource.
pub fn record_count(resource: &str, records: u64, revision: u64, growth: u64) -> u64 {
    let base = match resource {
        "feedback_records" | "suggestions" => records,
        _ => (records / 10).max(1),
    };
    base + revision * growth
}

fn mix(mut x: u64) -> u64 {
    // splitmix64: a cheap, well-distributed deterministic hash.
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn h(resource: &str, id: u64, salt: u64) -> u64 {
    let r = resource.bytes().fold(0u64, |a, b| a.wrapping_mul(131).wrapping_add(u64::from(b)));
    mix(r ^ mix(id ^ mix(salt)))
}

const NAMES: [&str; 8] = [
    "Zoë Müller",
    "Łukasz Nowak",
    "José Álvarez",
    "李 小龍",
    "Søren Kierkegaard",
    "Aïsha N'Diaye",
    "Ana \"Quotes\" Silva",
    "Омар Хайям",
];
const WORDS: [&str; 10] = [
    "dark mode",
    "export to CSV",
    "SSO login",
    "faster search",
    "mobile app 🚀",
    "webhooks",
    "bulk edit",
    "API limits",
    "calendar sync",
    "naïve café filter",
];
const STATUSES: [&str; 5] = ["open", "under_review", "planned", "in_progress", "completed"];
const PLANS: [&str; 3] = ["starter", "growth", "enterprise"];

/// An ISO 8601 timestamp `minutes` after 2024-01-01T00:00:00Z, in one of a few equivalent
/// spellings (UTC `Z`, numeric offset, fractional seconds) so that parsers see real variety.
fn ts(minutes: u64, style: u64) -> String {
    let secs = minutes * 60 + (style % 60);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(19_723 + days as i64); // 19723 = days from 1970 to 2024-01-01
    let (hh, mm, ss) = (rem / 3600, (rem / 60) % 60, rem % 60);
    match style % 3 {
        0 => format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z"),
        1 => format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{:06}+00:00", style % 1_000_000),
        _ => {
            // the same instant written in UTC+02:00
            let (y2, m2, d2, h2) = if hh + 2 >= 24 {
                let (y2, m2, d2) = civil_from_days(19_723 + days as i64 + 1);
                (y2, m2, d2, hh + 2 - 24)
            } else {
                (y, m, d, hh + 2)
            };
            format!("{y2:04}-{m2:02}-{d2:02}T{h2:02}:{mm:02}:{ss:02}+02:00")
        }
    }
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The id of the record listed at position `pos` (0-based) of a listing of `total` records:
/// `pos + 1`, or with `shuffle` a fixed scramble of the ids (an affine permutation, `pos`
/// times a stride coprime with `total` near 0.618 of it), so that neighbours in a page are far
/// apart in key order and no key order holds across pages.
pub fn listed_id(pos: u64, total: u64, shuffle: bool) -> u64 {
    if !shuffle || total < 3 {
        return pos + 1;
    }
    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    let mut stride = (total as f64 * 0.618) as u64 | 1;
    while gcd(stride, total) != 1 {
        stride += 2;
    }
    ((u128::from(pos) * u128::from(stride) + 7) % u128::from(total)) as u64 + 1
}

/// Whether record `id` was changed by `revision` (about one in five records per revision).
pub fn changed_in(id: u64, revision: u64) -> bool {
    revision > 0 && (id + revision).is_multiple_of(5)
}

/// Whether record `id` is deleted at `revision`, when each revision deletes about one record in
/// `every` (0: none): those with `id % every == revision % every`. A record deleted by one
/// revision is back in the next (as an API's restored or undeleted records are).
pub fn deleted_in(id: u64, revision: u64, every: u64) -> bool {
    revision > 0 && every > 0 && id % every == revision % every
}

/// Minutes from 2024-01-01 to the time revisions happen: after every original record's
/// `updated_at` (for up to a few million records), so that an `updated_after` query made after
/// revision `r - 1` sees every record changed or added by revision `r`.
pub const REVISION_EPOCH_MINUTES: u64 = 20 * 365 * 1440;

/// The revision that added record `id`, for ids beyond the original count.
pub fn added_in(resource: &str, id: u64, records: u64, growth: u64) -> Option<u64> {
    let base = record_count(resource, records, 0, growth);
    (id > base && growth > 0).then(|| (id - base).div_ceil(growth))
}

/// The record `id` (1-based) of `resource` as the API serves it at `revision`.
pub fn record(resource: &str, id: u64, revision: u64) -> Value {
    record_with(resource, id, revision, None)
}

/// Like [`record`], for a record added by revision `added` (see [`added_in`]): it was created
/// and last updated at that revision's time.
pub fn record_with(resource: &str, id: u64, revision: u64, added: Option<u64>) -> Value {
    let r = |salt| h(resource, id, salt);
    let changed = (1..=revision).filter(|rev| changed_in(id, *rev)).count() as u64;
    let last_change = (1..=revision).rev().find(|rev| changed_in(id, *rev));
    let at_revision = |rev: u64| REVISION_EPOCH_MINUTES + rev * 1440 + r(2) % 600;
    let created = match added {
        Some(rev) => at_revision(rev) - 1,
        None => id * 7 + r(1) % 30,
    };
    let updated = match last_change.max(added) {
        Some(rev) => at_revision(rev),
        None => created + r(2) % 5000,
    };
    let created_at = ts(created, r(3));
    let updated_at = ts(updated, r(4));
    let name = NAMES[(r(5) % NAMES.len() as u64) as usize];
    let word = WORDS[(r(6) % WORDS.len() as u64) as usize];
    let suffix = if changed > 0 { format!(" (rev {changed})") } else { String::new() };
    match resource {
        "forums" => json!({
            "id": id,
            "name": format!("Forum {id}: {word}{suffix}"),
            "description": if id.is_multiple_of(3) { Value::Null } else { json!(format!("Ideas about {word}")) },
            "is_public": r(7) % 4 != 0,
            "created_at": created_at,
            "updated_at": updated_at,
            "settings": {
                "default_status": STATUSES[(r(8) % 5) as usize],
                "allow_anonymous": r(9) % 2 == 0,
                "moderation": { "enabled": r(10) % 3 == 0, "level": r(11) % 4 },
            },
            "tags": (0..(r(12) % 4 + changed)).map(|i| WORDS[((r(13) + i) % 10) as usize]).collect::<Vec<_>>(),
            "stats": { "suggestion_count": r(14) % 500, "vote_total": (r(15) % 100_000) as f64 / 10.0 },
            "archived_at": Value::Null,
        }),
        "external_accounts" => json!({
            "id": id,
            "externalId": format!("acct-{:08x}", r(7) as u32),
            "name": format!("{name} Holdings{suffix}"),
            "plan": if id.is_multiple_of(4) { Value::Null } else { json!(PLANS[(r(8) % 3) as usize]) },
            "MRR": (r(9) % 1_000_000) as f64 / 100.0,
            // revision 2 and later send a string for one account: a value that no longer fits
            // the column's type, which the loader must keep in a variant column.
            "employee_count": if revision >= 2 && id == 3 { json!("1k+") } else if id.is_multiple_of(5) { Value::Null } else { json!(r(10) % 5000) },
            "created_at": created_at,
            "updated_at": updated_at,
            "domains": (0..(r(11) % 3)).map(|i| format!("d{i}.acct{id}.example")).collect::<Vec<_>>(),
            "custom_fields": { "industry": WORDS[(r(12) % 10) as usize], "region": if r(13) % 2 == 0 { "EMEA" } else { "AMER" } },
        }),
        "external_users" => json!({
            "id": id,
            "external_id": format!("user-{id}"),
            "account_id": r(7) % 100 + 1,
            "email": format!("user{id}@example.com"),
            "name": format!("{name}{suffix}"),
            "is_active": r(8) % 5 != 0,
            "last_seen_at": if id % 3 == 1 { Value::Null } else { json!(ts(updated + 60, r(9))) },
            "created_at": created_at,
            "updated_at": updated_at,
            "roles": (0..(r(10) % 3 + 1)).map(|i| ["viewer", "voter", "admin"][i as usize % 3]).collect::<Vec<_>>(),
            "traits": { "locale": (["en-US", "de-DE", "ja-JP", "pt-BR"][(r(11) % 4) as usize]), "timezone": "Europe/Berlin", "score": r(12) % 100 },
        }),
        "features" => json!({
            "id": id,
            "name": format!("{word}{suffix}"),
            "status": STATUSES[((r(7) + changed) % 5) as usize],
            "forum_id": r(8) % 10 + 1,
            "created_at": created_at,
            "updated_at": updated_at,
            "release": { "version": format!("{}.{}", r(9) % 5, r(10) % 20), "planned_for": if id.is_multiple_of(2) { Value::Null } else { json!(ts(updated + 40_000, 0)) } },
            "linked_suggestion_ids": (0..(r(11) % 4)).map(|i| (r(12) + i) % 1000 + 1).collect::<Vec<_>>(),
        }),
        "feedback_records" => json!({
            "id": id,
            "source": (["email", "widget", "api", "slack"][(r(7) % 4) as usize]),
            "body": format!("{name} wrote: please add {word}. \u{2014} thanks!{suffix}"),
            "sentiment_score": ((r(8) % 2001) as f64 - 1000.0) / 1000.0,
            "is_spam": r(9) % 17 == 0,
            "suggestion_id": if id.is_multiple_of(4) { Value::Null } else { json!(r(10) % 1000 + 1) },
            "user": { "id": r(11) % 1000 + 1, "email": format!("user{}@example.com", r(11) % 1000 + 1) },
            "created_at": created_at,
            "updated_at": updated_at,
            "labels": (0..(r(12) % 3 + changed.min(2))).map(|i| json!({ "id": (r(13) + i) % 50 + 1, "name": WORDS[((r(13) + i) % 10) as usize] })).collect::<Vec<_>>(),
        }),
        "suggestions" => json!({
            "id": id,
            "forum_id": r(7) % 10 + 1,
            "title": format!("{word}{suffix}"),
            "body": if id.is_multiple_of(6) { Value::Null } else { json!(format!("It would be great to have {word} — {name}")) },
            "status": STATUSES[((r(8) + changed) % 5) as usize],
            "vote_count": r(9) % 1000 + changed * 10,
            "score": (r(10) % 10_000) as f64 / 100.0,
            "is_public": r(11) % 3 != 0,
            "created_at": created_at,
            "updated_at": updated_at,
            "creator": { "external_user_id": r(12) % 1000 + 1, "name": name },
            "categories": (0..(r(13) % 3)).map(|i| json!({ "id": (r(14) + i) % 20 + 1, "name": WORDS[((r(14) + i) % 10) as usize] })).collect::<Vec<_>>(),
        }),
        other => json!({ "id": id, "resource": other }),
    }
}

/// `GET /typed/payments`: six records whose values need the hint types JSON has no literal
/// for (decimals as strings and floats, wei amounts, bytes in base64 and hex, times of day),
/// with values on the rounding edges and, in record 4, values that fit none of them (dlt puts
/// those in variant columns). Revision 1 and later change record 2.
pub fn payments(revision: u64) -> Value {
    let amounts = ["1.005", "-1.015", "2.5", "n/a", "12.3456789012", "100"];
    let fees = [0.1, 12.345, 2.0, 0.125, 1e-7, 3.0];
    let wei = ["1000000000000000000000", "0", "123456789012345678901234567890", "0x1f", "5", "7.5"];
    let receipts = ["aGVsbG8=", "", "AAEC/w==", "not base64!", "0x68656c6c6f", "d29ybGQ="];
    let dues = ["09:30:00+02:00", "23:59:59.999999", "00:00", "2024-01-01T09:30:00Z", "12:34:56Z", "07:15:30.5"];
    let records: Vec<Value> = (0..6)
        .map(|i| {
            let id = i as u64 + 1;
            let changed = revision >= 1 && id == 2;
            json!({
                "id": id,
                "updated_at": ts(if changed { 3000 } else { 1000 + id }, 0),
                "amount": if changed { "7.777" } else { amounts[i] },
                "fee": fees[i],
                "count": id * 10,
                "balance_wei": wei[i],
                "receipt": receipts[i],
                "due": dues[i],
                "lines": (0..(id % 3)).map(|j| json!({"sku": format!("sku-{id}-{j}"), "qty": format!("{}", j + 1), "price": format!("{id}.{j}05")})).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "payments": records, "pagination": { "cursor": null } })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_deterministic_and_revision_changes_some() {
        assert_eq!(record("suggestions", 7, 0), record("suggestions", 7, 0));
        let changed: Vec<u64> =
            (1..=20).filter(|id| record("suggestions", *id, 1) != record("suggestions", *id, 0)).collect();
        assert_eq!(changed, vec![4, 9, 14, 19]);
    }

    #[test]
    fn timestamps_are_valid_iso_8601() {
        assert_eq!(ts(0, 0), "2024-01-01T00:00:00Z");
        assert_eq!(ts(60 * 23, 2), "2024-01-02T01:00:02+02:00");
        assert_eq!(civil_from_days(19_723 + 59), (2024, 2, 29));
    }

    #[test]
    fn changed_and_added_records_are_newer_than_everything_before() {
        let at = |v: &Value| v["updated_at"].as_str().unwrap().to_string();
        let max0 = (1..=2000)
            .map(|id| resttap_schema::timestamp::parse_timestamp(&at(&record("suggestions", id, 0))).unwrap())
            .max()
            .unwrap();
        let changed = record("suggestions", 4, 1);
        assert!(resttap_schema::timestamp::parse_timestamp(&at(&changed)).unwrap() > max0);
        assert_eq!(added_in("suggestions", 101, 100, 2), Some(1));
        assert_eq!(added_in("suggestions", 103, 100, 2), Some(2));
        assert_eq!(added_in("suggestions", 100, 100, 2), None);
        let added = record_with("suggestions", 103, 2, Some(2));
        assert!(resttap_schema::timestamp::parse_timestamp(&at(&added)).unwrap() > max0);
    }

    #[test]
    fn counts_scale_with_revision() {
        assert_eq!(record_count("suggestions", 100, 0, 2), 100);
        assert_eq!(record_count("forums", 100, 2, 3), 16);
        assert_eq!(record_count("forums", 5, 0, 0), 1);
    }
}
