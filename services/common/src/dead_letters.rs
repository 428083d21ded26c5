//! Dead letters: what a service gives up on (an event it cannot decode or apply after
//! its retries, an outbox record it cannot publish), set aside in a tree of its own
//! database with the reason, instead of dropped. Their count is in `Admin.Stats`, so
//! the lab's checker can refuse to call a run "0 lost" while one exists.

use prost::Message;

use crate::proto::DeadLetter;

/// One dead-letter tree.
#[derive(Clone)]
pub struct DeadLetters {
    tree: sled::Tree,
}

impl DeadLetters {
    /// Opens the tree `name` of `db` and makes its count part of `Admin.Stats`.
    pub fn open(db: &sled::Db, name: &str) -> sled::Result<Self> {
        let letters = Self { tree: db.open_tree(name)? };
        crate::stats::watch_dead_letters(&letters);
        Ok(letters)
    }

    /// Sets `record` aside under `key` (the same key again replaces it: a redelivered
    /// poison event is one dead letter, not two). The caller flushes before it lets go
    /// of the original (acks it, or deletes it from the outbox).
    pub fn put(&self, key: &[u8], reason: &str, record: &[u8]) -> sled::Result<()> {
        tracing::error!(key = %String::from_utf8_lossy(key), reason, "dead letter");
        let letter =
            DeadLetter { reason: reason.to_owned(), record: record.to_vec(), at_unix_ms: crate::ids::now_unix_ms() };
        self.tree.insert(key, letter.encode_to_vec())?;
        Ok(())
    }

    pub fn count(&self) -> usize {
        self.tree.len()
    }

    /// The reasons of the first `n` dead letters, each prefixed with its key.
    pub fn reasons(&self, n: usize) -> Vec<String> {
        (self.tree.iter().take(n).flatten())
            .map(|(key, value)| {
                let reason =
                    DeadLetter::decode(value.as_ref()).map_or_else(|e| format!("undecodable: {e}"), |l| l.reason);
                format!("{}: {reason}", String::from_utf8_lossy(&key))
            })
            .collect()
    }
}
