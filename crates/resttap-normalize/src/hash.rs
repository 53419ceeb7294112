//! dlt's deterministic row ids: the text dlt hashes is `orjson.dumps(row, option=OPT_SORT_KEYS)`
//! (dlt 1.31, `get_row_hash`), so this module writes JSON exactly as orjson 3 does: compact,
//! UTF-8 unescaped, keys sorted by code point at every depth, floats in orjson's shortest
//! round-trip notation. The digest is dlt's `digest128` (shake-128, 10 bytes, base64).

use resttap_json::{Kind, Node};

use crate::RowId;

/// dlt's `row_hash` id (`scd2`): the record as the API sent it (original key names, nested
/// objects and lists, nulls) without its top-level keys that start with `_dlt`.
pub fn row_hash<N: Node>(record: &N, buf: &mut Vec<u8>) -> RowId {
    buf.clear();
    match record.kind() {
        Kind::Obj => write_object(record, buf, true),
        _ => write(record, buf),
    }
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
        write(*value, buf);
    }
    buf.push(b'}');
    digest(buf)
}

fn digest(text: &[u8]) -> RowId {
    RowId::encode(&resttap_schema::digest::shake128(&[text]))
}

fn write<N: Node>(node: &N, buf: &mut Vec<u8>) {
    match node.kind() {
        Kind::Null => buf.extend_from_slice(b"null"),
        Kind::Bool(true) => buf.extend_from_slice(b"true"),
        Kind::Bool(false) => buf.extend_from_slice(b"false"),
        Kind::I64(i) => buf.extend_from_slice(itoa::Buffer::new().format(i).as_bytes()),
        Kind::U64(u) => buf.extend_from_slice(itoa::Buffer::new().format(u).as_bytes()),
        Kind::F64(f) => write_f64(f, buf),
        Kind::Str(s) => write_str(s, buf),
        Kind::Arr(items) => {
            buf.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                write(item, buf);
            }
            buf.push(b']');
        }
        Kind::Obj => write_object(node, buf, false),
    }
}

/// An object with its keys sorted; a key given twice keeps its last value, as a Python dict.
fn write_object<N: Node>(node: &N, buf: &mut Vec<u8>, skip_dlt: bool) {
    let mut entries: Vec<(&str, &N)> = node.entries().into_iter().flatten().collect();
    if skip_dlt {
        entries.retain(|(k, _)| !k.starts_with("_dlt"));
    }
    // stable: of equal keys the last one written is last, and wins below
    entries.sort_by(|a, b| a.0.cmp(b.0));
    buf.push(b'{');
    let mut first = true;
    for (i, (k, v)) in entries.iter().enumerate() {
        if entries.get(i + 1).is_some_and(|next| next.0 == *k) {
            continue;
        }
        if !first {
            buf.push(b',');
        }
        first = false;
        write_str(k, buf);
        buf.push(b':');
        write(*v, buf);
    }
    buf.push(b'}');
}

/// orjson's string: only `"`, `\` and control characters are escaped.
fn write_str(s: &str, buf: &mut Vec<u8>) {
    buf.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\t' => b"\\t",
            b'\r' => b"\\r",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..0x20 => b"",
            _ => continue,
        };
        buf.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            buf.extend_from_slice(b"\\u00");
            buf.push(HEX[(b >> 4) as usize]);
            buf.push(HEX[(b & 15) as usize]);
        } else {
            buf.extend_from_slice(esc);
        }
        start = i + 1;
    }
    buf.extend_from_slice(&bytes[start..]);
    buf.push(b'"');
}

/// orjson's float: the shortest digits that round-trip, in fixed notation (always with a
/// fraction) when the exponent of the first digit is in -5..16, else `d[.ddd]e±k`.
fn write_f64(f: f64, buf: &mut Vec<u8>) {
    use std::io::Write;
    if !f.is_finite() {
        buf.extend_from_slice(b"null");
        return;
    }
    // Rust's `{:e}` gives the shortest round-trip digits: `-1.2345e2`, `1e20`, `0e0`
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` has an exponent");
    let k: i32 = exp.parse().expect("an integer exponent");
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if neg {
        buf.push(b'-');
    }
    if (-5..16).contains(&k) {
        if k >= 0 {
            let int_len = k as usize + 1;
            if digits.len() <= int_len {
                buf.extend_from_slice(digits.as_bytes());
                buf.extend(std::iter::repeat_n(b'0', int_len - digits.len()));
                buf.extend_from_slice(b".0");
            } else {
                buf.extend_from_slice(&digits.as_bytes()[..int_len]);
                buf.push(b'.');
                buf.extend_from_slice(&digits.as_bytes()[int_len..]);
            }
        } else {
            buf.extend_from_slice(b"0.");
            buf.extend(std::iter::repeat_n(b'0', (-k - 1) as usize));
            buf.extend_from_slice(digits.as_bytes());
        }
    } else {
        buf.extend_from_slice(mantissa.as_bytes());
        let _ = write!(buf, "e{}{}", if k > 0 { "+" } else { "-" }, k.abs());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn text(v: &Value) -> String {
        let mut buf = Vec::new();
        write(v, &mut buf);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn floats_as_orjson_writes_them() {
        // vectors from orjson 3.13 (dlt 1.31's), /tmp research: fixed for exponents -5..16
        let cases = [
            (12.0, "12.0"),
            (0.1, "0.1"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (-0.5, "-0.5"),
            (1e-5, "0.00001"),
            (1e-6, "1e-6"),
            (1e-7, "1e-7"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1e20, "1e+20"),
            (1.5e300, "1.5e+300"),
            (5e-324, "5e-324"),
            (123456789.12345679, "123456789.12345679"),
            (123456789012345.6, "123456789012345.6"),
        ];
        for (f, want) in cases {
            assert_eq!(text(&json!(f)), want, "{f:e}");
        }
    }

    #[test]
    fn strings_escape_only_quotes_backslashes_and_controls() {
        let s = "quote \" backslash \\ newline \n tab \t ctrl \u{1} del \u{7f} ü 🚀 \u{2028} </>";
        assert_eq!(
            text(&json!(s)),
            "\"quote \\\" backslash \\\\ newline \\n tab \\t ctrl \\u0001 del \u{7f} ü 🚀 \u{2028} </>\""
        );
    }

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
