//! One shared allocation per distinct short string of the records' small vocabularies: tags,
//! capabilities, versions.
//!
//! Why: a million agents draw their tags, capabilities and versions from a few hundred
//! values, and a `String` per occurrence costs its 24-byte header plus a heap block of at
//! least 32 bytes, about 56 bytes for a word like "finance". An interned `Arc<str>` is a
//! 16-byte pointer to one block shared by every record holding that text (measured: a
//! 1,000,000-agent zone, bench/load.sh, README "A million agents").
//!
//! The table is process-wide, so records from a zone file, a store read at start, transfers
//! and registrations share the same blocks. It never grows without bound on values no
//! record holds any more: when it has doubled since it was last swept, texts only the table
//! refers to are dropped.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex};

/// The table's size below which it is never swept.
const SWEEP_FLOOR: usize = 1024;

struct Table {
    texts: HashSet<Arc<str>>,
    /// The size at which the next sweep runs.
    sweep_at: usize,
}

static TABLE: LazyLock<Mutex<Table>> = LazyLock::new(|| {
    Mutex::new(Table {
        texts: HashSet::new(),
        sweep_at: SWEEP_FLOOR,
    })
});

/// The shared allocation holding `text` (made on first use).
pub fn intern(text: &str) -> Arc<str> {
    if text.is_empty() {
        return empty();
    }
    let mut table = TABLE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(held) = table.texts.get(text) {
        return Arc::clone(held);
    }
    let held: Arc<str> = Arc::from(text);
    table.texts.insert(Arc::clone(&held));
    if table.texts.len() >= table.sweep_at {
        // Texts no record holds any more: only the table's own reference is left.
        table.texts.retain(|t| Arc::strong_count(t) > 1);
        table.sweep_at = (table.texts.len() * 2).max(SWEEP_FLOOR);
    }
    held
}

/// Every item interned, in order, as a list without spare capacity.
pub fn intern_all<S: AsRef<str>>(items: &[S]) -> Box<[Arc<str>]> {
    items.iter().map(|item| intern(item.as_ref())).collect()
}

/// The empty text (one allocation for every record without a version).
pub fn empty() -> Arc<str> {
    static EMPTY: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(""));
    Arc::clone(&EMPTY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_share_one_allocation_and_different_ones_do_not() {
        let a = intern("interned-finance");
        let owned = String::from("interned-finance");
        let b = intern(&owned);
        assert!(Arc::ptr_eq(&a, &b));
        let other = intern("interned-audit");
        assert!(!Arc::ptr_eq(&a, &other));
        assert_eq!(&*other, "interned-audit");
        let list = intern_all(&["interned-finance", "interned-audit"]);
        assert!(Arc::ptr_eq(&list[0], &a) && Arc::ptr_eq(&list[1], &other));
        assert!(Arc::ptr_eq(&intern(""), &empty()));
    }

    #[test]
    fn texts_no_record_holds_are_swept_once_the_table_has_doubled() {
        let kept = intern("sweep-kept");
        // Enough texts, dropped at once, to pass the sweep size however full the table is.
        let (before, sweep_at) = {
            let table = TABLE.lock().unwrap();
            (table.texts.len(), table.sweep_at)
        };
        for index in 0..=sweep_at {
            drop(intern(&format!("sweep-dropped-{index}")));
        }
        let table = TABLE.lock().unwrap();
        assert!(
            table.texts.len() < before + sweep_at + 1,
            "swept: {} texts held, {before} before {} were added",
            table.texts.len(),
            sweep_at + 1
        );
        assert!(table.texts.contains("sweep-kept"));
        drop(table);
        assert!(Arc::ptr_eq(&kept, &intern("sweep-kept")));
    }
}
