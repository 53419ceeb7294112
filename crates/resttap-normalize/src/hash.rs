//! dlt's deterministic row ids: the text dlt hashes is `orjson.dumps(row, option=OPT_SORT_KEYS)`
//! (dlt 1.31, `get_row_hash`), so this module writes JSON exactly as orjson 3 does: compact,
//! UTF-8 unescaped, keys sorted by code point at every depth, floats in orjson's shortest
//! round-trip notation. The digest is dlt's `digest128` (shake-128, 10 bytes, base64).

use resttap_json::Node;
use resttap_json::canonical::{write_sorted, write_sorted_without, write_str};

use crate::RowId;

/// dlt's `row_hash` id (`scd2`): the record as the API sent it (original key names, nested
/// objects and lists, nulls) without its top-level keys that start with `_dlt`.
pub fn row_hash<N: Node>(record: &N, buf: &mut Vec<u8>) -> RowId {
    buf.clear();
    write_sorted_without(record, &|k| k.starts_with("_dlt"), buf);
    digest(buf)
}

/// dlt's `key_hash` id (`upsert`, `insert-only`): the primary key's columns (normalized names)
/// with their values as the record has them, before any coercion (`5` and `5.0` differ).
pub fn key_hash<N: Node>(key: &mut [(&str, &N)], buf: &mut Vec<u8>) -> RowId {
    buf.clear();
    key.sort_by(|a, b| a.0.cmp(b.0));
    buf.push(b'{');
    for (i, (name, value)) in key.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        write_str(name, buf);
        buf.push(b':');
        write_sorted(*value, buf);
    }
    buf.push(b'}');
    digest(buf)
}

fn digest(text: &[u8]) -> RowId {
    RowId::encode(&resttap_schema::digest::shake128(&[text]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_equal_dlts() {
        // dlt 1.31 on DuckDB (upsert: key hash; scd2: row hash)
        let mut buf = Vec::new();
        let five = json!(5);
        assert_eq!(key_hash(&mut [("id", &five)], &mut buf).as_str(), "k2m2W4pvOwjKag");
        let five_f = json!(5.0);
        assert_eq!(key_hash(&mut [("id", &five_f)], &mut buf).as_str(), "BmpuWNYS51Hfqw");
        let five_s = json!("5");
        assert_eq!(key_hash(&mut [("id", &five_s)], &mut buf).as_str(), "HLKZZSo9qHtuKQ");
        let three = json!(3);
        assert_eq!(key_hash(&mut [("id", &five), ("forum_id", &three)], &mut buf).as_str(), "yNwuUP6jyIC/Uw");
        let record = json!({"id": 5, "title": "mobile app 🚀 (rev 1)", "body": null, "status": "open", "vote_count": 12,
            "score": 12.5, "is_public": true, "created_at": "2024-01-03T10:00:00Z",
            "updated_at": "2024-01-04T10:00:00.000123+00:00", "creator": {"external_user_id": 7, "name": "Zoë Müller"},
            "categories": [{"id": 1, "name": "dark mode"}, {"id": 2, "name": "naïve café filter"}], "tags": ["a", "b"]});
        assert_eq!(row_hash(&record, &mut buf).as_str(), "T+qU5gyFPS4Yww");
        let cases = [
            (json!({"id": 2, "score": 0.1}), "W6uSLaQ4xdNmLA"),
            (json!({"id": 4, "score": 1e20}), "wI46DFWNB2nYnA"),
            (json!({"id": 6, "score": -0.0}), "qzAGRQ4SbA6NGg"),
            (
                json!({"id": 7, "score": 1e-5, "score2": 1e-6, "score3": 1e16, "score4": 123456789012345.6}),
                "chbnPJMAqt3jkg",
            ),
            (json!({"id": 8, "big": 9223372036854775807i64, "neg": -9223372036854775808i64}), "ziORYXgzWAUe3g"),
            (
                json!({"id": 9, "creator": {"name": "Zoë", "meta": {"a": null, "b": [1, 2]}},
                    "title": "quote \" backslash \\ newline \n tab \t ctrl \u{1} del \u{7f}"}),
                "hih2i2YCrZCbmg",
            ),
            (
                json!({"id": 10, "empty_list": [], "empty_dict": {}, "null": null, "t": true, "f": false, "s": ""}),
                "dk9jHmob5G5pPw",
            ),
            (
                json!({"id": 11, "Title": "Upper", "b": 1, "a": 2, "_dlt_x": "ignored-in-hash", "é": 1, "Z": 0}),
                "xxrLroBfA9a7Zw",
            ),
            (
                json!({"id": 12, "title": "日本語テキスト", "emoji": "👍🏽", "nbsp": "\u{a0}", "ls": "\u{2028}"}),
                "tDFy+1dh34S1LQ",
            ),
        ];
        for (record, id) in cases {
            assert_eq!(row_hash(&record, &mut buf).as_str(), id, "{record}");
        }
    }
}
