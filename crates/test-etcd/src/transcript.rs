//! README transcripts that tests keep true: etcd's Go `// Output:` idea, moved to the page learners read.
//!
//! A topic README shows its default run as a fenced `text` block whose first line is the command, and whose
//! other lines are what the program prints:
//!
//! ````text
//! ```text
//! $ cargo run -p lease -- --ttl 3
//! 1. granted lease <lease-id> with a TTL of 3s
//!    lease <lease-id>: <n>s left of 3s, keys: name <repeats>
//! ```
//! ````
//!
//! The test runs the same command against a throwaway etcd and compares its stdout with the block, line
//! by line. Parts that change from run to run are written as placeholders:
//!
//! | placeholder | matches |
//! | --- | --- |
//! | `<rev>`, `<n>`, `<millis>`, `<id>` | a whole number |
//! | `<lease-id>`, `<hex>` | lowercase hex digits |
//! | `<duration>` | a duration as Rust's `{:?}` or `{:.1?}` prints it: `3.2s`, `200ms`, `1.5µs` |
//!
//! A line that ends with ` <repeats>` matches one or more consecutive lines of that shape (a countdown
//! whose length depends on timing). The test's endpoint is shown as `127.0.0.1:2379`, the default a
//! reader uses. An unknown placeholder fails the test, so a typo cannot quietly match anything.

use std::path::Path;

/// The marker at the end of an expected line that may appear one or more times.
const REPEATS: &str = " <repeats>";

/// The default run a README shows: its command-line arguments and the lines it prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcript {
    /// What follows `cargo run -p <topic> --` on the `$` line (empty for a plain `cargo run -p <topic>`).
    pub args: Vec<String>,
    /// The expected stdout, one entry per line, placeholders included.
    pub expected: Vec<String>,
}

impl Transcript {
    /// Reads the first fenced block of `readme` that starts with `$ cargo run -p <topic>`. Panics with
    /// a clear message when there is none, since then there is nothing to keep true.
    pub fn from_readme(readme: impl AsRef<Path>, topic: &str) -> Transcript {
        let path = readme.as_ref();
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        Transcript::parse(&text, topic).unwrap_or_else(|| {
            panic!(
                "{} has no ```text block starting with `$ cargo run -p {topic}`",
                path.display()
            )
        })
    }

    /// [`Transcript::from_readme`] on a README's text. `None` when it has no such block.
    pub fn parse(readme: &str, topic: &str) -> Option<Transcript> {
        let command = format!("$ cargo run -p {topic}");
        let mut lines = readme.lines();
        while let Some(line) = lines.next() {
            if line.trim() != "```text" {
                continue;
            }
            let mut block = lines.by_ref().take_while(|l| l.trim() != "```");
            let Some(first) = block.next() else { break };
            let Some(rest) = first.strip_prefix(&command) else {
                continue;
            };
            let args = match rest.trim().strip_prefix("--") {
                Some(args) => args.split_whitespace().map(str::to_string).collect(),
                None if rest.trim().is_empty() => Vec::new(),
                None => continue, // `$ cargo run -p kvx`: another topic's name that starts the same
            };
            let expected = block.map(str::to_string).collect();
            return Some(Transcript { args, expected });
        }
        None
    }

    /// The arguments as `&str`, for [`crate::Bin::spawn`].
    pub fn arg_refs(&self) -> Vec<&str> {
        self.args.iter().map(String::as_str).collect()
    }

    /// Panics, showing both sides, unless `stdout` matches the transcript line by line. `endpoint` is
    /// the test member's `127.0.0.1:PORT`, shown in the README as `127.0.0.1:2379`.
    pub fn assert_matches(&self, stdout: &str, endpoint: &str) {
        if let Err(why) = self.check(stdout, endpoint) {
            panic!(
                "the program's output and its README transcript disagree: {why}\n\
                 --- README (expected) ---\n{}\n--- program (actual) ---\n{}",
                self.expected.join("\n"),
                stdout
            );
        }
    }

    /// [`Transcript::assert_matches`] without the panic: `Err` says where the two part ways.
    pub fn check(&self, stdout: &str, endpoint: &str) -> Result<(), String> {
        let shown = stdout.replace(endpoint, "127.0.0.1:2379");
        let actual: Vec<&str> = shown.lines().collect();
        let mut at = 0;
        for (number, expected) in self.expected.iter().enumerate() {
            let (shape, repeats) = match expected.strip_suffix(REPEATS) {
                Some(shape) => (shape, true),
                None => (expected.as_str(), false),
            };
            let Some(line) = actual.get(at) else {
                return Err(format!(
                    "README line {} `{expected}` has no counterpart: the program printed only {} lines",
                    number + 1,
                    actual.len()
                ));
            };
            if !line_matches(shape, line)? {
                return Err(format!(
                    "README line {} `{expected}` does not match printed line {} `{line}`",
                    number + 1,
                    at + 1
                ));
            }
            at += 1;
            while repeats
                && actual
                    .get(at)
                    .is_some_and(|l| line_matches(shape, l) == Ok(true))
            {
                at += 1;
            }
        }
        match actual.get(at) {
            None => Ok(()),
            Some(extra) => Err(format!(
                "the program printed more than the README shows, from line {}: `{extra}`",
                at + 1
            )),
        }
    }
}

