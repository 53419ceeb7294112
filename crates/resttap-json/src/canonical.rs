//! JSON as orjson 3 writes it with `OPT_SORT_KEYS` (what dlt 1.31 hashes: row ids, incremental
//! de-duplication keys, schema and state version hashes): compact, UTF-8 unescaped (only `"`,
//! `\\` and control characters are escaped), keys sorted by code point at every depth (a key given
//! twice keeps its last value, as a Python dict), floats in orjson's shortest round-trip notation.

use crate::{Kind, Node};

/// Appends `node` as sorted JSON to `buf`.
pub fn write_sorted<N: Node>(node: &N, buf: &mut Vec<u8>) {
    write(node, buf)
}

/// [`write_sorted`] of an object without its top-level keys `skip` names.
pub fn write_sorted_without<N: Node>(node: &N, skip: &dyn Fn(&str) -> bool, buf: &mut Vec<u8>) {
    match node.kind() {
        Kind::Obj => write_object(node, buf, Some(skip)),
        _ => write(node, buf),
    }
}

/// The sorted JSON of `node`.
pub fn to_sorted_vec<N: Node>(node: &N) -> Vec<u8> {
    let mut buf = Vec::new();
    write(node, &mut buf);
    buf
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
        Kind::Obj => write_object(node, buf, None),
    }
}

/// An object with its keys sorted; a key given twice keeps its last value, as a Python dict.
fn write_object<N: Node>(node: &N, buf: &mut Vec<u8>, skip: Option<&dyn Fn(&str) -> bool>) {
    let mut entries: Vec<(&str, &N)> = node.entries().into_iter().flatten().collect();
    if let Some(skip) = skip {
        entries.retain(|(k, _)| !skip(k));
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
pub fn write_str(s: &str, buf: &mut Vec<u8>) {
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
    use serde_json::json;

    fn text(v: &serde_json::Value) -> String {
        String::from_utf8(to_sorted_vec(v)).unwrap()
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
}
