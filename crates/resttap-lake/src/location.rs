//! Where a lake lives: dlt's `bucket_url` (a local path, `file://...` or `s3://bucket/prefix`)
//! and the S3 credentials dlt names, turned into an object store.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path;
pub use resttap_config::Secret;
use url::Url;

/// dlt's `[destination.filesystem.credentials]` for S3 (`aws_access_key_id`,
/// `aws_secret_access_key`, `aws_session_token`, `region_name`, `endpoint_url`). What is not
/// given comes from the `AWS_*` environment, as boto and object_store read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Credentials {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    pub session_token: Option<Secret>,
    pub region: Option<String>,
    /// An S3-compatible server (MinIO, moto, R2), `http://` allowed.
    pub endpoint_url: Option<String>,
}

/// Where a lake is: parsed once from `bucket_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LakeLocation {
    /// A local directory (absolute).
    Local(std::path::PathBuf),
    /// An S3 bucket and a key prefix (without slashes at its ends; may be empty).
    S3 { bucket: String, prefix: String, credentials: S3Credentials },
}

impl LakeLocation {
    /// Parses dlt's `bucket_url`: `s3://bucket[/prefix]`, `file:///abs/path`, or a local path
    /// (relative to the working directory).
    pub fn parse(bucket_url: &str, credentials: S3Credentials) -> Result<Self, String> {
        let b = bucket_url.trim();
        if b.is_empty() {
            return Err("the bucket_url is empty".into());
        }
        if let Some(rest) = b.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() || bucket.contains(['@', '?', '#']) {
                return Err(format!(
                    "`{}` is not an S3 bucket URL: write s3://bucket/prefix, with credentials in [destination.filesystem.credentials]",
                    redact(b)
                ));
            }
            return Ok(LakeLocation::S3 {
                bucket: bucket.into(),
                prefix: prefix.trim_matches('/').into(),
                credentials,
            });
        }
        let path = if b.starts_with("file:") {
            let url = Url::parse(b).map_err(|e| format!("`{b}` is not a file URL: {e}"))?;
            url.to_file_path().map_err(|()| format!("`{b}` is not a local file URL: write file:///absolute/path"))?
        } else if b.contains("://") {
            let scheme = b.split("://").next().unwrap_or_default();
            return Err(format!(
                "the bucket_url scheme `{scheme}://` is not supported: use s3://bucket/prefix, file:///path or a local path"
            ));
        } else {
            std::path::absolute(b).map_err(|e| format!("the local path `{b}`: {e}"))?
        };
        Ok(LakeLocation::Local(path))
    }

    /// The location for messages: no credentials, ever.
    pub fn describe(&self) -> String {
        match self {
            LakeLocation::Local(p) => format!("file://{}", p.display()),
            LakeLocation::S3 { bucket, prefix, credentials } => {
                let at = credentials.endpoint_url.as_deref().map(|e| format!(" at {}", redact(e))).unwrap_or_default();
                if prefix.is_empty() { format!("s3://{bucket}{at}") } else { format!("s3://{bucket}/{prefix}{at}") }
            }
        }
    }

    /// The URL of `key` under the location (for Delta's log store).
    pub(crate) fn url_of(&self, key: &Path) -> Result<Url, String> {
        let s = match self {
            LakeLocation::Local(_) => format!("file:///{key}"),
            LakeLocation::S3 { bucket, .. } => format!("s3://{bucket}/{key}"),
        };
        Url::parse(&s).map_err(|e| format!("{s}: {e}"))
    }

    /// The store whose root is the file system's root or the bucket, and the location's prefix
    /// in it.
    pub(crate) fn open(&self) -> Result<(Arc<dyn ObjectStore>, Path), String> {
        match self {
            LakeLocation::Local(p) => {
                let prefix = Path::from(p.to_string_lossy().trim_start_matches('/'));
                Ok((Arc::new(object_store::local::LocalFileSystem::new()), prefix))
            }
            LakeLocation::S3 { bucket, prefix, credentials: c } => {
                let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
                if let Some(v) = &c.access_key_id {
                    b = b.with_access_key_id(v);
                }
                if let Some(v) = &c.secret_access_key {
                    b = b.with_secret_access_key(v.expose());
                }
                if let Some(v) = &c.session_token {
                    b = b.with_token(v.expose());
                }
                if let Some(v) = &c.region {
                    b = b.with_region(v);
                }
                if let Some(e) = &c.endpoint_url {
                    b = b.with_endpoint(e.trim_end_matches('/')).with_allow_http(e.starts_with("http://"));
                }
                let store = b.build().map_err(|e| {
                    format!("cannot set up the S3 client for bucket `{bucket}`: {}", redact(&e.to_string()))
                })?;
                Ok((Arc::new(store), Path::from(prefix.as_str())))
            }
        }
    }
}

