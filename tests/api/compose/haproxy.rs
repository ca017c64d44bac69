//! A reader of HAProxy configuration files, as far as docker/haproxy.cfg needs: sections
//! (`global`, `defaults`, `frontend NAME`, `backend NAME`, …) of whitespace-separated
//! directives, and HAProxy's time format.

use std::time::Duration;

/// One section: its keyword, its name (if any) and its directives, each split into words.
#[derive(Debug)]
pub struct Section {
    pub kind: String,
    pub name: String,
    pub lines: Vec<Vec<String>>,
}

impl Section {
    /// The directives whose first words are `prefix`.
    pub fn directives(&self, prefix: &[&str]) -> Vec<&[String]> {
        self.lines
            .iter()
            .filter(|l| l.len() >= prefix.len() && l.iter().zip(prefix).all(|(w, p)| w == p))
            .map(Vec::as_slice)
            .collect()
    }

    /// The words after `prefix` of its only directive starting so.
    pub fn one(&self, prefix: &[&str]) -> Option<&[String]> {
        let found = self.directives(prefix);
        assert!(
            found.len() <= 1,
            "{} {}: {prefix:?} given twice",
            self.kind,
            self.name
        );
        found.first().map(|l| &l[prefix.len()..])
    }
}

const SECTION_KEYWORDS: &[&str] = &[
    "global",
    "defaults",
    "frontend",
    "backend",
    "listen",
    "resolvers",
    "peers",
    "userlist",
    "mailers",
    "program",
    "http-errors",
    "ring",
    "cache",
];

/// The sections of a configuration, in order. Comments (`#` to the end of the line) are
/// dropped; a quoted word is refused, since nothing here needs one.
pub fn sections(cfg: &str) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    for (n, line) in cfg.lines().enumerate() {
        let n = n + 1;
        let code = line.split('#').next().unwrap_or("");
        assert!(
            !code.contains('"') && !code.contains('\''),
            "haproxy.cfg:{n}: quoted words are not read here: {line:?}"
        );
        let words: Vec<String> = code.split_whitespace().map(str::to_string).collect();
        let Some(first) = words.first() else {
            continue;
        };
        if !line.starts_with([' ', '\t']) {
            assert!(
                SECTION_KEYWORDS.contains(&first.as_str()),
                "haproxy.cfg:{n}: {first:?} at the start of a line is not a section"
            );
            out.push(Section {
                kind: first.clone(),
                name: words.get(1).cloned().unwrap_or_default(),
                lines: Vec::new(),
            });
            continue;
        }
        out.last_mut()
            .unwrap_or_else(|| panic!("haproxy.cfg:{n}: directive before any section"))
            .lines
            .push(words);
    }
    out
}

/// The section `kind name` (`name` empty for `global` or an unnamed `defaults`).
pub fn section<'a>(sections: &'a [Section], kind: &str, name: &str) -> &'a Section {
    let found: Vec<_> = sections
        .iter()
        .filter(|s| s.kind == kind && s.name == name)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one `{kind} {name}` section in haproxy.cfg"
    );
    found[0]
}

/// HAProxy's time format: a number with an optional unit (`us`, `ms`, `s`, `m`, `h`, `d`);
/// without one, milliseconds.
pub fn time(value: &str) -> Duration {
    let split = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: u64 = number
        .parse()
        .unwrap_or_else(|_| panic!("haproxy.cfg: {value:?} is not a time"));
    match unit {
        "us" => Duration::from_micros(number),
        "" | "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number * 60),
        "h" => Duration::from_secs(number * 3600),
        "d" => Duration::from_secs(number * 86400),
        _ => panic!("haproxy.cfg: unknown time unit in {value:?}"),
    }
}

/// The value after `keyword` among a server's (or `default-server`'s) words.
pub fn server_option<'a>(words: &'a [String], keyword: &str) -> Option<&'a str> {
    words
        .iter()
        .position(|w| w == keyword)
        .and_then(|i| words.get(i + 1))
        .map(String::as_str)
}

#[test]
fn the_reader_reads_sections_and_times() {
    let cfg = "global\n    log stdout\n# c\ndefaults\n    timeout client 60s # why\nbackend b\n    \
               server s a:1 check port 2\n";
    let s = sections(cfg);
    assert_eq!(s.len(), 3);
    let b = section(&s, "backend", "b");
    let server = b.one(&["server", "s"]).unwrap();
    assert_eq!(server_option(server, "port"), Some("2"));
    assert_eq!(
        section(&s, "defaults", "").one(&["timeout", "client"]).unwrap(),
        ["60s"]
    );
    assert_eq!(time("60s"), Duration::from_secs(60));
    assert_eq!(time("500"), Duration::from_millis(500));
    assert_eq!(time("2m"), Duration::from_secs(120));
}
