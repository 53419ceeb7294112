//! A mock of the customer-feedback API that the seed configuration targets.
//!
//! It serves the six resources under `/v1/<resource>` with the seed's envelope
//! (`{"<resource>": [...], "pagination": {"cursor": "...", "page_size": N, "total": T}}`, no
//! `cursor` on the last page), checks a bearer token (401 otherwise), and can inject faults
//! (429 with `Retry-After`, 5xx, slow responses, a rate limit announced in response headers). Records are deterministic (see [`data`]); the
//! `revision` — set at start or through `POST /admin/revision/{n}` — changes some of them and
//! adds new ones, so a second load can be checked against a changed API.
//!
//! Other API styles (paginators, request bodies, single records, parent/child routes) are
//! served too; see the `styles` module. Credentials: the bearer token, an OAuth2 token from
//! `POST /oauth/token` (client `demo`, secret = the token), basic auth `demo:<token>`, or the
//! token as an API key in `X-API-Key`, `?api_key=` or a `session` cookie.
//!
//! Admin routes, for tests and benchmarks: `GET /admin/stats` (request, fault and auth
//! counters), `POST /admin/revision/{n}`, `PUT /admin/faults` (a JSON [`Faults`]),
//! `POST /admin/oauth/revoke`.

pub mod data;
mod server;
mod styles;
mod throttle;

mod args;
pub use args::MockArgs;
pub use server::{DeleteStyle, Faults, MockOptions, Stats, app, spawn};
pub use throttle::{LimitStyle, RateLimit};