/// An object store's error for people: URLs without secrets, an S3 error document reduced to
/// its code and message, and what to do about the usual ones.
pub(crate) fn redact(text: &str) -> String {
    let mut out = redact_urls(text);
    if let Some(start) = out.find("<?xml").or_else(|| out.find("<Error>")) {
        let doc = out[start..].to_string();
        let tag = |t: &str| {
            let open = format!("<{t}>");
            let close = format!("</{t}>");
            doc.find(&open).and_then(|a| {
                doc[a + open.len()..].find(&close).map(|b| doc[a + open.len()..a + open.len() + b].to_string())
            })
        };
        let code = tag("Code").unwrap_or_default();
        let message = tag("Message").unwrap_or_default();
        out.truncate(start);
        out = format!("{}S3 error {code}: {message}", out.trim_end_matches([':', ' ']).to_string() + ": ");
        let advice = match code.as_str() {
            "NoSuchBucket" => " (create the bucket, or check the bucket name in bucket_url)",
            "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AccessDenied" | "InvalidToken" | "ExpiredToken" => {
                " (check aws_access_key_id and aws_secret_access_key in [destination.filesystem.credentials], and that they may write to the bucket)"
            }
            _ => "",
        };
        out.push_str(advice);
    }
    out
}

/// `text` with the user info and query of any URL in it removed.
fn redact_urls(text: &str) -> String {
    text.split(' ')
        .map(|w| match Url::parse(w.trim_matches(|c: char| c == '`' || c == ',' || c == '(' || c == ')')) {
            Ok(mut u)
                if u.has_host() && (!u.username().is_empty() || u.password().is_some() || u.query().is_some()) =>
            {
                let _ = u.set_username("");
                let _ = u.set_password(None);
                u.set_query(None);
                u.to_string()
            }
            _ => w.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_urls_parse_as_dlt_writes_them() {
        let c = S3Credentials {
            access_key_id: Some("AKIA".into()),
            secret_access_key: Some(Secret::new("very-secret")),
            endpoint_url: Some("http://127.0.0.1:9000".into()),
            ..Default::default()
        };
        let l = LakeLocation::parse("s3://b/some/prefix/", c.clone()).unwrap();
        assert_eq!(l, LakeLocation::S3 { bucket: "b".into(), prefix: "some/prefix".into(), credentials: c.clone() });
        assert_eq!(l.describe(), "s3://b/some/prefix at http://127.0.0.1:9000");
        assert!(!format!("{l:?}").contains("very-secret"));
        assert_eq!(LakeLocation::parse("file:///tmp/x", c.clone()).unwrap(), LakeLocation::Local("/tmp/x".into()));
        assert!(matches!(LakeLocation::parse("lake", c.clone()).unwrap(), LakeLocation::Local(p) if p.is_absolute()));
        let e = LakeLocation::parse("gs://b", c.clone()).unwrap_err();
        assert!(e.contains("`gs://` is not supported"), "{e}");
        let e = LakeLocation::parse("s3://user:pw@b", c).unwrap_err();
        assert!(!e.contains("pw"), "{e}");
    }

    #[test]
    fn urls_in_messages_lose_their_secrets() {
        assert_eq!(redact("at http://u:p@h:1/x?sig=s failed"), "at http://h:1/x failed");
    }

    #[test]
    fn s3_error_documents_become_one_line_with_advice() {
        let e = "Error performing PUT http://127.0.0.1:5055/nob/x in 1ms - Server returned non-2xx status code: 404 Not Found: <?xml version=\"1.0\"?>\n<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message><RequestId>2U</RequestId></Error>";
        let r = redact(e);
        assert_eq!(
            r,
            "Error performing PUT http://127.0.0.1:5055/nob/x in 1ms - Server returned non-2xx status code: 404 Not Found: S3 error NoSuchBucket: The specified bucket does not exist (create the bucket, or check the bucket name in bucket_url)"
        );
    }
}
