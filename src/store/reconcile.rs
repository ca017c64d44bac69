//! The backend list named at start (`TOLLGATE_BACKENDS`) against the stored one: what to
//! insert, change and delete so that the stored list becomes the named one. Pure, so that an
//! unchanged list is provably a no-op (no write, no change row).

use super::BackendRow;

/// What makes the stored list the named one.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// URLs not stored yet, with their weight and position.
    pub insert: Vec<(String, i64, i64)>,
    /// Stored backends that stay but whose weight or `enabled` differ: `(id, weight, position)`,
    /// enabled again. Each is a change other instances must learn.
    pub update: Vec<(String, i64, i64)>,
    /// Stored backends that stay unchanged but moved in the list: `(id, position)`. Only the
    /// order shown changes, so no change row is written.
    pub reorder: Vec<(String, i64)>,
    /// Ids of stored backends the named list does not have.
    pub delete: Vec<String>,
}

impl Plan {
    /// Whether the stored list already is the named one (order aside).
    pub fn changes_nothing(&self) -> bool {
        self.insert.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// The plan turning `stored` into `wanted` (`(url, weight)` in the order named). A backend
/// keeps its id when its URL stays; the named list has no notion of disabled, so a kept one
/// that was disabled is enabled again.
pub fn plan(stored: &[BackendRow], wanted: &[(String, i64)]) -> Plan {
    let mut out = Plan::default();
    for (i, (url, weight)) in wanted.iter().enumerate() {
        let position = i64::try_from(i).unwrap_or(i64::MAX);
        match stored.iter().find(|r| &r.url == url) {
            None => out.insert.push((url.clone(), *weight, position)),
            Some(r) if r.weight != *weight || !r.enabled => {
                out.update.push((r.id.clone(), *weight, position))
            }
            Some(r) if r.position != position => out.reorder.push((r.id.clone(), position)),
            Some(_) => {}
        }
    }
    out.delete = stored
        .iter()
        .filter(|r| !wanted.iter().any(|(url, _)| *url == r.url))
        .map(|r| r.id.clone())
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, url: &str, weight: i64, enabled: bool, position: i64) -> BackendRow {
        BackendRow {
            id: id.into(),
            url: url.into(),
            weight,
            enabled,
            position,
            created_at: 0,
        }
    }

    fn named(list: &[(&str, i64)]) -> Vec<(String, i64)> {
        list.iter().map(|(u, w)| (u.to_string(), *w)).collect()
    }

    #[test]
    fn table() {
        let a = || row("b-a", "http://a:1", 1, true, 0);
        let b = || row("b-b", "http://b:1", 2, true, 1);
        #[rustfmt::skip]
        // what, stored, named, plan
        type Case = (&'static str, Vec<BackendRow>, Vec<(String, i64)>, Plan);
        let cases: Vec<Case> = vec![
            (
                "same list: nothing",
                vec![a(), b()],
                named(&[("http://a:1", 1), ("http://b:1", 2)]),
                Plan::default(),
            ),
            (
                "empty store: every one inserted",
                vec![],
                named(&[("http://a:1", 1)]),
                Plan {
                    insert: vec![("http://a:1".into(), 1, 0)],
                    ..Plan::default()
                },
            ),
            (
                "one dropped, one added",
                vec![a(), b()],
                named(&[("http://a:1", 1), ("http://c:1", 1)]),
                Plan {
                    insert: vec![("http://c:1".into(), 1, 1)],
                    delete: vec!["b-b".into()],
                    ..Plan::default()
                },
            ),
            (
                "weight changed: id kept",
                vec![a()],
                named(&[("http://a:1", 5)]),
                Plan {
                    update: vec![("b-a".into(), 5, 0)],
                    ..Plan::default()
                },
            ),
            (
                "disabled one named again: enabled",
                vec![row("b-a", "http://a:1", 1, false, 0)],
                named(&[("http://a:1", 1)]),
                Plan {
                    update: vec![("b-a".into(), 1, 0)],
                    ..Plan::default()
                },
            ),
            (
                "order only: no change row",
                vec![a(), b()],
                named(&[("http://b:1", 2), ("http://a:1", 1)]),
                Plan {
                    reorder: vec![("b-b".into(), 0), ("b-a".into(), 1)],
                    ..Plan::default()
                },
            ),
            (
                "empty list: every one deleted",
                vec![a(), b()],
                vec![],
                Plan {
                    delete: vec!["b-a".into(), "b-b".into()],
                    ..Plan::default()
                },
            ),
        ];
        for (what, stored, wanted, want) in cases {
            let got = plan(&stored, &wanted);
            assert_eq!(got, want, "{what}");
        }
        assert!(plan(&[a()], &named(&[("http://a:1", 1)])).changes_nothing());
        assert!(plan(&[a(), b()], &named(&[("http://b:1", 2), ("http://a:1", 1)])).changes_nothing());
    }
}
