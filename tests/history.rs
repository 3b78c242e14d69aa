//! The history's invariants on `MemoryStore`, for any sequence of changes, against a naive
//! model (a plain list): one entry per change in order, each key's last entry is its state,
//! and paging with any page size reads every matching entry exactly once.

use proptest::prelude::*;
use proxy_optout::{
    Change, ChangeSource, HistoryEntry, HistoryQuery, HistoryStore, LedgerKey, MemoryStore,
    OptOutStore, OptState,
};

const SCOPES: [&str; 2] = ["+1P", "+1Q"];
const PEOPLE: [&str; 3] = ["+1A", "+1B", "+1C"];

fn changes() -> impl Strategy<Value = Vec<(usize, usize, bool)>> {
    prop::collection::vec((0..SCOPES.len(), 0..PEOPLE.len(), any::<bool>()), 0..40)
}

fn state(out: bool) -> OptState {
    if out {
        OptState::OptedOut
    } else {
        OptState::OptedIn
    }
}

fn read_all(store: &MemoryStore, query: HistoryQuery<'_>, page: usize) -> Vec<HistoryEntry> {
    let mut all: Vec<HistoryEntry> = Vec::new();
    loop {
        let after = all.last().map_or(0, |e| e.seq);
        let got = store.history(&query.after(after).limit(page)).unwrap();
        let done = got.len() < page;
        all.extend(got);
        if done {
            return all;
        }
    }
}

proptest! {
    #[test]
    fn history_is_the_sequence_of_changes(writes in changes(), page in 1_usize..7, scope in 0..SCOPES.len()) {
        let store = MemoryStore::new();
        let mut model: Vec<(&str, &str, OptState)> = Vec::new();
        for &(s, p, out) in &writes {
            let change = Change::new(LedgerKey::new(SCOPES[s], PEOPLE[p]), state(out), ChangeSource::Keyword);
            store.record_change(&change).unwrap();
            model.push((SCOPES[s], PEOPLE[p], state(out)));
        }
        let all = read_all(&store, HistoryQuery::new(), page);
        let got: Vec<(&str, &str, OptState)> = all.iter().map(|e| (e.scope.as_str(), e.participant.as_str(), e.state)).collect();
        prop_assert_eq!(&got, &model);
        prop_assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
        // Filtered by scope: the model's entries for it, in order.
        let filtered = read_all(&store, HistoryQuery::new().scope(SCOPES[scope]), page);
        let expected: Vec<_> = model.iter().filter(|m| m.0 == SCOPES[scope]).collect();
        prop_assert_eq!(filtered.len(), expected.len());
        // Current entries: one per written key, with the key's state, and it is the key's last.
        let current = read_all(&store, HistoryQuery::new().current_only(true), page);
        for e in &current {
            prop_assert_eq!(store.state(e.key()).unwrap(), e.state);
            let last = model.iter().rev().find(|m| m.0 == e.scope && m.1 == e.participant).unwrap();
            prop_assert_eq!(last.2, e.state);
        }
        let mut keys: Vec<_> = model.iter().map(|m| (m.0, m.1)).collect();
        keys.sort_unstable();
        keys.dedup();
        prop_assert_eq!(current.len(), keys.len());
    }
}