/// Which characters a placeholder stands for; `Err` for a name this module does not know.
fn class_of(name: &str) -> Result<fn(char) -> bool, String> {
    Ok(match name {
        "rev" | "n" | "millis" | "id" => |c: char| c.is_ascii_digit(),
        "lease-id" | "hex" => |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c),
        "duration" => |c: char| c.is_ascii_digit() || matches!(c, '.' | 'n' | 'µ' | 'm' | 's'),
        other => return Err(format!("unknown placeholder <{other}> in the README")),
    })
}

/// Whether `actual` has the shape of `expected`, where each placeholder stands for one or more characters
/// of its class. Backtracks over placeholder lengths, so `<n>s` matches `12s` and `<duration>)` matches
/// `3.2s)`.
fn line_matches(expected: &str, actual: &str) -> Result<bool, String> {
    let Some((literal, name, rest)) = next_placeholder(expected) else {
        return Ok(expected == actual);
    };
    let class = class_of(name)?;
    let Some(tail) = actual.strip_prefix(literal) else {
        return Ok(false);
    };
    for (i, c) in tail.char_indices() {
        if !class(c) {
            break;
        }
        if line_matches(rest, &tail[i + c.len_utf8()..])? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Splits `text` at its first placeholder, `<` lowercase letters and dashes `>`: the text before it, its
/// name, and the text after it. Any other `<` (as in `a <- b`) is ordinary text.
fn next_placeholder(text: &str) -> Option<(&str, &str, &str)> {
    let mut from = 0;
    while let Some(open) = text[from..].find('<').map(|i| from + i) {
        let after = &text[open + 1..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_lowercase() || c == '-'))
            .unwrap_or(after.len());
        if name_len > 0 && after[name_len..].starts_with('>') {
            let name = &after[..name_len];
            return Some((&text[..open], name, &after[name_len + 1..]));
        }
        from = open + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcript(lines: &[&str]) -> Transcript {
        Transcript {
            args: vec![],
            expected: lines.iter().map(|l| l.to_string()).collect(),
        }
    }

    #[test]
    fn reads_the_block_that_starts_with_the_command() {
        let readme = "# kv\n\n```text\n$ etcdctl get name\n```\n\n```text\n$ cargo run -p kv -- --key k1 --value v1\nconnected\n1. put k1\n```\n";
        let t = Transcript::parse(readme, "kv").unwrap();
        assert_eq!(t.args, ["--key", "k1", "--value", "v1"]);
        assert_eq!(t.expected, ["connected", "1. put k1"]);
        assert_eq!(Transcript::parse(readme, "watch"), None);
        let plain = Transcript::parse("```text\n$ cargo run -p kv\nx\n```", "kv").unwrap();
        assert!(plain.args.is_empty());
        assert_eq!(
            Transcript::parse("```text\n$ cargo run -p kvx\nx\n```", "kv"),
            None
        );
    }

    #[test]
    fn placeholders_match_their_class_only() {
        assert_eq!(line_matches("rev <rev>)", "rev 42)"), Ok(true));
        assert_eq!(line_matches("rev <rev>)", "rev )"), Ok(false));
        assert_eq!(line_matches("rev <rev>)", "rev 4a)"), Ok(false));
        assert_eq!(
            line_matches("lease <lease-id> ok", "lease 694d7a1b2c3e4f05 ok"),
            Ok(true)
        );
        assert_eq!(
            line_matches("lease <lease-id> ok", "lease 694D ok"),
            Ok(false)
        );
        assert_eq!(
            line_matches("after <duration>: done", "after 3.2s: done"),
            Ok(true)
        );
        assert_eq!(
            line_matches("after <duration>: done", "after 200ms: done"),
            Ok(true)
        );
        assert_eq!(line_matches("<n>s left", "12s left"), Ok(true));
        assert_eq!(line_matches("<n>s left", "12 s left"), Ok(false));
        assert_eq!(line_matches("exact", "exact "), Ok(false));
        assert_eq!(
            line_matches("a <- b <n>", "a <- b 3"),
            Ok(true),
            "`<-` is text"
        );
        assert!(
            line_matches("<revision>", "1").is_err(),
            "a typo is an error, not a match"
        );
    }

    #[test]
    fn every_line_must_match_and_nothing_may_be_left_over() {
        let t = transcript(&[
            "connected to etcd at 127.0.0.1:2379",
            "1. put name = ferris (revision <rev>)",
        ]);
        let out = "connected to etcd at 127.0.0.1:40123\n1. put name = ferris (revision 7)\n";
        assert_eq!(t.check(out, "127.0.0.1:40123"), Ok(()));
        assert!(t
            .check("connected to etcd at 127.0.0.1:40123\n", "127.0.0.1:40123")
            .is_err());
        let longer = format!("{out}2. more\n");
        assert!(t.check(&longer, "127.0.0.1:40123").is_err());
        let changed = out.replace("ferris", "crab");
        assert!(t.check(&changed, "127.0.0.1:40123").is_err());
    }

    #[test]
    fn a_repeated_line_matches_one_or_more_times() {
        let t = transcript(&["start", "tick <n> <repeats>", "end"]);
        assert_eq!(t.check("start\ntick 1\ntick 2\ntick 3\nend", "-"), Ok(()));
        assert_eq!(t.check("start\ntick 1\nend", "-"), Ok(()));
        assert!(t.check("start\nend", "-").is_err(), "one or more, not zero");
    }
}
