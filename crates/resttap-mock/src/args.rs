//! Command-line options of the mock server, shared by `resttap-mock` and `resttap mock-api`.

use std::net::SocketAddr;

use crate::{DeleteStyle, Faults, LimitStyle, MockOptions, RateLimit};

/// Serve the mock feedback API.
#[derive(Debug, Clone, clap::Args)]
pub struct MockArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Records in feedback_records and suggestions (the other four resources get a tenth).
    #[arg(long, default_value_t = 1000)]
    pub records: u64,
    /// Records per page.
    #[arg(long, default_value_t = 100)]
    pub page_size: u64,
    /// The bearer token to accept.
    #[arg(long, default_value = "demo-token")]
    pub token: String,
    /// Starting revision: each one changes about a fifth of the records and adds `growth` new ones.
    #[arg(long, default_value_t = 0)]
    pub revision: u64,
    /// Records added to every resource per revision.
    #[arg(long, default_value_t = 2)]
    pub growth: u64,
    /// Fail every Nth request to /v1/ (0: never), cycling through --fault-statuses.
    #[arg(long, default_value_t = 0)]
    pub fail_every: u64,
    /// Statuses of injected failures.
    #[arg(long, value_delimiter = ',', default_value = "429,500,502,503,504")]
    pub fault_statuses: Vec<u16>,
    /// Retry-After value sent with injected 429s.
    #[arg(long, default_value = "0")]
    pub retry_after: String,
    /// Delay every /v1/ response by this many milliseconds.
    #[arg(long, default_value_t = 0)]
    pub slow_ms: u64,
    /// Admit at most this many requests to /v1/ and /styles/ per --rate-limit-per-ms window
    /// (0: no limit); the others get 429 with Retry-After.
    #[arg(long, default_value_t = 0)]
    pub rate_limit: u64,
    /// The rate limit's window, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub rate_limit_per_ms: u64,
    /// How the rate limit is announced in response headers.
    #[arg(long, value_enum, default_value_t = LimitStyle::XRateLimit)]
    pub rate_limit_style: LimitStyle,
    /// Render every page before accepting requests (for benchmarks).
    #[arg(long)]
    pub prerender: bool,
    /// `expires_in` of the OAuth2 tokens issued by `POST /oauth/token`, in seconds (0: omit it).
    #[arg(long, default_value_t = 3600)]
    pub oauth_expires_in: u64,
    /// Serve requests without credentials too (a stand-in for another host).
    #[arg(long)]
    pub open: bool,
    /// Each revision deletes about one record in N (0: none); a deleted record is back in the next.
    #[arg(long, default_value_t = 0)]
    pub deletes: u64,
    /// How deleted records show: left out of listings, or listed with `"deleted": true`.
    #[arg(long, value_enum, default_value_t = DeleteStyle::Absent)]
    pub delete_style: DeleteStyle,
    /// List records in a scrambled id order (a fixed permutation for each size) instead of
    /// ascending ids: a revision's changed records arrive in no key order.
    #[arg(long)]
    pub shuffle: bool,
}

impl MockArgs {
    /// The server options these arguments describe.
    pub fn options(&self) -> MockOptions {
        MockOptions {
            records: self.records,
            page_size: self.page_size,
            token: self.token.clone(),
            revision: self.revision,
            growth: self.growth,
            faults: Faults {
                fail_every: self.fail_every,
                statuses: self.fault_statuses.clone(),
                retry_after: Some(self.retry_after.clone()),
                slow_ms: self.slow_ms,
                always: 0,
                truncate_every: 0,
                rate_limit: (self.rate_limit > 0).then_some(RateLimit {
                    requests: self.rate_limit,
                    per_ms: self.rate_limit_per_ms,
                    style: self.rate_limit_style,
                }),
            },
            prerender: self.prerender,
            oauth_expires_in: self.oauth_expires_in,
            open: self.open,
            deletes: self.deletes,
            delete_style: self.delete_style,
            shuffle: self.shuffle,
        }
    }

    /// Binds, prepares the pages (all of them with `--prerender`), prints `listening on
    /// http://ADDR` on stdout (tests and scripts read it, and start requesting), and serves until
    /// the process is stopped. The line comes once requests are answered at full speed: printed
    /// before the pre-rendering, the first client's requests waited for it and competed with it.
    pub async fn run(&self) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind(self.listen).await?;
        let addr = listener.local_addr()?;
        let opts = self.options();
        let app = tokio::task::spawn_blocking(move || crate::app(opts)).await.map_err(std::io::Error::other)?;
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            writeln!(out, "listening on http://{addr}")?;
            out.flush()?;
        }
        axum::serve(listener, app).await
    }
}
