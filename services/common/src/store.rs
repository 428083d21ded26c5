//! A service's own sled database.
//!
//! sled keeps writes in memory and flushes in the background every 500 ms, so a
//! SIGKILL can lose writes that were already acknowledged. Every write path therefore
//! calls [`flush`] before it replies.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("data dir {dir} is locked by another process (is this service already running on it?): {source}")]
    Locked { dir: String, source: sled::Error },
    #[error("cannot open the sled database in {dir}: {source}")]
    Other { dir: String, source: sled::Error },
}

/// Opens (creating if needed) the sled database in `dir`.
pub fn open(dir: &Path) -> Result<sled::Db, OpenError> {
    let shown = dir.display().to_string();
    let mut config = sled::Config::new().path(dir);
    if crate::failpoint::write_flush_delay().is_some() {
        config = config.flush_every_ms(None);
    }
    let db = config.open().map_err(|source| {
        let locked = matches!(&source, sled::Error::Io(e) if e.to_string().contains("could not acquire lock"));
        if locked {
            OpenError::Locked { dir: shown, source }
        } else {
            OpenError::Other { dir: shown, source }
        }
    })?;
    Ok(db)
}

/// Makes every write so far durable. Called before acknowledging a write.
///
/// sled 0.34's own `flush_async` can stall forever when several are pending at once
/// (spacejam/sled#1241, #1308: seen here as a CreateUser that never answered), so the
/// blocking `flush` runs on tokio's blocking pool instead.
pub async fn flush(db: &sled::Db) -> Result<(), FlushError> {
    let db = db.clone();
    tokio::task::spawn_blocking(move || db.flush()).await??;
    Ok(())
}

/// Why [`flush`] did not make the writes durable.
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    #[error("sled flush: {0}")]
    Sled(#[from] sled::Error),
    /// The blocking task running the flush panicked or was cancelled: whether the
    /// writes reached the disk is unknown.
    #[error("the flush task did not finish: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// What can go wrong reading or writing a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt record: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("{0}")]
    Flush(#[from] FlushError),
    #[error("an earlier write could not be flushed; this service takes no writes until it is restarted")]
    Poisoned,
}

/// A transaction aborts with a `StoreError` (a record that does not decode) or fails
/// in sled itself.
impl From<sled::transaction::TransactionError<StoreError>> for StoreError {
    fn from(err: sled::transaction::TransactionError<StoreError>) -> Self {
        match err {
            sled::transaction::TransactionError::Storage(e) => StoreError::Sled(e),
            sled::transaction::TransactionError::Abort(e) => e,
        }
    }
}

/// Reads and decodes one protobuf record.
pub fn get<T: prost::Message + Default>(tree: &sled::Tree, key: &[u8]) -> Result<Option<T>, StoreError> {
    match tree.get(key)? {
        Some(bytes) => Ok(Some(T::decode(bytes.as_ref())?)),
        None => Ok(None),
    }
}
