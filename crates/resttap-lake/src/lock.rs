//! One run per dataset. Locally an exclusive `flock` on `_resttap/lock` (the kernel releases it
//! when the process dies, however it dies). On S3 a lease: `_resttap/lock` created only if absent
//! (a conditional put), naming its holder and refreshed every [`REFRESH`] while the run holds it;
//! a lease not refreshed for [`STALE`] belongs to a run that died, and is taken over (a
//! conditional put on its ETag, so that two runs cannot both take it); so is at once a lease of
//! a process of this machine that no longer runs.

use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use resttap_load::LoadError;
use tokio::runtime::Handle;

use crate::location::{LakeLocation, redact};

/// How often a lease is refreshed.
pub const REFRESH: Duration = Duration::from_secs(20);
/// How long a lease lives without a refresh.
pub const STALE: Duration = Duration::from_secs(90);

/// A held lock; released when dropped.
pub enum Lock {
    Local(#[allow(dead_code)] std::fs::File),
    Lease { rt: Handle, store: Arc<dyn ObjectStore>, key: Path, refresher: tokio::task::JoinHandle<()> },
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string()
}

fn holder() -> String {
    format!("resttap pid {} on {}", std::process::id(), host())
}

/// Whether a lease names a process of this machine that no longer runs (a run killed here: its
/// lease is taken over at once rather than after [`STALE`]).
fn holder_is_dead_here(text: &str) -> bool {
    let Some((pid, on)) = text.trim().strip_prefix("resttap pid ").and_then(|r| r.split_once(" on ")) else {
        return false;
    };
    let here = host();
    !here.is_empty()
        && on == here
        && pid.parse::<u32>().is_ok_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
}

impl Lock {
    /// Takes the lock of the dataset `what` at `key`.
    pub fn take(
        loc: &LakeLocation,
        rt: &Handle,
        store: &Arc<dyn ObjectStore>,
        key: Path,
        what: &str,
    ) -> Result<Self, LoadError> {
        match loc {
            LakeLocation::Local(_) => {
                let path = std::path::PathBuf::from(format!("/{key}"));
                let open_err = |e: std::io::Error| LoadError::Open {
                    location: what.into(),
                    message: format!("cannot create {}: {e}", path.display()),
                };
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(open_err)?;
                }
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .read(true)
                    .open(&path)
                    .map_err(open_err)?;
                match f.try_lock() {
                    Ok(()) => {
                        let _ = std::fs::write(&path, holder());
                        Ok(Lock::Local(f))
                    }
                    Err(std::fs::TryLockError::WouldBlock) => Err(LoadError::Locked {
                        location: what.into(),
                        message: format!(
                            "{} holds {}",
                            std::fs::read_to_string(&path).unwrap_or_default().trim(),
                            path.display()
                        ),
                    }),
                    Err(std::fs::TryLockError::Error(e)) => Err(open_err(e)),
                }
            }
            LakeLocation::S3 { .. } => {
                let body = || PutPayload::from(holder().into_bytes());
                let fail =
                    |e: object_store::Error| LoadError::Open { location: what.into(), message: redact(&e.to_string()) };
                let created = rt.block_on(store.put_opts(
                    &key,
                    body(),
                    PutOptions { mode: PutMode::Create, ..Default::default() },
                ));
                let etag = match created {
                    Ok(r) => r.e_tag,
                    Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                        let got = rt.block_on(store.get(&key)).map_err(fail)?;
                        let meta = got.meta.clone();
                        let text = rt
                            .block_on(got.bytes())
                            .map(|b| String::from_utf8_lossy(&b).into_owned())
                            .unwrap_or_default();
                        let age = chrono::Utc::now().signed_duration_since(meta.last_modified);
                        if age.to_std().unwrap_or_default() < STALE && !holder_is_dead_here(&text) {
                            return Err(LoadError::Locked {
                                location: what.into(),
                                message: format!(
                                    "{} holds the lease {key}, refreshed {}s ago",
                                    text.trim(),
                                    age.num_seconds()
                                ),
                            });
                        }
                        let mode =
                            PutMode::Update(UpdateVersion { e_tag: meta.e_tag.clone(), version: meta.version.clone() });
                        match rt.block_on(store.put_opts(&key, body(), PutOptions { mode, ..Default::default() })) {
                            Ok(r) => r.e_tag,
                            Err(object_store::Error::Precondition { .. }) => {
                                return Err(LoadError::Locked {
                                    location: what.into(),
                                    message: format!("another run took the stale lease {key} first"),
                                });
                            }
                            Err(e) => return Err(fail(e)),
                        }
                    }
                    Err(e) => return Err(fail(e)),
                };
                let (s, k) = (store.clone(), key.clone());
                let refresher = rt.spawn(async move {
                    let mut etag = etag;
                    loop {
                        tokio::time::sleep(REFRESH).await;
                        let mode = PutMode::Update(UpdateVersion { e_tag: etag.clone(), version: None });
                        match s
                            .put_opts(
                                &k,
                                PutPayload::from(holder().into_bytes()),
                                PutOptions { mode, ..Default::default() },
                            )
                            .await
                        {
                            Ok(r) => etag = r.e_tag,
                            Err(e) => tracing::warn!("cannot refresh the lease {k}: {}", redact(&e.to_string())),
                        }
                    }
                });
                Ok(Lock::Lease { rt: rt.clone(), store: store.clone(), key, refresher })
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if let Lock::Lease { rt, store, key, refresher } = self {
            refresher.abort();
            let (s, k, rt) = (store.clone(), key.clone(), rt.clone());
            // on a thread of its own: outside any async context, whichever thread drops the lock
            let _ = std::thread::spawn(move || rt.block_on(async move { s.delete(&k).await })).join();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_lease_of_a_dead_process_here_is_stale() {
        assert!(!super::holder_is_dead_here(&super::holder()), "this process runs");
        assert!(super::holder_is_dead_here(&format!("resttap pid 4000000000 on {}", super::host())));
        assert!(!super::holder_is_dead_here("resttap pid 4000000000 on another-host"));
        assert!(!super::holder_is_dead_here("something else"));
    }
}
